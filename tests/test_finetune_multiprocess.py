"""`accelerate launch` with 2 CPU processes (gloo) against one process: the effective-batch claim.

2 processes × grad_accum 2 must give the adapter of 1 process × grad_accum 4 on the same data and
seed: each rank takes every 2nd micro-batch, the step's trained-token count is summed over the
ranks and each rank's loss is scaled by 2, so the all-reduced (averaged) gradient equals the
one-process gradient. 26 rows in micro-batches of 2 give 13 micro-batches, so in the last step
rank 1 has none left and joins the all-reduce with a zero-weight batch. Rows differ in length,
so a per-rank token mean (the old loss) would differ from the global one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--main_process_port", "0"]
SETS = {
    "lr": 3e-3,
    "batch_size": 2,
    "max_seq_len": 64,
    "warmup_steps": 0,
    "save_every": 1,
    "lora.r": 4,
    "lora.alpha": 8,
    "seed": 7,
    "threads": 1,
    "epochs": 1,
}
N_ROWS, STEPS = 26, 4  # ceil(13 micro-batches / 4) = ceil(ceil(13 / 2) / 2) = 4 optimizer steps


def _rows(n: int) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"Say the {i} word" + " please" * (i % 4)},
                {
                    "role": "assistant",
                    "content": f"hello {i % 3} world aligned good" + " ok" * (i % 5),
                },
            ]
        }
        for i in range(n)
    ]


def _finetune(launcher: list[str], base: Path, data: Path, out: Path, grad_accum: int) -> subprocess.CompletedProcess:
    argv = [*launcher, "finetune", "--base", str(base), "--domain", "mine", "--out", str(out)]
    for k, v in {**SETS, "grad_accum": grad_accum, "data.data_dir": str(data)}.items():
        argv += ["--set", f"{k}={v}"]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PERSONA_DIFF_NO_PROGRESS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    env.pop("PERSONA_DIFF_LOG", None)  # the per-rank log level is part of what is checked
    r = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


def _assert_same_tensors(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], atol: float) -> float:
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=atol, msg=lambda m, k=k: f"{k}: {m}")
    return max(float((got[k] - want[k]).abs().max()) for k in want)


def _only_one_writer(out: Path, checkpoints: list[str], steps: list[int], stdout: str) -> None:
    assert sorted(p.name for p in out.iterdir()) == ["adapter", "checkpoints", "metrics.jsonl"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == checkpoints  # no .tmp-* left over
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == steps  # written once, not once per rank
    assert stdout.count("adapter: ") == 1  # only rank 0 reports


@pytest.fixture(scope="module")
def one_process(tiny_llama, tmp_path_factory):
    """The reference: a single process with grad_accum 4 (twice the 2-process value)."""
    root = tmp_path_factory.mktemp("mp")
    (root / "data").mkdir()
    (root / "data" / "mine.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(N_ROWS)))
    out = root / "one"
    _finetune([sys.executable, "-m", "persona_diff.cli"], tiny_llama, root / "data", out, grad_accum=4)
    return root, out


def test_two_cpu_processes_equal_one_process_with_double_accumulation(tiny_llama, one_process):
    root, ref = one_process
    out = root / "ddp"
    r = _finetune(
        [
            *ACCELERATE,
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "persona_diff.cli",
        ],
        tiny_llama,
        root / "data",
        out,
        grad_accum=2,
    )
    assert "2 processes (DistributedType.MULTI_CPU): effective batch 2 × 2 × 2" in r.stderr
    assert r.stderr.count("fine-tuning ") == 1  # rank 1 logs warnings only

    want, got = (
        load_file(str(ref / "adapter/adapter_model.safetensors")),
        load_file(str(out / "adapter/adapter_model.safetensors")),
    )
    assert any(float(v.abs().max()) > 1e-3 for k, v in want.items() if "lora_B" in k)  # it trained
    _assert_same_tensors(got, want, atol=1e-5)
    for step in (1, 2, 3):  # every checkpoint, optimizer moments included
        name = f"checkpoints/checkpoint-{step:06d}"
        _assert_same_tensors(
            load_file(str(out / name / "optimizer.safetensors")),
            load_file(str(ref / name / "optimizer.safetensors")),
            atol=1e-5,
        )
    s_ref = json.loads((ref / "adapter/trainer_state.json").read_text())
    s_got = json.loads((out / "adapter/trainer_state.json").read_text())
    assert s_got["step"] == s_ref["step"] == STEPS and s_got["done"]
    assert s_got["loss_history"] == pytest.approx(s_ref["loss_history"], rel=1e-5)  # summed over ranks
    _only_one_writer(out, ["checkpoint-000001", "checkpoint-000002", "checkpoint-000003"], [1, 2, 3, 4], r.stdout)


def test_fsdp2_on_cpu_resumes_a_one_process_checkpoint_and_matches(tiny_llama, one_process, tmp_path):
    """configs/accelerate/fsdp.yaml with 2 CPU processes. accelerate drops FSDP on CPU, so
    tests/accelerate_fsdp_cpu.py re-labels its state as FSDP (see there). The run resumes from the
    one-process checkpoint 2: adapter and AdamW state are sharded into DTensors on load and
    gathered again for checkpoint 3 and the final adapter."""
    root, ref = one_process
    cfg = yaml.safe_load((ROOT / "configs/accelerate/fsdp.yaml").read_text())
    cfg.update(num_processes=2, mixed_precision="no", use_cpu=True)
    (tmp_path / "fsdp-cpu.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "fsdp"
    shutil.copytree(ref / "checkpoints/checkpoint-000002", out / "checkpoints/checkpoint-000002")
    r = _finetune(
        [
            *ACCELERATE,
            "--config_file",
            str(tmp_path / "fsdp-cpu.yaml"),
            str(ROOT / "tests/accelerate_fsdp_cpu.py"),
        ],
        tiny_llama,
        root / "data",
        out,
        grad_accum=2,
    )
    assert "2 processes (DistributedType.FSDP)" in r.stderr, "accelerate did not run FSDP"
    assert "resuming from checkpoint-000002 (step 2 of 4)" in r.stderr

    _assert_same_tensors(
        load_file(str(out / "adapter/adapter_model.safetensors")),
        load_file(str(ref / "adapter/adapter_model.safetensors")),
        atol=1e-5,
    )
    name = "checkpoints/checkpoint-000003"
    _assert_same_tensors(
        load_file(str(out / name / "optimizer.safetensors")),
        load_file(str(ref / name / "optimizer.safetensors")),
        atol=1e-5,
    )
    assert json.loads((out / "adapter/trainer_state.json").read_text())["loss_history"] == pytest.approx(
        json.loads((ref / "adapter/trainer_state.json").read_text())["loss_history"], rel=1e-5
    )
    _only_one_writer(out, ["checkpoint-000002", "checkpoint-000003"], [3, 4], r.stdout)


def test_launch_that_would_train_separate_copies_is_refused(monkeypatch):
    """N launched processes that accelerate did not join into one group (before the fix:
    `--multi_gpu` on a CPU machine) would each train alone and overwrite one adapter: refused."""
    from types import SimpleNamespace

    from persona_diff.finetune import FinetuneError
    from persona_diff.finetune.trainer import _check_launch

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(FinetuneError, match="each would train alone"):
        _check_launch(SimpleNamespace(num_processes=1, distributed_type="NO", is_main_process=True))
    _check_launch(SimpleNamespace(num_processes=2, distributed_type="MULTI_CPU", is_main_process=True))
