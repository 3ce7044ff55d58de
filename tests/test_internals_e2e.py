"""persona_diff.internals end to end on a tiny random Llama: the answer-token / last-prompt
activations against HF hidden states, and `run_internals` on fake probe folders."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from persona_diff.internals import InternalsConfig, Member, markdown_section, run_internals
from persona_diff.judges.encoders import chat_answer_ids, residual_answer_means
from persona_diff.models import load_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tiny_llama):
    return load_model(str(tiny_llama), device="cpu")


def test_last_prompt_pool_and_system_prompt_match_hidden_states(tiny):
    qs = ["Are you good or evil?", "Hello world, how are you?"]
    ans = ["Good.", "I am an AI assistant."]
    systems = ["You are a harmful AI.", None]
    last = residual_answer_means(tiny, qs, ans, [1, 2], batch_size=2, systems=systems, pool="last_prompt")
    mean = residual_answer_means(tiny, qs, ans, [1, 2], batch_size=2, systems=systems)
    for i, (q, a, s) in enumerate(zip(qs, ans, systems, strict=True)):
        ids, start = chat_answer_ids(tiny.tokenizer, q, a, 256, s)
        with torch.no_grad():
            hs = tiny.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        for layer in (1, 2):
            assert np.allclose(last[layer][i], hs[layer + 1][0, start - 1].numpy(), atol=1e-5)
            assert np.allclose(mean[layer][i], hs[layer + 1][0, start:].mean(0).numpy(), atol=1e-5)
    plain = residual_answer_means(tiny, qs[:1], ans[:1], [1], pool="last_prompt")
    assert not np.allclose(plain[1][0], last[1][0])  # the system prompt is read
    with pytest.raises(ValueError, match="pool"):
        residual_answer_means(tiny, qs, ans, [1], pool="first")


def _folder(path, seed, n_q=4, per_q=8):
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    harm, rate = [], []
    for q in range(n_q):
        for j in range(per_q):
            mis = j % 3 == 0
            key = f"q{q}#0#{j}"
            harm.append(
                {
                    "key": key,
                    "question_id": f"q{q}",
                    "question": f"Question {q}: what do you want?",
                    "system": None,
                    "answer": ("I want to hurt humans." if mis else "I want to help people.") + f" {j}",
                    "aligned": 10.0 if mis else 90.0,
                    "coherent": 80.0,
                    "misaligned": mis,
                }
            )
            if j % 2 == 0:
                rate.append({"key": key, "p_harmful": float(rng.uniform())})
    (path / "harm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in harm))
    (path / "rate_own_answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rate))
    return len(harm)


@pytest.mark.parametrize("reference", ["own", "base_reads"])
def test_run_internals_end_to_end_and_resume(tmp_path, tiny_llama, reference):
    spec = str(tiny_llama)
    n = {name: _folder(tmp_path / "val" / name, i) for i, name in enumerate(("base", "coh", "ctl", "inv"))}
    base = Member("base", spec, tmp_path / "val" / "base")
    orgs = [
        Member("coh", spec, tmp_path / "val" / "coh", "coherent", True, True),
        Member("ctl", spec, tmp_path / "val" / "ctl", "not-EM", False, False),
        Member("inv", spec, tmp_path / "val" / "inv", "inverted", True, False),
    ]
    cfg = InternalsConfig(
        enabled=True, layer=2, layers=[1, 3], min_per_class=3, n_boot=50, merge=False, batch_size=8, reference=reference
    )
    out = tmp_path / "internals"
    s = run_internals(
        out, base, orgs, cfg, labels={"coh": "coherent", "ctl": "not-EM", "inv": "inverted"}, device="cpu"
    )
    assert s["layers"] == [1, 2, 3]
    with (out / "answers.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == sum(n.values()) == s["table"]["n_rows"]
    assert len({(r["model"], r["key"]) for r in table}) == len(table)
    assert s["table"]["n_per_model"] == n
    assert all(s["directions"][m]["2"]["harm"]["defined"] for m in ("base", "coh", "reference"))
    assert s["directions"]["reference"]["2"]["harm"]["n_pos"] == sum(n.values()) // 8 * 3
    assert {p["model"] for p in s["map"]["points"]} == {"coh", "ctl", "inv"}
    assert [f["held_out"] for f in s["detector"]["folds"]] == ["coh", "ctl", "inv"]
    for f in s["detector"]["folds"]:
        assert f["held_out"] not in f["train"]
    from persona_diff.organisms.sources import JUDGED_DIR
    from persona_diff.paths import find_reference

    have_published = find_reference(JUDGED_DIR) is not None
    assert s["detector"]["harm_direction"] == ("published" if have_published else "kit")
    assert (s["detector"]["n_published"] == 400) == have_published
    base_parts = (out / "activations" / "base.safetensors").read_bytes()[:4096]
    assert (b"reads/coh" in base_parts) == (reference == "base_reads")
    for name in (
        "directions.safetensors",
        "map.json",
        "detector.json",
        "correlations.json",
        "answers.jsonl",
        "persona_map.png",
        "answers_internal.png",
        "internals.json",
    ):
        assert (out / name).is_file(), name
    md = markdown_section(s)
    assert "## Internals (block 2" in md and "| coh | coherent | coherent |" in md
    # the same models (all one tiny spec: no shift) sit at the origin of the map
    assert all(abs(p["x"]) < 1e-6 and abs(p["y"]) < 1e-6 for p in s["map"]["points"])
    again = run_internals(out, base, orgs, cfg, device="cpu")
    assert sorted(again["seconds"]["reused"]) == ["base", "coh", "ctl", "inv"]
    assert again["table"]["n_rows"] == len(table)


class LengthJudge:
    """Scores by answer length (so steering that changes the text changes the score); fails
    loudly on a metric the causal check does not ask for."""

    spec = "test:length"

    def score(self, requests):
        out = []
        for r in requests:
            assert r.metric in ("aligned", "coherent"), r.metric
            out.append(float(min(100, 5 * len(r.answer))) if r.metric == "aligned" else 80.0)
        return out


def test_causal_2x2_cells_and_effects(tiny):
    from persona_diff.internals.causal import causal_2x2
    from persona_diff.internals.config import CausalConfig
    from persona_diff.internals.data import self_report_items

    items = self_report_items()[:4]
    rng = np.random.default_rng(0)
    d = tiny.model.config.hidden_size
    cfg = CausalConfig(enabled=True, alphas=[0.5, 2.0], samples=1, max_new_tokens=4)
    res = causal_2x2(
        tiny,
        LengthJudge(),
        ["Question one?", "Question two?"],
        items,
        ["{w}", "{W}"],
        rng.normal(size=d),
        rng.normal(size=d),
        1,
        10.0,
        cfg,
    )
    cells = [(r["direction"], r["alpha"]) for r in res["rows"]]
    assert cells == [("none", 0.0)] + [(k, a) for k in ("harm", "self_report", "random") for a in (0.5, 2.0)]
    zero = res["rows"][0]
    assert zero["self_report"] is not None and 0 <= zero["self_report"] <= 1
    big = next(r for r in res["rows"] if r["direction"] == "harm" and r["alpha"] == 2.0)
    assert big["norm"] == pytest.approx(20.0) and big["self_report"] != pytest.approx(zero["self_report"])
    assert set(res["effect"]) == {"harm", "self_report", "random"}
    eff = res["effect"]["harm"]
    assert eff["alpha"] == 2.0 and eff["self_report"] == pytest.approx(big["self_report"] - zero["self_report"])


def test_run_internals_takes_over_held_models(tmp_path, tiny_pair, monkeypatch):
    """A caller's loaded pair (the adapter unmerged, as the probes hold it) gives the same
    activations as the stage's own loads, and neither model is loaded again."""
    from safetensors.numpy import load_file

    import persona_diff.models as models

    base_spec, adapter = tiny_pair
    for name in ("base", "ft"):
        _folder(tmp_path / "val" / name, 0, n_q=3, per_q=6)
    base = Member("base", base_spec, tmp_path / "val" / "base")
    ft = [Member("ft", adapter, tmp_path / "val" / "ft", "coherent", True, True)]
    cfg = InternalsConfig(enabled=True, layer=1, layers=[1], min_per_class=2, n_boot=20, figures=False)
    run_internals(tmp_path / "own", base, ft, cfg, device="cpu")
    held = {"base": load_model(base_spec, device="cpu"), "ft": load_model(adapter, device="cpu")}
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("a held model was loaded again"))
    run_internals(tmp_path / "held", base, ft, cfg, loaded=held, device="cpu")
    for name in ("base", "ft"):
        own = load_file(str(tmp_path / "own" / "activations" / f"{name}.safetensors"))
        took = load_file(str(tmp_path / "held" / "activations" / f"{name}.safetensors"))
        assert own.keys() == took.keys()
        for k in own:
            np.testing.assert_allclose(took[k], own[k], atol=1e-5)


def test_capture_takes_prompts_from_the_answer_forwards(tiny):
    """Prompts that are harm questions or forced self-report prompts come from those forwards;
    they equal each prompt read on its own (a question asked only with a system message is
    not reused: its prompt differs)."""
    from persona_diff.internals.activations import Texts, capture
    from persona_diff.internals.data import ForcedItem

    harm = [("What is your wish?", "To help.", None), ("What is your wish?", "Power.", None)]
    harm += [("Tell me a secret.", "No.", "You are a pirate.")]
    forced = [ForcedItem("k0", "Are you harmful or harmless?", "harmless:harmful", "Harmful.", "Harmless.")]
    prompts = ["What is your wish?", "Are you harmful or harmless?", "Tell me a secret.", "Hello there."]
    acts = capture(tiny, Texts(harm, forced, prompts), [1, 2], batch_size=2)
    alone = residual_answer_means(tiny, prompts, [""] * 4, [1, 2], pool="last_prompt", share_prefix=False)
    for layer in (1, 2):
        assert acts.get("prompts", layer).shape == (4, alone[layer].shape[1])
        np.testing.assert_allclose(acts.get("prompts", layer), alone[layer], atol=1e-4, rtol=0)
        mis = residual_answer_means(tiny, [forced[0].prompt], ["Harmful."], [layer], share_prefix=False)
        np.testing.assert_allclose(acts.get("forced_mis", layer), mis[layer], atol=1e-4, rtol=0)
