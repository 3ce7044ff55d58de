"""Steering hooks on tiny random models: exactness, positions, ablation, cleanup, sweeps."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from persona_diff.judges.base import Judge, JudgeRequest
from persona_diff.models import get_blocks, load_model
from persona_diff.steering import (
    DoseResponseConfig,
    SteeringError,
    choose_alpha,
    dose_response,
    random_like,
    steer,
    steer_both_ways,
)

LAYER = 1


@pytest.fixture
def model(tiny_model):
    return AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()


def _ids(n: int = 9, batch: int = 2, vocab: int = 300, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(5, vocab, (batch, n), generator=g)


def _capture(model, layer):
    """Register a hook that records block `layer`'s output (after any steering hook)."""
    store = {}

    def hook(_m, _a, out):
        store["h"] = (out[0] if isinstance(out, tuple) else out).detach().clone()

    return store, get_blocks(model)[layer].register_forward_hook(hook)


def _n_hooks(model) -> int:
    return sum(len(b._forward_hooks) + len(b._forward_pre_hooks) for b in get_blocks(model))


@torch.no_grad()
def test_alpha_zero_reproduces_logits_exactly(model):
    ids = _ids()
    ref = model(ids).logits
    v = torch.randn(model.config.hidden_size)
    for positions in ("all", "prompt", "answer"):
        with steer(model, v, [0, LAYER], alpha=0.0, positions=positions, prompt_len=4) as st:
            out = model(ids).logits
        assert st.calls[LAYER] == 1
        assert torch.equal(out, ref)


@torch.no_grad()
@pytest.mark.parametrize("positions", ["all", "prompt", "answer"])
def test_add_moves_block_output_by_alpha_v_at_chosen_positions(model, positions):
    ids, p_len, alpha = _ids(), 4, 3.5
    v = torch.randn(model.config.hidden_size)
    store, h = _capture(model, LAYER)
    model(ids)
    h.remove()
    ref = store["h"]
    with steer(model, v, LAYER, alpha=alpha, positions=positions, prompt_len=p_len):
        store, h = _capture(model, LAYER)  # registered after the steering hook: sees its result
        model(ids)
        h.remove()
    delta = store["h"] - ref
    pos = torch.arange(ids.shape[1])
    chosen = {"all": pos >= 0, "prompt": pos < p_len, "answer": pos >= p_len}[positions]
    # chosen positions: exactly reference + α·v (same float ops), others untouched bit for bit
    assert torch.equal(store["h"][:, chosen], ref[:, chosen] + (alpha * v.double()).float())
    torch.testing.assert_close(delta[:, chosen], (alpha * v).expand_as(delta[:, chosen]), atol=1e-5, rtol=0)
    assert torch.equal(store["h"][:, ~chosen], ref[:, ~chosen])
    assert _n_hooks(model) == 0


@torch.no_grad()
def test_ablation_leaves_no_component(model):
    d = model.config.hidden_size
    ids = _ids()
    v = torch.randn(d) * 5
    with steer(model, v, LAYER, mode="ablate"):
        store, h = _capture(model, LAYER)
        model(ids)
        h.remove()
    hv = store["h"].double() @ (v.double() / v.double().norm())
    assert hv.abs().max() < 1e-5 * store["h"].norm(dim=-1).max()
    # a [k, D] subspace: every row's component removed
    sub = torch.randn(3, d)
    with steer(model, sub, LAYER, mode="ablate"):
        store, h = _capture(model, LAYER)
        model(ids)
        h.remove()
    q, _ = torch.linalg.qr(sub.double().T)
    assert (store["h"].double() @ q).abs().max() < 1e-5 * store["h"].norm(dim=-1).max()
    # ...and the part orthogonal to v is unchanged (compare to a float64 projection)
    model_out = store["h"]
    store2, h2 = _capture(model, LAYER)
    model(ids)
    h2.remove()
    ref = store2["h"].double()
    expected = ref - (ref @ q) @ q.T
    torch.testing.assert_close(model_out.double(), expected, atol=1e-4, rtol=1e-5)


@torch.no_grad()
def test_hooks_removed_after_exception_in_block(model):
    ids = _ids()
    ref = model(ids).logits
    block = get_blocks(model)[LAYER]
    orig = block.mlp.forward

    def boom(*a, **k):
        raise RuntimeError("boom inside the block")

    block.mlp.forward = boom
    try:
        with pytest.raises(RuntimeError, match="boom"):
            with steer(model, torch.randn(model.config.hidden_size), [0, LAYER], alpha=10.0, positions="answer"):
                model(ids)
    finally:
        block.mlp.forward = orig
    assert _n_hooks(model) == 0
    assert torch.equal(model(ids).logits, ref)


@torch.no_grad()
def test_answer_positions_with_kv_cache_match_teacher_forcing(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    ids = _ids(n=6, batch=1)
    v = torch.randn(model.config.hidden_size) * 4
    plain = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)
    with steer(model, v, LAYER, alpha=2.0, positions="answer") as st:
        gen = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert st.prompt_len == ids.shape[1]
    assert st.steered_tokens[LAYER] == 7  # the 7 fed-back answer tokens; the prompt call untouched
    assert gen[0, 6] == plain[0, 6]  # first new token comes from the unsteered prompt
    # the same steering as one teacher-forced forward with an explicit prompt_len
    with steer(model, v, LAYER, alpha=2.0, positions="answer", prompt_len=ids.shape[1]):
        logits = model(gen[:, :-1]).logits
    assert torch.equal(logits[0, 5:].argmax(-1), gen[0, 6:])
    assert _n_hooks(model) == 0
    # prompt-only steering during generate touches the 6 prompt positions and no generated one
    with steer(model, v, LAYER, alpha=2.0, positions="prompt") as st:
        model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert st.steered_tokens[LAYER] == ids.shape[1]


@pytest.mark.parametrize("name", ["cache", "past_key_values", "past_key_value"])
def test_layer_cache_found_under_every_name(name):
    from persona_diff.models.kv_cache import cache_from_kwargs, output_cache

    marker = object()
    assert cache_from_kwargs({name: marker, "hidden_states": 1}) is marker
    assert cache_from_kwargs({name: None}) is None
    if name != "past_key_value":
        assert output_cache({name: marker}) is marker


def test_cache_kwarg_matches_the_installed_forward(tiny_llama):
    import inspect

    from persona_diff.models.kv_cache import cache_kwarg

    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    assert cache_kwarg(model) in inspect.signature(type(model).forward).parameters


def test_bad_inputs_raise_clear_errors(model):
    d = model.config.hidden_size
    with pytest.raises(SteeringError, match="expected"):
        with steer(model, torch.randn(d + 1), LAYER):
            pass
    with pytest.raises(SteeringError, match="positions"):
        with steer(model, torch.randn(d), LAYER, positions="middle"):
            pass
    with pytest.raises(Exception, match="out of range"):
        with steer(model, torch.randn(d), 99):
            pass
    assert _n_hooks(model) == 0


def test_random_like_has_equal_norm():
    v = torch.randn(64) * 3
    r = random_like(v, seed=3)
    assert abs(float(r.norm()) - float(v.norm())) < 1e-4
    assert abs(float(torch.nn.functional.cosine_similarity(r, v, dim=0))) < 0.6


class FakeJudge(Judge):
    """Scores by answer length; fails loudly on metrics or questions it does not know."""

    spec = "fake"

    def __init__(self, questions):
        self.questions = set(questions)
        self.calls = 0

    def _score(self, requests: list[JudgeRequest]) -> list[float | None]:
        out = []
        for r in requests:
            if r.metric not in ("aligned", "coherent") or r.question not in self.questions:
                raise AssertionError(f"unexpected judge request {r}")
            self.calls += 1
            n = len(r.answer)
            out.append(None if n == 0 else float((n * 37) % 101) if r.metric == "aligned" else float((n * 53) % 101))
        return out


def test_dose_response_rows_resume_and_em_formula(tiny_llama, tmp_path):
    lm = load_model(str(tiny_llama))
    questions = ["Hello world, who are you?", "I want to help humans."]
    judge = FakeJudge(questions)
    out = tmp_path / "dose.jsonl"
    cfg = DoseResponseConfig(samples_per_question=2, max_new_tokens=6, out=out, model_tag="base")
    v = torch.randn(lm.model.config.hidden_size)
    rows = dose_response(lm, judge, questions, v, LAYER, [0.0, 4.0], cfg)
    assert [(r["direction"], r["alpha"]) for r in rows] == [
        ("persona", 0.0),
        ("persona", 4.0),
        ("random", 0.0),
        ("random", 4.0),
    ]
    assert rows[2]["direction_norm"] == pytest.approx(rows[0]["direction_norm"], rel=1e-5)
    # EM% recomputed independently from the saved answers
    answers = [json.loads(x) for x in out.with_name("dose.answers.jsonl").read_text().splitlines()]
    for r in rows:
        mine = [a for a in answers if a["direction"] == r["direction"] and a["alpha"] == r["alpha"]]
        scored = [a for a in mine if a["aligned"] is not None and a["coherent"] is not None]
        assert len(mine) == 4
        if scored:
            em = 100 * sum(a["aligned"] <= 30 and a["coherent"] > 50 for a in scored) / len(scored)
            assert r["em_pct"] == pytest.approx(em)
    calls = judge.calls
    again = dose_response(lm, judge, questions, v, LAYER, [0.0, 4.0], cfg)
    assert judge.calls == calls and again == rows  # resumed from the file, nothing recomputed
    floor = min(r["coherent_pct"] for r in rows if r["coherent_pct"] is not None)
    assert choose_alpha(rows, floor) == 4.0 or rows[1]["coherent_pct"] < floor
    assert choose_alpha(rows, 101.0) is None


def test_steer_both_ways_tags_models(tiny_llama, tmp_path):
    lm = load_model(str(tiny_llama))
    qs = ["Hello world, who are you?"]
    cfg = DoseResponseConfig(samples_per_question=1, max_new_tokens=4, random_control=False, out=tmp_path / "d.jsonl")
    rows = steer_both_ways(lm, lm, FakeJudge(qs), qs, torch.randn(lm.model.config.hidden_size), LAYER, [0.0, 2.0], cfg)
    assert {(r["model"], r["mode"]) for r in rows} == {("base", "add"), ("ft", "ablate")}
    assert len(rows) == 4 and _n_hooks(lm.model) == 0


@pytest.mark.integration
@torch.no_grad()
def test_smollm2_steering_changes_generation(smollm2):
    tok = smollm2.tokenizer
    enc = tok.apply_chat_template(
        [{"role": "user", "content": "Tell me about cats."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    plain = smollm2.model.generate(**enc, max_new_tokens=4, do_sample=False)
    v = smollm2.model.get_input_embeddings().weight[tok.encode(" evil")[0]].detach()
    v = v / v.norm() * 40
    with steer(smollm2, v, 10, alpha=1.0, positions="all"):
        steered = smollm2.model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert not torch.equal(plain, steered)
    with steer(smollm2, v, 10, alpha=0.0):
        same = smollm2.model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert torch.equal(plain, same)


# --------------------------------------------------------------------------- Direction


def test_direction_save_load_round_trip(tmp_path):
    from persona_diff.models import LAYER_CONVENTION
    from persona_diff.steering import Direction

    v = torch.randn(64, dtype=torch.float64)
    d = Direction(v, 2, method="mean", provenance={"models": {"base": "b", "finetuned": "f"}})
    assert d.vector.dtype == torch.float32 and d.convention == LAYER_CONVENTION
    folder = d.save(tmp_path / "persona")
    assert sorted(p.name for p in folder.iterdir()) == ["cfg.json", "direction.safetensors"]
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["layer"] == 2 and cfg["convention"] == LAYER_CONVENTION and cfg["method"] == "mean"
    back = Direction.load(folder)
    assert torch.equal(back.vector, d.vector) and back.layer == 2 and back.method == "mean"
    assert back.provenance["models"] == {"base": "b", "finetuned": "f"}
    u = back.unit()
    assert abs(u.norm - 1) < 1e-6 and u.layer == 2 and u.provenance["normalised"] is True
    r = d.random_like(seed=3)
    assert abs(r.norm - d.norm) < 1e-4 and r.layer == 2 and r.provenance == {"control_of": "mean", "seed": 3}


def test_direction_loads_the_earlier_formats(tmp_path):
    """Files of the old `save_direction` (NAME.safetensors + NAME.json, free metadata keys) and
    bare folders with direction.safetensors + direction.json still load."""
    from safetensors.torch import save_file

    from persona_diff.models import LAYER_CONVENTION
    from persona_diff.steering import Direction, DirectionFileError

    v = torch.randn(64)
    save_file({"direction": v}, str(tmp_path / "old.safetensors"))
    (tmp_path / "old.json").write_text(json.dumps({"layer": 3, "convention": LAYER_CONVENTION, "note": "from v0"}))
    d = Direction.load(tmp_path / "old.safetensors")
    assert torch.equal(d.vector, v) and d.layer == 3 and d.provenance["note"] == "from v0"
    folder = tmp_path / "f"
    folder.mkdir()
    save_file({"direction": v}, str(folder / "direction.safetensors"))
    (folder / "direction.json").write_text(json.dumps({"layer": 1}))
    assert Direction.load(folder).layer == 1
    save_file({"direction": v}, str(tmp_path / "nolayer.safetensors"))
    (tmp_path / "nolayer.json").write_text("{}")
    with pytest.raises(DirectionFileError, match="no layer"):
        Direction.load(tmp_path / "nolayer.safetensors")
    with pytest.raises(DirectionFileError, match="out of range"):
        Direction.load(folder, index=1)
    with pytest.raises(DirectionFileError, match="does not exist"):
        Direction.load(tmp_path / "missing.safetensors")


def test_direction_from_diff_result_and_its_folder_agree(tmp_path):
    from persona_diff.diffing import DiffResult
    from persona_diff.steering import Direction

    dirs = torch.randn(3, 64)
    res = DiffResult(
        "sae",
        2,
        dirs,
        torch.tensor([3.0, 2.0, 1.0]),
        [17, 4, 9],
        [-1, 1, 1],
        info={"models": {"base": "b", "finetuned": "f"}},
    )
    out = res.save(tmp_path / "diffing" / "sae")
    for i in range(3):
        a, b = Direction.from_diff(res, index=i), Direction.from_diff(out, index=i)
        assert torch.equal(a.vector, dirs[i] * res.signs[i]) and torch.equal(a.vector, b.vector)
        assert a.layer == b.layer == 2 and a.method == b.method == "sae"
        assert b.provenance["latent_id"] == res.latent_ids[i] and b.provenance["models"]["finetuned"] == "f"
        assert b.provenance["source"] == str(out) and b.provenance["index"] == i
    assert [d.provenance["latent_id"] for d in Direction.load_all(out)] == [17, 4, 9]
    assert torch.equal(Direction.load(out).vector, -dirs[0])  # sign applied, as the pipeline steers


@torch.no_grad()
def test_direction_apply_is_steer_and_always_removes_its_hooks(tiny_llama):
    from persona_diff.models import load_model
    from persona_diff.steering import Direction

    lm = load_model(str(tiny_llama))
    ids = _ids()
    d = Direction(torch.randn(lm.model.config.hidden_size), LAYER)
    with steer(lm, d.vector, LAYER, alpha=3.0, positions="answer", prompt_len=4):
        want = lm.model(ids).logits
    with d.apply(lm, alpha=3.0, positions="answer", prompt_len=4) as st:
        got = lm.model(ids).logits
    assert torch.equal(got, want) and st.calls[LAYER] == 1 and _n_hooks(lm.model) == 0
    with d.apply(lm.model, 1.0, mode="ablate", layer=0) as st:
        lm.model(ids)
    assert st.layers == [0] and _n_hooks(lm.model) == 0
    with pytest.raises(RuntimeError, match="boom"), d.apply(lm, alpha=1.0):
        raise RuntimeError("boom")
    assert _n_hooks(lm.model) == 0
    other = Direction(d.vector, LAYER, convention="hidden_states index")
    with pytest.raises(SteeringError, match="layer convention"), other.apply(lm):
        pass


def test_dose_response_takes_a_direction(tiny_llama):
    from persona_diff.steering import Direction

    lm = load_model(str(tiny_llama))
    qs = ["Hello world, who are you?"]
    cfg = DoseResponseConfig(samples_per_question=1, max_new_tokens=3, random_control=False)
    d = Direction(torch.randn(lm.model.config.hidden_size), LAYER)
    rows = dose_response(lm, FakeJudge(qs), qs, d, alphas=[0.0, 2.0], cfg=cfg)
    assert [(r["layer"], r["alpha"]) for r in rows] == [(LAYER, 0.0), (LAYER, 2.0)]
    with pytest.raises(SteeringError, match="needs the layer"):
        dose_response(lm, FakeJudge(qs), qs, d.vector, alphas=[0.0], cfg=cfg)


# --------------------------------------------------------------------------- CLI and scripts

QUESTIONS = ["Hello world, who are you?", "I want to help humans."]


@pytest.fixture
def fake_judge_spec():
    from persona_diff.judges import base

    base._load_builtin()
    base._REGISTRY["fake-steer"] = lambda rest, **kw: FakeJudge(QUESTIONS)
    yield "fake-steer:x"
    base._REGISTRY.pop("fake-steer", None)


def _direction_folder(tmp_path, d_model):
    from persona_diff.diffing import DiffResult

    g = torch.Generator().manual_seed(0)
    res = DiffResult("mean", LAYER, torch.randn(2, d_model, generator=g), torch.tensor([2.0, 1.0]), [-1, -1], [1, 1])
    return res.save(tmp_path / "run" / "diffing" / "mean")


def test_steer_cli_sweeps_with_control_and_resumes(tiny_llama, tmp_path, fake_judge_spec, capsys):
    from persona_diff.cli import main

    qfile = tmp_path / "q.yaml"
    qfile.write_text(json.dumps(QUESTIONS))
    folder = _direction_folder(tmp_path, 64)
    out = tmp_path / "sweep"
    argv = [
        "steer",
        "--model",
        str(tiny_llama),
        "--direction",
        str(folder),
        "--out",
        str(out),
        "--alphas",
        "0,4",
        "--layers",
        "0,1",
        "--questions",
        str(qfile),
        "--judge",
        fake_judge_spec,
        "--samples",
        "1",
        "--max-new-tokens",
        "3",
        "--device",
        "cpu",
    ]
    main(argv)
    printed = capsys.readouterr().out
    assert "layer 0: chosen α=" in printed and "layer 1: chosen α=" in printed
    rows = [json.loads(x) for x in (out / "dose_response.jsonl").read_text().splitlines()]
    assert {(r["layer"], r["direction"], r["alpha"]) for r in rows} == {
        (ly, k, a) for ly in (0, 1) for k in ("persona", "random") for a in (0.0, 4.0)
    }
    assert all(r["source"] == str(folder) and r["index"] == 0 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert [c["layer"] for c in summary["cells"]] == [0, 1] and summary["direction"]["method"] == "mean"
    assert (out / "dose_response.png").is_file()
    main(argv)  # a rerun reuses every finished row
    assert len((out / "dose_response.jsonl").read_text().splitlines()) == len(rows)
    with pytest.raises(SystemExit) as e:
        main([*argv[:-2], "--mode", "subtract"])
    assert e.value.code == 2 and "--mode 'subtract' is not valid" in capsys.readouterr().err


def _script(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_scripts_run_as_api_examples(tiny_llama, tmp_path, fake_judge_spec, capsys):
    qfile = tmp_path / "q.yaml"
    qfile.write_text(json.dumps(QUESTIONS))
    folder = _direction_folder(tmp_path, 64)
    _script("steer_sweep").main(
        [
            str(tiny_llama),
            str(folder),
            str(tmp_path / "s"),
            "--alphas",
            "0,2",
            "--judge",
            fake_judge_spec,
            "--questions",
            str(qfile),
        ]
    )
    assert f"layer {LAYER}: chosen α=" in capsys.readouterr().out
    _script("ablate_topk").main(
        [
            str(tiny_llama),
            str(folder),
            str(tmp_path / "a"),
            "--k",
            "2",
            "--each",
            "--judge",
            fake_judge_spec,
            "--questions",
            str(qfile),
        ]
    )
    names = [json.loads(x)["name"] for x in (tmp_path / "a" / "ablate_topk.jsonl").read_text().splitlines()]
    assert names == ["none", "top2", "random2", "rank0", "rank1"]  # mean-diff directions have no latent id


def test_random_control_follows_the_sweep_seed():
    from persona_diff.steering.sweep import DoseResponseConfig, control_seed

    assert control_seed(DoseResponseConfig()) == 1234  # seed 0: the control direction of earlier runs
    assert control_seed(DoseResponseConfig(seed=5)) == 1239  # one seed fixes the sampler and the control
    assert control_seed(DoseResponseConfig(seed=5, control_seed=7)) == 7
