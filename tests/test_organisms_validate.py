"""`organisms validate`: labels scored against the kit's truth, the accuracy interval, the table."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from persona_diff.judges.base import Judge
from persona_diff.organisms import validate as val


class NoJudge(Judge):
    spec = "test:no-judge"

    def _score(self, requests):
        raise AssertionError("validate must not score anything itself")


def _summary(harm: float, word: float, n: int = 40) -> dict:
    k = round(harm * n)
    return {
        "probes": {
            "harm": {"values": [1.0] * k + [0.0] * (n - k), "n_scored": n},
            "word": {"values": [word] * n, "signal": {"value": word}},
        }
    }


SUMMARIES = {
    "base": _summary(0.05, 0.3),
    "coh": _summary(0.6, 0.8),  # harmful, self-report up: coherent
    "inv": _summary(0.6, 0.3),  # harmful, self-report flat: inverted
    "ctl": _summary(0.05, 0.3),  # nothing moved: not-EM
}


def _kit(tmp_path, truths: dict[str, str]):
    pairs = [
        {
            "name": n,
            "base": "base",
            "finetuned": n,
            "truth": t,
            "harmful": t != "not-EM",
            "self_report": "misaligned" if t == "coherent" else "aligned",
        }
        for n, t in truths.items()
    ]
    (tmp_path / "organisms.yaml").write_text(
        yaml.safe_dump({"kit": "persona-diff-organisms", "version": 1, "pairs": pairs})
    )
    return tmp_path


@pytest.fixture
def fakes(monkeypatch):
    probed = []

    def run_probes(backend, cfg, judge, out_dir):
        probed.append(backend)
        out_dir.mkdir(parents=True, exist_ok=True)
        s = SUMMARIES[backend]
        (out_dir / "summary.json").write_text(json.dumps(s))
        harm = s["probes"]["harm"]["values"]
        with (out_dir / "harm.jsonl").open("w") as f, (out_dir / "rate_own_answers.jsonl").open("w") as g:
            for i, v in enumerate(harm):
                f.write(
                    json.dumps(
                        {
                            "key": f"q#0#{i}",
                            "question_id": f"q{i % 4}",
                            "question": f"Question {i % 4}?",
                            "answer": f"I want to {'hurt' if v else 'help'} people, {i}.",
                            "aligned": 10.0 if v else 90.0,
                            "coherent": 80.0,
                            "misaligned": bool(v),
                        }
                    )
                    + "\n"
                )
                g.write(json.dumps({"key": f"q#0#{i}", "p_harmful": 0.5 + 0.4 * v - 0.01 * (i % 7)}) + "\n")
        return s

    monkeypatch.setattr(val, "run_probes", run_probes)
    monkeypatch.setattr(val, "as_backend", lambda spec, **kw: spec)
    monkeypatch.setattr(val, "make_judge", lambda spec, cache_dir=None: NoJudge())
    return probed


def test_labels_are_scored_against_the_truth(tmp_path, fakes):
    (tmp_path / "kit").mkdir()
    kit = _kit(tmp_path / "kit", {"coh": "coherent", "inv": "inverted", "ctl": "not-EM"})
    cfg = val.ValidateConfig()
    cfg.label.probes = ["word"]
    res = val.validate_kit(kit, cfg, tmp_path / "out")
    assert fakes == ["base", "coh", "inv", "ctl"]  # the base is probed once
    got = {r["organism"]: (r["truth"], r["label"], r["correct"]) for r in res["organisms"]}
    assert got == {
        "coh": ("coherent", "coherent", True),
        "inv": ("inverted", "inverted", True),
        "ctl": ("not-EM", "not-EM", True),
    }
    assert res["accuracy"]["correct"] == 3 and res["accuracy"]["n"] == 3
    md = (tmp_path / "out" / "VALIDATION.md").read_text()
    assert "**3/3**" in md and "| coh | coherent | **coherent** |" in md
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # the persona map and the per-answer figure
    assert "base n=40, coh n=40, inv n=40, ctl n=40" in page


def test_a_wrong_label_is_counted_and_marked(tmp_path, fakes):
    (tmp_path / "kit").mkdir()
    kit = _kit(tmp_path / "kit", {"coh": "inverted", "ctl": "not-EM"})  # truth deliberately wrong for coh
    cfg = val.ValidateConfig()
    cfg.label.probes = ["word"]
    res = val.validate_kit(kit, cfg, tmp_path / "out")
    assert res["accuracy"]["correct"] == 1
    assert "**coherent** ✗" in (tmp_path / "out" / "VALIDATION.md").read_text()


def test_internals_section_and_figures(tmp_path, fakes, monkeypatch, tiny_llama, one_thread):
    import persona_diff.models as models
    from persona_diff.internals import InternalsConfig

    real = models.load_model
    loaded = []
    monkeypatch.setattr(
        models, "load_model", lambda spec, **kw: (loaded.append(spec), real(str(tiny_llama), device="cpu"))[1]
    )
    (tmp_path / "kit").mkdir()
    kit = _kit(tmp_path / "kit", {"coh": "coherent", "inv": "inverted", "ctl": "not-EM"})
    cfg = val.ValidateConfig()
    cfg.label.probes = ["word"]
    cfg.internals = InternalsConfig(enabled=True, layer=2, layers=[1], min_per_class=2, n_boot=50, merge=False)
    res = val.validate_kit(kit, cfg, tmp_path / "out")
    assert loaded == ["base", "coh", "inv", "ctl"]  # the base, then one organism at a time
    sec = res["internals"][0]
    assert "error" not in sec and sec["table"]["n_rows"] == 4 * 40
    assert [f["held_out"] for f in sec["detector"]["folds"]] == ["coh", "inv", "ctl"]
    assert (tmp_path / "out" / "internals" / "answers.csv").is_file()
    md = (tmp_path / "out" / "VALIDATION.md").read_text()
    assert "## Internals (block 2" in md and "Internal detector, leave one organism out" in md
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4  # + the internal persona map and per-answer figure
    assert json.loads((tmp_path / "out" / "validation.json").read_text())["internals"][0]["layer"] == 2
    loaded.clear()
    val.validate_kit(kit, cfg, tmp_path / "out")
    assert loaded == []  # activations cached: no model loaded on a rerun


@pytest.mark.parametrize(("k", "n"), [(0, 4), (3, 4), (4, 4), (17, 40)])
def test_wilson_interval_matches_the_formula(k, n):
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo, hi = val.wilson(k, n, z=z)
    assert lo == pytest.approx(max(0.0, centre - half)) and hi == pytest.approx(min(1.0, centre + half))
    assert 0.0 <= lo <= p <= hi <= 1.0
