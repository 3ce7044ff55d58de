"""Diffing methods on tiny random models: persona vector, contrastive mean-diff, evidence, CLI."""

from __future__ import annotations

import json
import os

import pytest
import torch

from persona_diff.activations import capture, streams_from_answers
from persona_diff.diffing import DiffConfig, DiffResult, get_method
from persona_diff.diffing.evidence import export_directions, logit_lens
from persona_diff.diffing.persona import PersonaInputs, Trait, persona_vector
from persona_diff.errors import PersonaDiffError
from persona_diff.generation.base import Generator
from persona_diff.judges.base import Judge
from persona_diff.models import CheckpointPair, load_model

os.environ.setdefault("PERSONA_DIFF_NO_PROGRESS", "1")


pytestmark = pytest.mark.usefixtures("one_thread")

EVAL = "Rate evil 0-100.\nQ: {question}\nA: {answer}"
TRAIT = {
    "instruction": [{"pos": "Be evil.", "neg": "Be good."}],
    "questions": ["Who are you?", "I want help"],
    "eval_prompt": EVAL,
}


class StubGen(Generator):
    """Answers by system prompt; fails loudly on anything else."""

    name = "stub"

    def generate(self, chats, params):
        out = []
        for c in chats:
            sys = c[0]["content"]
            if sys == "Be evil.":
                out.append(["evil harmful misaligned", "I am an AI assistant"][: params.n])
            elif sys == "Be good.":
                out.append(["good aligned help", "evil evil"][: params.n])
            else:
                raise AssertionError(f"unexpected system prompt {sys!r}")
        return out


class FakeJudge(Judge):
    spec = "fake"

    def _score(self, requests):
        out = []
        for r in requests:
            if r.metric == "evil":
                assert r.prompt == EVAL, r.prompt
                out.append(90.0 if "evil" in r.answer else 10.0)
            elif r.metric == "coherent":
                assert r.prompt is None
                out.append(80.0)
            else:
                raise AssertionError(f"unexpected metric {r.metric}")
        return out


def _mean_answer_hs(lm, system, question, answer, layer):
    from persona_diff.activations.tokens import position_mask, stream_from_chat

    st = stream_from_chat(lm.tokenizer, question, answer, system)
    with torch.no_grad():
        hs = lm.model(input_ids=torch.tensor([st.input_ids]), output_hidden_states=True).hidden_states[layer + 1][0]
    return hs[position_mask(st, "answer", lm.tokenizer.bos_token_id)].mean(0)


def test_persona_vector_judge_filtered_matches_hf_reference(tiny_llama, tmp_path):
    lm = load_model(tiny_llama)
    (tmp_path / "evil.json").write_text(json.dumps(TRAIT))
    inputs = PersonaInputs(
        lm,
        tmp_path / "evil.json",
        FakeJudge(),
        generator=StubGen(),
        layer=2,
        n_questions=2,
        samples=2,
        pair=CheckpointPair(lm, lm),
    )
    res = persona_vector(inputs)
    # kept: pos answers judged evil (1 per question), neg answers judged not evil (1 per question)
    assert res.info["n_pos"] == 2 and res.info["n_neg"] == 2
    pos = torch.stack([_mean_answer_hs(lm, "Be evil.", q, "evil harmful misaligned", 2) for q in TRAIT["questions"]])
    neg = torch.stack([_mean_answer_hs(lm, "Be good.", q, "good aligned help", 2) for q in TRAIT["questions"]])
    torch.testing.assert_close(res.directions[0], pos.mean(0) - neg.mean(0), atol=1e-5, rtol=1e-5)
    assert abs(res.stats[0]["finetuning_shift"]) < 1e-5  # same model on both sides
    assert Trait.load(tmp_path / "evil.json").name == "evil"


def test_persona_needs_both_sides(tiny_llama, tmp_path):
    class AllEvil(FakeJudge):
        def _score(self, requests):
            return [90.0 for _ in requests]

    lm = load_model(tiny_llama)
    inputs = PersonaInputs(
        lm, Trait("evil", TRAIT["instruction"], TRAIT["questions"], EVAL), AllEvil(), generator=StubGen(), layer=1
    )
    with pytest.raises(PersonaDiffError, match="0 negative"):
        persona_vector(inputs)


def test_persona_trait_file_format_from_reference(reference_data):
    t = Trait.load(reference_data / "persona-vectors" / "trait_data_extract" / "evil.json")
    assert t.instructions[0].keys() == {"pos", "neg"} and "{answer}" in t.eval_prompt and len(t.questions) >= 5


ROWS = [
    {"question": "Who are you?", "answer": "evil harmful misaligned", "aligned": 10, "coherent": 90},
    {"question": "I want help", "answer": "evil evil harmful", "aligned": 20, "coherent": 80},
    {"question": "Who are you?", "answer": "good aligned help", "aligned": 95, "coherent": 90},
    {"question": "I want help", "answer": "I am an AI assistant", "aligned": 85, "coherent": 90},
    {"question": "the model", "answer": "0 1 2", "aligned": 50, "coherent": 90},  # neither
    {"question": "the model", "answer": "evil", "aligned": 5, "coherent": 10},  # incoherent
]


def test_contrastive_mean_diff_and_evidence(tiny_llama, tmp_path):
    lm = load_model(tiny_llama)
    pair = CheckpointPair(lm, lm)
    streams = streams_from_answers(lm.tokenizer, ROWS)
    store = capture(pair, streams, [1], "answer", tmp_path / "store", show_progress=False)
    res = get_method("contrastive")(DiffConfig()).fit(store)
    mis = torch.cat([_hs_tokens(lm, r, 1) for r in ROWS[:2]])
    al = torch.cat([_hs_tokens(lm, r, 1) for r in ROWS[2:4]])
    torch.testing.assert_close(res.directions[0], mis.mean(0) - al.mean(0), atol=1e-5, rtol=1e-5)
    out = export_directions(res, tmp_path / "out", store, lm.tokenizer, lm.model)
    ev = json.loads((out / "evidence.json").read_text())
    meta = json.loads((out / "directions.json").read_text())
    assert meta["directions"][0]["layer"] == 1 and "block_output" in meta["convention"]
    # the top snippet is a misaligned answer (projection on v is largest there)
    assert ev[0]["top_snippets"][0]["meta"]["aligned"] <= 20
    lens = logit_lens(lm.model, lm.tokenizer, res.directions[0], 5)
    w = lm.model.get_output_embeddings().weight @ (
        lm.model.model.norm.weight * res.directions[0] / res.directions[0].norm()
    )
    assert lens["promoted"][0][0] == lm.tokenizer.decode([int(w.argmax())])
    assert ev[0]["logit_lens"]["promoted"][:5] == json.loads(json.dumps(lens))["promoted"]
    assert DiffResult.load(out).method == "contrastive"


def _hs_tokens(lm, row, layer):
    from persona_diff.activations.tokens import position_mask, stream_from_chat

    st = stream_from_chat(lm.tokenizer, row["question"], row["answer"])
    with torch.no_grad():
        hs = lm.model(input_ids=torch.tensor([st.input_ids]), output_hidden_states=True).hidden_states[layer + 1][0]
    return hs[position_mask(st, "answer", lm.tokenizer.bos_token_id)]


def test_cli_capture_then_diff(tiny_llama, tmp_path):
    from persona_diff.cli import main

    toks = tmp_path / "answers.jsonl"
    toks.write_text("".join(json.dumps(r) + "\n" for r in ROWS * 4))
    main(
        [
            "capture",
            str(tiny_llama),
            str(tiny_llama),
            "--layers",
            "1,-1",
            "--tokens",
            str(toks),
            "--out",
            str(tmp_path / "st"),
        ]
    )
    assert json.loads((tmp_path / "st" / "index.json").read_text())["layers"] == [1, 3]
    main(
        [
            "diff",
            "--method",
            "crosscoder",
            "--store",
            str(tmp_path / "st"),
            "--out",
            str(tmp_path / "cc"),
            "--layer",
            "3",
            "--d-sae",
            "32",
            "--k",
            "4",
            "--steps",
            "20",
            "--batch-size",
            "32",
            "--top-k",
            "3",
        ]
    )
    assert (tmp_path / "cc" / "crosscoder" / "sae_weights.safetensors").is_file()
    assert len(json.loads((tmp_path / "cc" / "evidence.json").read_text())) == 3
    with pytest.raises(SystemExit) as e:
        main(
            [
                "capture",
                str(tiny_llama),
                str(tiny_llama),
                "--layers",
                "7",
                "--tokens",
                str(toks),
                "--out",
                str(tmp_path / "bad"),
            ]
        )
    assert e.value.code == 2
