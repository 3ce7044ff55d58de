"""A wheel built from the checkout works outside it: configs, resources and the embedded model.

The wheel goes into a fresh venv in a temporary folder. Its dependencies come from the test
environment through a plain path entry (a `.pth` line), which does not run the checkout's
editable-install hook, so `persona_diff` can only be imported from the wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp / "dist"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    (wheel,) = (tmp / "dist").glob("persona_diff-*.whl")
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False)
    site = next(env_dir.glob("lib/python*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return env_dir


def _run(env_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "persona_diff.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_wheel_imports_from_its_own_install(wheel_venv, tmp_path):
    out = subprocess.run(
        [
            str(wheel_venv / "bin" / "python"),
            "-c",
            "import persona_diff.paths as p; print(p.PACKAGE); print(p.CONFIGS); print(p.checkout_root())",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    assert out[0].startswith(str(wheel_venv)) and out[1].startswith(str(wheel_venv))
    assert out[2] == "None"  # no checkout: nothing is read from the repository


def test_wheel_data_list(wheel_venv, tmp_path):
    r = _run(wheel_venv, "data", "list", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "insecure" in r.stdout and "bad_medical_advice" in r.stdout


def test_wheel_models_inspect_embedded(wheel_venv, tmp_path):
    r = _run(wheel_venv, "models", "inspect", "smollm2-135m", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "576" in r.stdout and "30" in r.stdout  # d_model and layers of SmolLM2-135M
