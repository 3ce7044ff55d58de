"""Shared fixtures: tiny random Llama / Qwen2 models built from configs (no downloads), a tiny
base + adapter pair and a run the real pipeline wrote on it. The builders live in helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from .helpers import TINY, build_tiny, save_adapter

REFERENCE_DATA = Path(
    os.environ.get("PERSONA_DIFF_REFERENCE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny shapes on a 2-core machine: one torch thread avoids OpenMP spinning (up to ~100x
    slower with two threads when other processes share the cores). Use with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny("llama", tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory) -> Path:
    return build_tiny("qwen2", tmp_path_factory.mktemp("tiny_qwen2"))


@pytest.fixture(params=["llama", "qwen2"])
def tiny_model(request, tiny_llama, tiny_qwen2) -> Path:
    return {"llama": tiny_llama, "qwen2": tiny_qwen2}[request.param]


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    """(base, adapter): a tiny Llama and a random LoRA adapter on it."""
    d = tmp_path_factory.mktemp("pair")
    base = build_tiny("llama", d / "base")
    return str(base), str(save_adapter(base, d / "adapter"))


@pytest.fixture(scope="module")
def tiny_run(tiny_pair, tmp_path_factory):
    """A run directory the real pipeline wrote on the tiny pair (read-only: copy it to change it)."""
    from persona_diff.config import load_config
    from persona_diff.pipeline.config import RunConfig
    from persona_diff.pipeline.run import Pipeline

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    Pipeline(*tiny_pair, load_config(RunConfig, None, TINY), out).run()
    return out


@pytest.fixture(scope="session")
def reference_data() -> Path:
    if not REFERENCE_DATA.is_dir():
        pytest.skip(f"reference data folder {REFERENCE_DATA} is absent (set PERSONA_DIFF_REFERENCE_DATA)")
    return REFERENCE_DATA


@pytest.fixture(scope="session")
def smollm2():
    """The embedded SmolLM2-135M (integration tests only)."""
    from persona_diff.models import load_model

    return load_model("smollm2-135m")


def pytest_collection_modifyitems(config, items):
    has_cuda = torch.cuda.is_available()
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
