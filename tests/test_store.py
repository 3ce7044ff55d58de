"""Activation store: index, checksums, resume bookkeeping, shuffled reader, writer thread."""

from __future__ import annotations

import importlib
import json
import threading
import time
from pathlib import Path

import pytest
import torch

from persona_diff.activations.store import (
    ActivationStore,
    StoreCorruptError,
    StoreError,
    StoreMismatchError,
    StoreWriteError,
    StoreWriter,
    sha256_file,
)
from persona_diff.models import LAYER_CONVENTION

pytestmark = pytest.mark.usefixtures("one_thread")

store_mod = importlib.import_module("persona_diff.activations.store")

HEADER = {
    "models": {"base": "a", "finetuned": "b"},
    "model_type": "llama",
    "d_model": 6,
    "n_layers": 4,
    "layers": [2],
    "convention": LAYER_CONVENTION,
    "dtype": "float32",
    "positions": "all",
    "n_streams": 5,
    "streams_fingerprint": "f",
}


def _write(root, n_shards=5, per=7):
    w = StoreWriter.open(root, HEADER)
    w.write_streams([{"input_ids": [1, 2], "prompt_len": 1, "meta": {}}] * n_shards)
    data = torch.arange(n_shards * per * 6, dtype=torch.float32).view(-1, 6)
    for i in range(n_shards):
        sl = slice(i * per, (i + 1) * per)
        w.add_shard(
            {
                "base.2": data[sl],
                "ft.2": 2 * data[sl],
                "token_id": torch.arange(per),
                "stream": torch.full((per,), i),
                "pos": torch.arange(per),
            },
            (i, i + 1),
        )
    w.finish()
    return data


def test_index_fields_and_checksums(tmp_path):
    data = _write(tmp_path)
    idx = json.loads((tmp_path / "index.json").read_text())
    assert idx["n_tokens"] == len(data) and idx["complete"] and idx["convention"] == LAYER_CONVENTION
    for sh in idx["shards"]:
        assert sha256_file(tmp_path / sh["file"]) == sh["sha256"]
    st = ActivationStore(tmp_path)
    assert torch.equal(st.load(2, "base"), data)
    assert torch.equal(st.load(2, "diff"), data)
    assert not list(tmp_path.glob("*.tmp"))


def test_shuffled_batches_cover_every_token_once(tmp_path):
    data = _write(tmp_path)
    st = ActivationStore(tmp_path)
    batches = list(st.iter_batches(2, "base", batch_size=4, seed=1, buffer_shards=2))
    got = torch.cat(batches)
    assert len(got) == len(data)
    assert not torch.equal(got, data)  # shuffled
    assert torch.equal(got[got[:, 0].argsort()], data)
    pairs = torch.cat(list(st.iter_batches(2, ("base", "ft"), batch_size=8, seed=2)))
    assert pairs.shape == (len(data), 2, 6) and torch.equal(pairs[:, 1], 2 * pairs[:, 0])
    assert all(len(b) == 4 for b in st.iter_batches(2, "base", batch_size=4, drop_last=True))


def test_truncated_shard_found_by_checksum(tmp_path):
    _write(tmp_path)
    p = tmp_path / "shard_00003.safetensors"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(StoreCorruptError, match="shard_00003.*checksum"):
        ActivationStore(tmp_path).load(2)
    # resuming the writer drops the bad shard and everything after it
    w = StoreWriter.open(tmp_path, HEADER)
    assert len(w.index["shards"]) == 3 and w.streams_done == 3 and not w.index["complete"]


def test_mismatches(tmp_path):
    _write(tmp_path)
    with pytest.raises(StoreMismatchError, match="layers"):
        StoreWriter.open(tmp_path, {**HEADER, "layers": [1]})
    st = ActivationStore(tmp_path)
    with pytest.raises(StoreMismatchError, match="layer 3 was not captured"):
        st.load(3)
    with pytest.raises(StoreMismatchError, match="d_model"):
        st.check_arch("llama", 576)
    with pytest.raises(StoreError, match="no index.json"):
        ActivationStore(tmp_path / "nope")


def _shard_tensors(i: int, per: int = 7) -> dict[str, torch.Tensor]:
    x = torch.full((per, 6), float(i))
    ids, pos, stream = torch.arange(per), torch.arange(per), torch.full((per,), i)
    return {"base.2": x, "ft.2": 2 * x, "token_id": ids, "stream": stream, "pos": pos}


def test_writer_thread_is_bounded_in_order_and_finish_waits(tmp_path, monkeypatch):
    """write_ahead=1: one shard written, one queued, the third add_shard blocks; finish waits."""
    real_save, gate, saving = store_mod.save_file, threading.Event(), []

    def gated_save(tensors, path, *a, **k):
        saving.append(path)
        assert threading.current_thread().name == "store-writer"
        gate.wait(10)
        time.sleep(0.1)
        return real_save(tensors, path, *a, **k)

    monkeypatch.setattr(store_mod, "save_file", gated_save)
    w = StoreWriter.open(tmp_path, HEADER, write_ahead=1)
    w.add_shard(_shard_tensors(0), (0, 1))
    w.add_shard(_shard_tensors(1), (1, 2))
    third = threading.Thread(target=w.add_shard, args=(_shard_tensors(2), (2, 3)))
    third.start()
    third.join(0.5)
    assert third.is_alive()  # blocked: at most one shard waits besides the one being written
    assert len(saving) == 1 and json.loads((tmp_path / "index.json").read_text())["shards"] == []
    gate.set()
    third.join(10)
    assert not third.is_alive()
    w.finish()  # returns only once every shard is on disk and listed
    assert not [t for t in threading.enumerate() if t.name == "store-writer"]
    idx = json.loads((tmp_path / "index.json").read_text())
    assert idx["complete"] and [s["streams"] for s in idx["shards"]] == [[0, 1], [1, 2], [2, 3]]
    st = ActivationStore(tmp_path)
    assert torch.equal(st.load(2)[:, 0], torch.arange(3.0).repeat_interleave(7))


def test_writer_error_is_reraised_by_finish_and_later_shards_are_dropped(tmp_path, monkeypatch):
    real_save, calls = store_mod.save_file, []
    queued = threading.Event()  # the 2nd shard fails only once the 3rd is queued behind it

    def failing_save(tensors, path, *a, **k):  # the 2nd shard fails
        calls.append(path)
        if len(calls) == 2:
            assert queued.wait(timeout=30)
            Path(path).write_bytes(b"partial")  # a half-written temporary file
            raise PermissionError(13, "Permission denied", path)
        return real_save(tensors, path, *a, **k)

    monkeypatch.setattr(store_mod, "save_file", failing_save)
    w = StoreWriter.open(tmp_path, HEADER, write_ahead=2)
    w.add_shard(_shard_tensors(0), (0, 1))
    w.add_shard(_shard_tensors(1), (1, 2))
    w.add_shard(_shard_tensors(2), (2, 3))
    queued.set()
    match = r"shard_00001.*Permission denied.*still lists the 1 complete"
    with pytest.raises(StoreWriteError, match=match):
        w.finish()
    assert not [t for t in threading.enumerate() if t.name == "store-writer"]
    idx = json.loads((tmp_path / "index.json").read_text())
    assert not idx["complete"] and [s["file"] for s in idx["shards"]] == ["shard_00000.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json", "shard_00000.safetensors"]
    assert len(calls) == 2  # the shard queued after the failure was not attempted
    assert StoreWriter.open(tmp_path, HEADER).streams_done == 1  # resumes after shard 0


def test_batches_read_only_the_asked_tensors_and_keep_bf16(tmp_path, monkeypatch):
    data = _write(tmp_path)
    store = ActivationStore(tmp_path)
    got = torch.cat(list(store.iter_batches(2, "ft", batch_size=10, shuffle=False, dtype=torch.bfloat16)))
    assert got.dtype == torch.bfloat16 and torch.equal(got, (2 * data).to(torch.bfloat16))
    import persona_diff.activations.store as st

    monkeypatch.setattr(st, "load_file", lambda *a, **k: (_ for _ in ()).throw(AssertionError("whole shard read")))
    seen = set()
    real = ActivationStore._shard

    def spy(self, i, keys=None):
        out = real(self, i, keys)
        seen.update(out)
        return out

    monkeypatch.setattr(ActivationStore, "_shard", spy)
    diff = torch.cat(list(store.iter_batches(2, "diff", batch_size=10, shuffle=False)))
    torch.testing.assert_close(diff, data)
    assert seen == {"base.2", "ft.2"}
