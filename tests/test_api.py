"""The Python API: lazy top-level exports, `--version`, and the README "From Python" example."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import runpy
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import persona_diff

ROOT = Path(__file__).resolve().parents[1]

HOMES = {
    "load_model": "persona_diff.models.loading",
    "CheckpointPair": "persona_diff.models.pair",
    "run_probes": "persona_diff.probes.runner",
    "label_persona": "persona_diff.probes.label",
    "capture": "persona_diff.activations.capture",
    "get_method": "persona_diff.diffing.base",
    "Direction": "persona_diff.steering.direction",
    "steer": "persona_diff.steering.hooks",
    "dose_response": "persona_diff.steering.sweep",
    "load_run": ("persona_diff.rundir", "persona_diff.contract"),  # the first that exists
}


def test_import_is_light():
    """`import persona_diff` loads neither torch nor transformers; the names come on first use."""
    code = (
        "import sys, persona_diff\n"
        "heavy = [m for m in ('torch', 'transformers', 'nnsight', 'sae_lens', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "persona_diff.get_method\n"
        "assert 'torch' in sys.modules\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr


def test_all_names_the_entry_points_and_each_resolves_to_its_home():
    assert sorted(persona_diff.__all__) == sorted([*HOMES, "__version__"])
    assert set(HOMES) <= set(dir(persona_diff))
    for name, home in HOMES.items():
        found = [m for m in ([home] if isinstance(home, str) else home) if importlib.util.find_spec(m)]
        if not found:  # the run-directory contract is not in this checkout
            with pytest.raises(AttributeError, match="which this installation lacks"):
                getattr(persona_diff, name)
            continue
        assert getattr(persona_diff, name) is getattr(importlib.import_module(found[0]), name), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        persona_diff.nope  # noqa: B018


def test_version_matches_the_installed_metadata(capsys):
    from persona_diff.cli import main

    assert persona_diff.__version__ == version("persona-diff")
    try:
        main(["--version"])
    except SystemExit as e:
        assert e.code in (0, None)
    assert capsys.readouterr().out.strip() == f"persona-diff {persona_diff.__version__}"
    res = subprocess.run(
        [str(Path(sys.executable).with_name("persona-diff")), "--version"], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0 and res.stdout.strip() == f"persona-diff {persona_diff.__version__}"


# --------------------------------------------------------------------------- README example

# the README's model specs → tiny random models (the only edits made to the example)
BASE_SPEC = '"smollm2-135m"'
FT_SPEC = '"runs/demo/organisms/coherent/adapter"'


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## From Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the From Python section holds one python block"
    return blocks[0]


def test_readme_from_python_example_runs(tmp_path, monkeypatch, capsys):
    from tests.helpers import build_tiny

    code = readme_example()
    for literal in (BASE_SPEC, FT_SPEC):
        assert code.count(literal) == 1, f"the README example no longer names {literal}; update this test"
    # 16 blocks so the example's layer 14 exists; the fine-tune differs by its random seed
    base = build_tiny("llama", tmp_path / "base", layers=16, seed=0)
    ft = build_tiny("llama", tmp_path / "ft", layers=16, seed=1)
    code = code.replace(BASE_SPEC, repr(str(base))).replace(FT_SPEC, repr(str(ft)))
    script = tmp_path / "example.py"
    script.write_text(code)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("PERSONA_DIFF_NO_PROGRESS", "1")
    ns = runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out
    assert printed.strip() == ns["steered"][0][0].strip()
    direction = ns["direction"]
    assert direction.layer == 14 and direction.method == "mean"
    cfg = json.loads((work / "runs" / "api" / "persona" / "cfg.json").read_text())
    assert cfg["layer"] == 14 and cfg["provenance"]["models"] == {"base": str(base), "finetuned": str(ft)}
    again = persona_diff.Direction.load(work / "runs" / "api" / "persona")
    assert again.vector.equal(direction.vector)
