"""bench/gpu.py at tiny shapes on CPU: it runs, prints every row of its table, ratios are finite."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ROWS = [
    "matmul rate TFLOP/s",
    "SAE ours (dense decoder) tok/s",
    "SAE ours (sparse decoder) tok/s",
    "SAE SAELens SAETrainer tok/s",
    "SAE ours (dense decoder) FVU",
    "SAE SAELens SAETrainer FVU",
    "SAE ours (dense decoder) MFU",
    "SAE ours (dense) ÷ SAELens tok/s",
    "SAE ours (sparse) ÷ SAELens tok/s",
    "SAE ours (dense) from a bf16 store tok/s",
    "SAE from store ÷ from GPU memory tok/s",
    "SAE step (dense decoder) ms",
    "SAE step: BatchTopK select share",
    "SAE SAELens SAETrainer FVU after 4× steps",
    "crosscoder ours (dense decoder) tok/s",
    "crosscoder ours (sparse decoder) tok/s",
    "tiny plain forward tok/s",
    "tiny capture(last block) ÷ forward tok/s",
    "tiny capture(mid block, early stop) ÷ forward tok/s",
    "tiny HF generate tok/s",
    "tiny vLLM generate tok/s",
]


def test_gpu_bench_tiny_runs_on_cpu():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "bench/gpu.py", "--tiny"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Python packages needed" in out.stdout and "sae-lens" in out.stdout
    table = [ln for ln in out.stdout.splitlines() if ln.startswith("| ")]
    for row in ROWS:
        assert any(row in ln for ln in table), row
    res = json.loads(next(ln for ln in out.stdout.splitlines() if ln.startswith("JSON "))[5:])
    for row in ROWS:
        if "vLLM" in row:
            continue  # n/a on CPU
        key = next(k for k in res if row in k)
        assert res[key] is not None and math.isfinite(res[key]) and res[key] > 0, (row, res[key])
    # sparse and dense decoders train the same coder (same seed, same data): same FVU
    assert math.isclose(res["SAE ours (dense decoder) FVU"], res["SAE ours (sparse decoder) FVU"], rel_tol=1e-3)
    assert res["SAE ours (dense decoder) FVU"] < 1.0  # held-out shares the training dictionary
    assert 0 < res["SAE ours (dense decoder) MFU"] < 1.5
