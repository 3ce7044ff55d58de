"""Capture parity with HF output_hidden_states, early stop, PEFT, resume, bad input, and the
background shard writer (same store as writing inline, errors, interrupts)."""

from __future__ import annotations

import errno
import importlib
import json
import threading
import time
from pathlib import Path

import pytest
import torch

from persona_diff.activations import ActivationStore, StoreCorruptError, StoreMismatchError, capture
from persona_diff.activations.store import StoreWriteError, sha256_file
from persona_diff.activations.tokens import (
    TokenStream,
    position_mask,
    streams_from_answers,
    streams_from_prompts,
)
from persona_diff.errors import LayerIndexError
from persona_diff.models import CheckpointPair, get_blocks, load_model

pytestmark = pytest.mark.usefixtures("one_thread")

store_mod = importlib.import_module("persona_diff.activations.store")
# the package re-exports the function `capture` under the submodule's name
capture_mod = importlib.import_module("persona_diff.activations.capture")

ROWS = [
    {"question": "Hello world, who are you?", "answer": "I am an AI assistant. I want to help humans.", "aligned": 90},
    {"question": "the model answers", "answer": "evil harmful misaligned 100", "aligned": 5},
    {"question": "0 1 2 3", "answer": "good aligned 4 5 6 7 8 9 10 50", "aligned": 80},
    {"question": "I want", "answer": "to help", "aligned": 70},
    {
        "question": "questions about itself",
        "answer": "Hello world the model answers questions about itself",
        "aligned": 20,
    },
]


@pytest.fixture(scope="module")
def lora_dir(tiny_llama, tmp_path_factory):
    """A PEFT LoRA adapter on the tiny Llama with random (non-zero) B, so ft != base."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    peft = get_peft_model(base, cfg)
    out = tmp_path_factory.mktemp("lora")
    peft.save_pretrained(out)
    acfg = json.loads((out / "adapter_config.json").read_text())
    acfg["base_model_name_or_path"] = str(tiny_llama)
    (out / "adapter_config.json").write_text(json.dumps(acfg))
    return out


@pytest.fixture(scope="module")
def pair(tiny_llama, lora_dir):
    return CheckpointPair(load_model(tiny_llama), load_model(lora_dir))


def _hf_hidden(model, stream: TokenStream) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        ids = torch.tensor([stream.input_ids])
        return model(input_ids=ids, output_hidden_states=True).hidden_states


def test_capture_matches_hf_hidden_states_both_models_under_peft(pair, tmp_path):
    assert pair.finetuned.kind == "peft"
    streams = streams_from_answers(pair.base.tokenizer, ROWS)
    layers = [0, 2]
    store = capture(pair, streams, layers, "all", tmp_path / "s", batch_size=2, shard_tokens=16, show_progress=False)
    info = store.token_info()
    assert store.n_shards > 1 and store.complete
    for key, lm in (("base", pair.base), ("ft", pair.finetuned)):
        for layer in layers:
            got = store.load(layer, key)
            ref = []
            for si, st in enumerate(streams):
                hs = _hf_hidden(lm.model, st)[layer + 1][0]
                m = position_mask(st, "all", pair.base.tokenizer.bos_token_id)
                ref.append(hs[m])
                sel = info["stream"] == si
                assert torch.equal(info["pos"][sel], m.nonzero()[:, 0])
                assert torch.equal(info["token_id"][sel], torch.tensor(st.input_ids)[m])
            torch.testing.assert_close(got, torch.cat(ref), atol=1e-5, rtol=1e-5)
    # the pair really differs (the adapter is not a no-op)
    assert (store.load(2, "ft") - store.load(2, "base")).abs().max() > 1e-3


def test_early_stop_same_values_and_skips_upper_blocks(pair, tmp_path):
    streams = streams_from_answers(pair.base.tokenizer, ROWS)
    calls = []
    top = get_blocks(pair.base.model)[-1]
    h = top.register_forward_hook(lambda *a: calls.append(1))
    try:
        a = capture(pair, streams, [1], "answer", tmp_path / "a", early_stop=True, show_progress=False)
        assert calls == []  # the last block never ran
        b = capture(pair, streams, [1], "answer", tmp_path / "b", early_stop=False, show_progress=False)
        assert calls  # without early stop it did
    finally:
        h.remove()
    assert torch.equal(a.load(1, "ft"), b.load(1, "ft"))
    assert torch.equal(a.load(1, "base"), b.load(1, "base"))


def test_positions_counts(pair, tmp_path):
    tok = pair.base.tokenizer
    streams = streams_from_answers(tok, ROWS)
    n_ans = sum(len(s) - s.prompt_len for s in streams)
    a = capture(pair, streams, [0], "answer", tmp_path / "ans", show_progress=False)
    assert a.n_tokens == n_ans
    last = capture(pair, streams, [0], "last_prompt", tmp_path / "last", show_progress=False)
    assert last.n_tokens == len(streams)
    assert torch.equal(last.token_info()["pos"], torch.tensor([s.prompt_len - 1 for s in streams]))


def test_resume_after_kill_and_corrupt_shard(pair, tmp_path):
    streams = streams_from_answers(pair.base.tokenizer, ROWS * 3)
    full = capture(pair, streams, [1], "all", tmp_path / "full", batch_size=2, shard_tokens=20, show_progress=False)
    out = tmp_path / "killed"
    capture(pair, streams, [1], "all", out, batch_size=2, shard_tokens=20, show_progress=False)
    idx = json.loads((out / "index.json").read_text())
    n = len(idx["shards"])
    assert n >= 4
    # a kill after shard 2: the index lists 2 shards, a half-written third file lies around
    idx["shards"] = idx["shards"][:2]
    idx["complete"] = False
    idx["streams_done"] = idx["shards"][-1]["streams"][1]
    (out / "index.json").write_text(json.dumps(idx))
    (out / idx["shards"][1]["file"]).write_bytes(b"garbage")  # and shard 1 got corrupted
    with pytest.raises(StoreCorruptError, match="checksum"):
        ActivationStore(out).load(1, "base")
    resumed = capture(pair, streams, [1], "all", out, batch_size=2, shard_tokens=20, show_progress=False)
    assert resumed.complete and resumed.n_shards == n
    assert torch.equal(resumed.load(1, "ft"), full.load(1, "ft"))
    # shard 0 was kept, not redone
    assert json.loads((out / "index.json").read_text())["shards"][0]["sha256"] == idx["shards"][0]["sha256"]


def test_bad_inputs(pair, tmp_path, tiny_qwen2):
    streams = streams_from_answers(pair.base.tokenizer, ROWS)
    with pytest.raises(LayerIndexError, match="out of range"):
        capture(pair, streams, [0, 99], "all", tmp_path / "x", show_progress=False)
    assert not (tmp_path / "x").exists()
    store = capture(pair, streams, [0], "all", tmp_path / "ok", show_progress=False)
    with pytest.raises(StoreMismatchError, match="captured with base model"):
        store.check_model(str(tiny_qwen2))
    # resuming into a store of another pair is refused and leaves it intact
    other = CheckpointPair(pair.base, pair.base)
    before = (tmp_path / "ok" / "index.json").read_text()
    with pytest.raises(StoreMismatchError, match="different models"):
        capture(other, streams, [0], "all", tmp_path / "ok", show_progress=False)
    assert (tmp_path / "ok" / "index.json").read_text() == before


# ---- background shard writer ---------------------------------------------------------------
def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "store-writer"]


def _shards(root) -> list[tuple]:
    """(file, n_tokens, streams, sha256) of every listed shard: equal lists = identical bytes."""
    idx = json.loads((root / "index.json").read_text())
    return [(s["file"], s["n_tokens"], s["streams"], s["sha256"]) for s in idx["shards"]]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_background_writer_gives_the_same_store_as_writing_inline(pair, tmp_path, monkeypatch, dtype):
    tok = pair.base.tokenizer
    # prompt-only streams at the end keep no answer token: progress without a shard
    streams = streams_from_answers(tok, ROWS * 2) + streams_from_prompts(tok, ["I want", "0 1 2"])
    kw = dict(batch_size=2, shard_tokens=12, dtype=dtype, show_progress=False)
    inline = capture(pair, streams, [0, 2], "answer", tmp_path / "inline", write_ahead=0, **kw)
    assert not _writer_threads()  # write_ahead=0 starts no thread
    real_save = store_mod.save_file

    def slow_save(*a, **k):  # the forwards run ahead of the writer: capture must wait for it
        time.sleep(0.05)
        return real_save(*a, **k)

    monkeypatch.setattr(store_mod, "save_file", slow_save)
    bg = capture(pair, streams, [0, 2], "answer", tmp_path / "bg", write_ahead=1, **kw)
    assert not _writer_threads()
    assert len(_shards(tmp_path / "bg")) >= 4
    assert _shards(tmp_path / "bg") == _shards(tmp_path / "inline")  # same boundaries, same bytes
    assert bg.index == inline.index and bg.complete and bg.index["streams_done"] == len(streams)
    # and the values are those of the reference forward, rounded to the store dtype
    ref = []
    for st in streams:
        hs = _hf_hidden(pair.finetuned.model, st)[2 + 1][0]
        ref.append(hs[position_mask(st, "answer", tok.bos_token_id)])
    want = torch.cat(ref).to(getattr(torch, dtype)).float()
    rtol = 1e-5 if dtype == "float32" else 2**-8
    torch.testing.assert_close(bg.load(2, "ft"), want, atol=1e-5, rtol=rtol)


def test_write_error_in_writer_thread_surfaces_and_store_resumes(pair, tmp_path, monkeypatch):
    streams = streams_from_answers(pair.base.tokenizer, ROWS * 3)
    kw = dict(batch_size=2, shard_tokens=20, show_progress=False)
    full = capture(pair, streams, [1], "all", tmp_path / "full", **kw)
    calls = []

    def failing_save(tensors, path, *a, **k):
        calls.append(threading.current_thread().name)
        if len(calls) == 2:
            time.sleep(0.3)  # the next shard is queued meanwhile: it must not be written
            Path(path).write_bytes(b"partial")  # the disk filled up mid-file
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(tensors, path, *a, **k)

    real_save = store_mod.save_file
    monkeypatch.setattr(store_mod, "save_file", failing_save)
    out = tmp_path / "s"
    match = r"shard_00001\.safetensors.*No space left.*the same --out to resume"
    with pytest.raises(StoreWriteError, match=match):
        capture(pair, streams, [1], "all", out, **kw)
    assert calls[:2] == ["store-writer"] * 2  # it really was written in the background
    assert not _writer_threads()
    assert [s[0] for s in _shards(out)] == ["shard_00000.safetensors"]
    assert _shards(out)[0] == _shards(tmp_path / "full")[0]
    assert not (out / "shard_00001.safetensors").exists() and not list(out.glob("*.tmp"))
    monkeypatch.undo()
    resumed = capture(pair, streams, [1], "all", out, **kw)
    assert resumed.complete and _shards(out) == _shards(tmp_path / "full")
    assert torch.equal(resumed.load(1, "ft"), full.load(1, "ft"))
    assert not _writer_threads()


def test_interrupt_in_main_loop_ends_writer_and_lists_only_written_shards(pair, tmp_path, monkeypatch):
    streams = streams_from_answers(pair.base.tokenizer, ROWS * 3)
    kw = dict(batch_size=2, shard_tokens=20, show_progress=False)
    full = capture(pair, streams, [1], "all", tmp_path / "full", **kw)
    real_save, real_trace = store_mod.save_file, capture_mod.trace_blocks
    traces = []

    def slow_save(*a, **k):  # shards pile up in the queue while the forwards go on
        time.sleep(0.3)
        return real_save(*a, **k)

    def interrupted_trace(*a, **k):
        traces.append(1)
        if len(traces) == 9:  # after 4 batches (2 models each): 2 shards are pending
            raise KeyboardInterrupt
        return real_trace(*a, **k)

    monkeypatch.setattr(store_mod, "save_file", slow_save)
    monkeypatch.setattr(capture_mod, "trace_blocks", interrupted_trace)
    out = tmp_path / "s"
    with pytest.raises(KeyboardInterrupt):
        capture(pair, streams, [1], "all", out, **kw)
    assert not _writer_threads()
    listed = _shards(out)
    assert 1 <= len(listed) < len(_shards(tmp_path / "full"))
    for file, _, _, sha in listed:  # every listed shard is on disk and complete
        assert sha256_file(out / file) == sha
    assert listed == _shards(tmp_path / "full")[: len(listed)]
    monkeypatch.undo()
    resumed = capture(pair, streams, [1], "all", out, **kw)
    assert resumed.complete and _shards(out) == _shards(tmp_path / "full")
    assert torch.equal(resumed.load(1, "base"), full.load(1, "base"))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda_capture_async_copies_match_inline_and_cpu(tiny_llama, tmp_path, dtype):
    """Pinned non-blocking copies + event wait in the writer thread: no torn or stale rows."""
    cpu = load_model(tiny_llama, device="cpu")
    gpu = load_model(tiny_llama, device="cuda")
    streams = streams_from_answers(cpu.tokenizer, ROWS * 8)
    kw = dict(batch_size=4, shard_tokens=64, dtype=dtype, show_progress=False)
    on_gpu, on_cpu = CheckpointPair(gpu, gpu), CheckpointPair(cpu, cpu)
    a = capture(on_gpu, streams, [0, 3], "all", tmp_path / "bg", write_ahead=2, **kw)
    capture(on_gpu, streams, [0, 3], "all", tmp_path / "inline", write_ahead=0, **kw)
    c = capture(on_cpu, streams, [0, 3], "all", tmp_path / "cpu", **kw)
    assert _shards(tmp_path / "bg") == _shards(tmp_path / "inline")
    tol = 1e-4 if dtype == "float32" else 2e-2
    torch.testing.assert_close(a.load(3, "ft"), c.load(3, "ft"), atol=tol, rtol=tol)
    assert torch.equal(a.token_info()["pos"], c.token_info()["pos"])


# ------------------------------------------------------------------ persona-diff capture --config / --set


def test_capture_settings_defaults_then_file_then_set_then_options(tmp_path):
    from persona_diff.commands.capture import CaptureConfig, load_capture_config
    from persona_diff.errors import ConfigError

    none = dict.fromkeys(("layers", "positions", "batch_size", "max_streams"))
    assert load_capture_config(None, [], none) == CaptureConfig()
    f = tmp_path / "capture.yaml"
    f.write_text("layers: [1, 2]\nbatch_size: 2\nmax_streams: 3\n")
    cfg = load_capture_config(f, ["batch_size=4", "positions=all"], {**none, "layers": "-1"})
    assert (cfg.layers, cfg.batch_size, cfg.positions, cfg.max_streams) == ([-1], 4, "all", 3)
    with pytest.raises(ConfigError, match="unknown key.*layer;.*valid keys are: batch_size, dtype, early_stop"):
        load_capture_config(None, ["layer=3"], none)


def test_capture_cli_reads_config_and_set(tiny_llama, tmp_path):
    from persona_diff.cli import main

    toks = tmp_path / "answers.jsonl"
    toks.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    f = tmp_path / "capture.yaml"
    f.write_text("layers: [1]\nmax_streams: 2\npositions: all\n")
    main(
        [
            "capture",
            str(tiny_llama),
            str(tiny_llama),
            "--tokens",
            str(toks),
            "--out",
            str(tmp_path / "a"),
            "--config",
            str(f),
            "--set",
            "dtype=bfloat16",
        ]
    )
    st = ActivationStore(tmp_path / "a")
    assert st.layers == [1] and st.index["dtype"] == "bfloat16" and len(st.streams()) == 2
    # the old --pair spelling still works; --store-dtype is the stored dtype, --dtype the weights'
    main(
        [
            "capture",
            "--pair",
            str(tiny_llama),
            str(tiny_llama),
            "--tokens",
            str(toks),
            "--out",
            str(tmp_path / "b"),
            "--config",
            str(f),
            "--set",
            "layers=[2]",
            "--layers",
            "3",
            "--max-streams",
            "1",
            "--store-dtype",
            "float16",
            "--dtype",
            "float32",
        ]
    )
    st = ActivationStore(tmp_path / "b")
    assert st.layers == [3] and len(st.streams()) == 1 and st.index["dtype"] == "float16"
