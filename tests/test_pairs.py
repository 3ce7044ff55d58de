"""`persona-diff run --pairs`: a study probes each distinct base once, each pair's results equal
a standalone run's, resume and config changes rerun only what changed, and the study report
has the table, working links and no false judge banner."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from persona_diff.config import load_config
from persona_diff.errors import ConfigError
from persona_diff.pipeline.config import RunConfig
from persona_diff.pipeline.multi import read_pairs, run_pairs
from persona_diff.pipeline.run import Pipeline
from persona_diff.rundir import load_run

from .helpers import TINY, build_tiny, save_adapter

STUDY = [*TINY, "probes.probes=[harm, self, describe, rate_own, mfq]", "diff.methods=[mean]"]


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """Two fine-tunes of one tiny base, and one fine-tune of another base."""
    d = tmp_path_factory.mktemp("models")
    b1, b2 = build_tiny("llama", d / "b1"), build_tiny("llama", d / "b2", seed=1)
    ads = []
    for i, (b, name) in enumerate(((b1, "a"), (b1, "b"), (b2, "c"))):
        torch.manual_seed(100 + i)
        ads.append((name, str(b), str(save_adapter(b, d / f"ad_{name}"))))
    pairs = d / "pairs.yaml"
    pairs.write_text(yaml.safe_dump([{"name": n, "base": b, "finetuned": f} for n, b, f in ads]))
    return pairs, ads


def _events(path: Path) -> list[tuple[str, str]]:
    return [(e["stage"], e["event"]) for e in map(json.loads, path.read_text().splitlines())]


def _comparable(run_dir: Path) -> dict:
    """Every result of a pair that must not depend on how it was run."""
    run = load_run(run_dir)
    s = run.summary.to_dict()
    return {
        "summary": s,
        "label": run.label.to_dict(),
        "answers": {r: [a.to_dict() for a in run.answers(r)] for r in ("base", "finetuned")},
        "directions": {m: [(r.latent_id, r.score) for r in ds.rows] for m, ds in run.directions.items()},
        "dose": [r.to_dict() for r in run.dose_response],
        "correlations": [c.to_dict() for c in run.correlations],
        "self": {r: (run_dir / "probes" / r / "self.jsonl").read_text() for r in ("base", "finetuned")},
    }


@pytest.fixture(scope="module")
def study(bases, tmp_path_factory):
    pairs, _ = bases
    out = tmp_path_factory.mktemp("study") / "study"
    run_pairs(pairs, load_config(RunConfig, None, STUDY), out)
    return out


def test_each_base_is_probed_once(study):
    shared = _events(study / "_bases" / "stages.log.jsonl")
    assert sum(e == "start" for _, e in shared) == 2  # two distinct bases, each once
    folders = sorted(p.name for p in (study / "_bases").iterdir() if p.is_dir())
    assert len(folders) == 2 and all((study / "_bases" / f / "_stage.json").is_file() for f in folders)
    for name in ("a", "b", "c"):
        ev = _events(study / name / "stages.log.jsonl")
        assert ("probes/base", "start") not in ev and ev.count(("probes/base", "shared")) == 1
        assert ev.count(("probes/finetuned", "start")) == 1
        assert (study / name / "probes" / "base" / "harm.jsonl").is_file()  # each pair folder is complete
    s = load_run(study).study
    assert [e.name for e in s.entries] == ["a", "b", "c"]
    assert s.entries[0].base_probes == s.entries[1].base_probes != s.entries[2].base_probes


def test_pairs_equal_standalone_runs(study, bases, tmp_path):
    _, ads = bases
    cfg = load_config(RunConfig, None, STUDY)
    for name, base, ft in ads:
        alone = tmp_path / name
        Pipeline(base, ft, cfg, alone).run()
        got, ref = _comparable(study / name), _comparable(alone)
        for k in ref:
            assert got[k] == ref[k], f"pair {name}: {k} differs from a standalone run"


def test_resume_and_changed_config(study, bases, tmp_path):
    import shutil

    pairs, _ = bases
    out = tmp_path / "study"
    shutil.copytree(study, out)
    n_shared = len(_events(out / "_bases" / "stages.log.jsonl"))
    run_pairs(pairs, load_config(RunConfig, None, STUDY), out)  # resume: nothing reruns
    for name in ("a", "b", "c"):
        assert all(e == "skip" for _, e in _events(out / name / "stages.log.jsonl")[-7:])
    assert [e for s, e in _events(out / "stages.log.jsonl") if s.startswith("internals")][-2:] == ["skip", "skip"]
    assert len(_events(out / "_bases" / "stages.log.jsonl")) == n_shared  # not even looked up again
    # another steering setting: the probes (shared or not) stay, steering reruns
    before = len(_events(out / "a" / "stages.log.jsonl"))
    run_pairs(pairs, load_config(RunConfig, None, [*STUDY, "steering.alphas=[0.0, 2.0]"]), out, force=True)
    ev = _events(out / "a" / "stages.log.jsonl")[before:]
    assert ("probes/base", "skip") in ev and ("probes/finetuned", "skip") in ev and ("steering", "start") in ev
    # another probe setting: each base is probed again, once
    run_pairs(pairs, load_config(RunConfig, None, [*STUDY, "probes.harm.samples=3"]), out, force=True)
    shared = _events(out / "_bases" / "stages.log.jsonl")
    assert sum(e == "start" for _, e in shared) == 4
    assert list((out / "a" / "probes").glob("base.prev-*"))  # the old copy is kept aside


def test_study_report(study):
    page = (study / "report.html").read_text()
    assert "no judge.json" not in page and "hash:t" in page
    assert "stage not run" not in page
    for name in ("a", "b", "c"):
        assert f'href="{name}/report.html"' in page and (study / name / "report.html").is_file()
    rows = re.findall(r'<a href="([^"]+)/report.html">', page)
    labels = [load_run(study / r).summary.label for r in rows]
    from persona_diff.rundir.values import label_sort_key

    assert labels == sorted(labels, key=label_sort_key)  # table rows in label order
    assert "report_harm_vs_selfreport" in "".join(p.name for p in (study / "plots").iterdir())
    assert "Only 3 fine-tunes" in page  # a plain warning below 5 models
    assert "Model diffing" not in page  # no pair-only sections


def test_study_internals_map_every_fine_tune_of_a_base_once(study):
    """One internals stage per base over all its fine-tunes (the pairs run none of their own)."""
    summaries = {p.parent.name: json.loads(p.read_text()) for p in (study / "internals").glob("*/internals.json")}
    assert len(summaries) == 2  # two bases
    models = sorted(tuple(s["models"]) for s in summaries.values())
    assert models == [("base", "a", "b"), ("base", "c")]
    for s in summaries.values():
        assert set(s["targets"].values()) == {"behavioural label"}  # the pairs file gives no truth
        rows = s["table"]["n_per_model"]
        for name in s["models"][1:]:
            assert rows[name] == len(load_run(study / name).answers("finetuned"))
    assert not any((study / n / "internals").exists() for n in ("a", "b", "c"))
    assert sum(s.startswith("internals/") and e == "finish" for s, e in _events(study / "stages.log.jsonl")) == 2
    page = (study / "report.html").read_text()
    assert "Persona from the inside" in page and "Per-answer correlations" in page
    assert "the study's other fine-tunes" in (study / "a" / "report.html").read_text()


def test_bad_pairs_files(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump([{"name": "analysis", "base": "x", "finetuned": "y"}]))
    with pytest.raises(ConfigError, match="cannot name a folder"):
        read_pairs(f)
    f.write_text(yaml.safe_dump([{"name": "a", "base": "x"}]))
    with pytest.raises(ConfigError, match="needs name, base and finetuned"):
        read_pairs(f)


def test_finetune_sweep_writes_a_pairs_file_run_reads(tmp_path, monkeypatch):
    """The sweep's pairs.yaml is read as it is by `run --pairs` (training stubbed out)."""
    from persona_diff.finetune import sweep

    def fake_train(base, name, cfg, out_dir, registry=None):
        (Path(out_dir) / "adapter").mkdir(parents=True)
        return Path(out_dir) / "adapter"

    monkeypatch.setattr(sweep, "finetune_domain", fake_train)
    monkeypatch.setattr(sweep, "domain_rows", lambda *a, **k: [{}])
    monkeypatch.setattr(sweep, "resolve_domains", lambda names, reg: list(names))
    from persona_diff.finetune import SFTConfig

    f = sweep.finetune_sweep("smollm2-135m", ["insecure", "secure"], SFTConfig(), tmp_path / "sw", registry={})
    pairs = read_pairs(f)
    assert [p["name"] for p in pairs] == ["insecure", "secure"] and all(Path(p["finetuned"]).is_dir() for p in pairs)
    assert "persona-diff run --pairs" in f.read_text().splitlines()[1]


def test_cli_printout_reads_the_contract(study, capsys):
    from persona_diff.commands.run import _print_outcome

    _print_outcome(study)
    out = capsys.readouterr().out
    assert "judge:   hash:t (UNCALIBRATED)" in out and all(re.search(rf"^{n}\s", out, re.M) for n in ("a", "b", "c"))
    _print_outcome(study / "a")
    out = capsys.readouterr().out
    assert out.startswith("label:   ") and "EM%:     base" in out and "[finetuned] Q:" in out
