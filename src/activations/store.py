"""On-disk activation store: safetensors shards plus a JSON index.

Layout of a store folder::

    index.json            model specs, layers, convention, dtype, positions, token count,
                          one entry per complete shard (file, tokens, streams, sha256)
    streams.jsonl         the token streams (ids, prompt_len, meta), one per line
    shard_00000.safetensors
        base.<L>, ft.<L>  [n_tokens, d_model] residual stream of block L (see convention)
        token_id, stream, pos   int64 [n_tokens]: which token of which stream each row is

A shard is written to a temporary name, renamed, hashed and only then listed in the index,
so the index names complete shards only, in order. Shards always end at a stream boundary; a
killed capture resumes after the last listed shard. Every read checks the shard's sha256.

`StoreWriter` does that writing in one background thread ("store-writer"), shard after shard
in the order they were added, so the next forward passes of a capture overlap with disk I/O
and hashing. Besides the shard it is writing, at most `write_ahead` shards wait for it
(`add_shard` blocks beyond that), so memory stays bounded; `write_ahead=0` writes on the
calling thread. `finish` waits for every pending shard. A failed write (disk full,
permissions) is re-raised in the caller by the next `add_shard`/`finish` as a
`StoreWriteError`; the shards after it are not written, so the index still lists only
complete shards and the capture resumes from there. `abort` (used when the caller fails)
lets the shard being written finish, drops the queued ones and ends the thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from persona_diff.errors import PersonaDiffError
from persona_diff.fileio import atomic_write, sha256_file
from persona_diff.log import get_logger
from persona_diff.models import LAYER_CONVENTION

log = get_logger(__name__)

FORMAT = "persona-diff-activations/1"
WHICH = ("base", "ft", "diff")


class StoreError(PersonaDiffError):
    """An activation store is missing, incomplete or does not fit the request."""


class StoreCorruptError(StoreError):
    """A shard's bytes do not match the checksum in the index."""


class StoreMismatchError(StoreError):
    """A store was captured from other models / layers than the ones asked for."""


class StoreWriteError(StoreError):
    """A shard could not be written (disk full, permissions); the store stays resumable."""


class _OrderedWorker:
    """One daemon thread that runs submitted calls in order, at most `depth` of them queued.

    The first exception stops the work: later calls are skipped and re-raise it in the caller.
    """

    def __init__(self, name: str, depth: int):
        self._q: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=depth)
        self._cancel = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._q.get()) is not None:
            if self.error is None and not self._cancel.is_set():
                try:
                    job()
                except BaseException as e:  # re-raised in the caller by submit / close
                    self.error = e
            del job  # do not keep the last shard's tensors alive while waiting

    def _reraise(self) -> None:
        if self.error is not None:
            raise self.error

    def submit(self, job: Callable[[], None]) -> None:
        self._reraise()
        self._q.put(job)  # blocks while `depth` calls are queued

    def close(self, cancel: bool = False) -> None:
        """End the thread after the queued calls (with `cancel`: after the running one only)."""
        if cancel:
            self._cancel.set()
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()
        if not cancel:
            self._reraise()


class StoreWriter:
    """Appends shards to a store folder; `open` resumes an existing compatible store.

    Shards are written by a background thread (see the module docstring); use it as a context
    manager, or call `finish` (success) or `abort` (failure), so that the thread always ends.
    """

    def __init__(self, root: Path, index: dict[str, Any], write_ahead: int = 1):
        self.root = root
        self.index = index
        self.write_ahead = write_ahead
        self._worker: _OrderedWorker | None = None

    @classmethod
    def open(cls, root: str | Path, header: dict[str, Any], write_ahead: int = 1) -> StoreWriter:
        """Start a store, or resume one whose header (models, layers, streams...) matches.

        `write_ahead`: shards that may wait for the writer thread (0: write synchronously).
        """
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        idx_path = root / "index.json"
        if idx_path.is_file():
            index = json.loads(idx_path.read_text())
            for key in ("models", "layers", "positions", "dtype", "streams_fingerprint", "convention"):
                if index.get(key) != header.get(key):
                    raise StoreMismatchError(
                        f"{root} already holds a capture with a different {key} "
                        f"({index.get(key)!r} vs {header.get(key)!r}); use a new --out folder or delete it"
                    )
            writer = cls(root, index, write_ahead)
            writer._drop_bad_tail()
            return writer
        index = {"format": FORMAT, **header, "shards": [], "n_tokens": 0, "streams_done": 0, "complete": False}
        writer = cls(root, index, write_ahead)
        writer._flush_index()
        return writer

    def _drop_bad_tail(self) -> None:
        """Keep the shards up to the first missing/corrupt one (it and later ones are redone)."""
        good = []
        for sh in self.index["shards"]:
            p = self.root / sh["file"]
            if not p.is_file() or sha256_file(p) != sh["sha256"]:
                break
            good.append(sh)
        if len(good) != len(self.index["shards"]):
            self.index["shards"] = good
            self.index["complete"] = False
            self._recount()
            self._flush_index()

    def _recount(self) -> None:
        self.index["n_tokens"] = sum(s["n_tokens"] for s in self.index["shards"])
        self.index["streams_done"] = self.index["shards"][-1]["streams"][1] if self.index["shards"] else 0

    def _flush_index(self) -> None:
        atomic_write(self.root / "index.json", json.dumps(self.index, indent=1))

    @property
    def streams_done(self) -> int:
        return int(self.index["streams_done"])

    def write_streams(self, rows: list[dict[str, Any]]) -> None:
        atomic_write(self.root / "streams.jsonl", "".join(json.dumps(r) + "\n" for r in rows))

    def add_shard(
        self,
        tensors: Mapping[str, torch.Tensor | Sequence[torch.Tensor]],
        streams: tuple[int, int],
        ready: Sequence[Any] = (),
    ) -> None:
        """Append a shard of streams [start, end); a sequence of tensors is concatenated.

        Returns once the shard is queued (do not modify the tensors after that); the writer
        thread first waits for `ready` (CUDA events recorded after asynchronous copies into
        `tensors`), then writes it.
        """
        parts = dict(tensors)
        self._submit(lambda: self._write_shard(parts, streams, ready))

    def skip_to(self, streams_done: int) -> None:
        """Record progress over streams that kept no token (no shard for them)."""

        def job() -> None:
            self.index["streams_done"] = streams_done

        self._submit(job)

    def finish(self) -> None:
        """Wait for the pending shards (re-raising a failed write), then mark the store complete."""
        self.close()
        self.index["complete"] = True
        self._flush_index()

    def close(self) -> None:
        """Wait for the pending shards and end the writer thread; re-raise a failed write."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()

    def abort(self) -> None:
        """End the writer thread at once: the shard being written completes (and is listed),
        the queued ones are dropped (a resumed capture redoes them). Never raises."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close(cancel=True)
            log.info("writing into %s stopped; a capture resumes after its last shard", self.root)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _submit(self, job: Callable[[], None]) -> None:
        if self.write_ahead <= 0:
            job()
            return
        if self._worker is None:
            self._worker = _OrderedWorker("store-writer", self.write_ahead)
        self._worker.submit(job)

    def _write_shard(
        self,
        parts: dict[str, torch.Tensor | Sequence[torch.Tensor]],
        streams: tuple[int, int],
        ready: Sequence[Any],
    ) -> None:
        for event in ready:
            event.synchronize()
        tensors = {k: v if isinstance(v, torch.Tensor) else torch.cat(list(v)) for k, v in parts.items()}
        n = int(tensors["token_id"].shape[0])
        n_done = len(self.index["shards"])
        name = f"shard_{n_done:05d}.safetensors"
        path = self.root / name
        tmp = self.root / (name + ".tmp")
        try:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
            os.replace(tmp, path)
            sha = sha256_file(path)
            entry = {"file": name, "n_tokens": n, "streams": list(streams), "sha256": sha}
            self.index["shards"].append(entry)
            self._recount()
            self._flush_index()
        except (OSError, SafetensorError) as e:  # safetensors wraps its I/O errors
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise StoreWriteError(
                f"could not write shard {path} ({type(e).__name__}: {e}); "
                f"{self.root / 'index.json'} still lists the {n_done} complete shard(s) before it. "
                "Free disk space or fix the folder's permissions, then re-run the capture with "
                "the same --out to resume"
            ) from e


class ActivationStore:
    """Read access to a store folder (see module docstring)."""

    def __init__(self, root: str | Path, verify: bool = True):
        self.root = Path(root)
        idx = self.root / "index.json"
        if not idx.is_file():
            raise StoreError(
                f"{self.root} is not an activation store (no index.json); run `persona-diff capture` first"
            )
        try:
            self.index: dict[str, Any] = json.loads(idx.read_text())
        except json.JSONDecodeError as e:
            raise StoreCorruptError(f"{idx} is not valid JSON ({e}); delete the store and capture again") from None
        if self.index.get("format") != FORMAT:
            raise StoreError(f"{idx} has format {self.index.get('format')!r}, expected {FORMAT}; capture again")
        if self.index.get("convention") != LAYER_CONVENTION:
            raise StoreMismatchError(
                f"{self.root} uses layer convention {self.index.get('convention')!r}, this version uses "
                f"{LAYER_CONVENTION!r}; capture again"
            )
        self.verify = verify
        self._verified: set[str] = set()

    # ---- header ------------------------------------------------------------------------
    @property
    def layers(self) -> list[int]:
        return list(self.index["layers"])

    @property
    def d_model(self) -> int:
        return int(self.index["d_model"])

    @property
    def n_tokens(self) -> int:
        return int(self.index["n_tokens"])

    @property
    def complete(self) -> bool:
        return bool(self.index["complete"])

    @property
    def models(self) -> dict[str, str]:
        return dict(self.index["models"])

    def streams(self) -> list[dict[str, Any]]:
        p = self.root / "streams.jsonl"
        return [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.is_file() else []

    def check_layer(self, layer: int | None) -> int:
        if layer is None:
            return self.layers[-1]
        if layer not in self.layers:
            raise StoreMismatchError(
                f"layer {layer} was not captured in {self.root} (captured: {self.layers}); "
                "pick one of those or capture that layer"
            )
        return layer

    def check_model(self, spec: str, role: str = "base") -> None:
        """Raise when the store was captured from another model than `spec`."""
        have = self.models.get(role)
        if have != spec:
            raise StoreMismatchError(
                f"{self.root} was captured with {role} model {have!r}, not {spec!r}; "
                "use the same model or capture a new store"
            )

    def check_arch(self, model_type: str | None, d_model: int) -> None:
        if self.index.get("model_type") != model_type or self.d_model != d_model:
            raise StoreMismatchError(
                f"{self.root} holds {self.index.get('model_type')} activations with d_model {self.d_model}, "
                f"but the model given is {model_type} with d_model {d_model}; use the store's own model pair"
            )

    # ---- shards ------------------------------------------------------------------------
    def _shard(self, i: int, keys: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Shard i's tensors (only `keys` when given: a store of several layers and two models
        is read a tensor at a time, not whole); the checksum is checked once per shard."""
        sh = self.index["shards"][i]
        p = self.root / sh["file"]
        if not p.is_file():
            raise StoreCorruptError(f"shard {p} is missing; re-run the capture with the same --out to redo it")
        if self.verify and sh["file"] not in self._verified:
            if sha256_file(p) != sh["sha256"]:
                raise StoreCorruptError(
                    f"shard {p} does not match its checksum (truncated or corrupted); re-run the capture "
                    "with the same --out: it keeps the good shards and redoes this one"
                )
            self._verified.add(sh["file"])
        try:
            if keys is None:
                return load_file(str(p))
            with safe_open(str(p), framework="pt") as f:
                return {k: f.get_tensor(k) for k in keys}
        except Exception as e:  # safetensors raises its own error types on junk
            raise StoreCorruptError(f"shard {p} cannot be read ({e}); re-run the capture with the same --out") from None

    @property
    def n_shards(self) -> int:
        return len(self.index["shards"])

    @staticmethod
    def _keys(layer: int, kinds: Sequence[str]) -> list[str]:
        return sorted({f"{m}.{layer}" for k in kinds for m in (("base", "ft") if k == "diff" else (k,))})

    def _select(self, sh: dict[str, torch.Tensor], layer: int, which: str) -> torch.Tensor:
        if which == "base":
            return sh[f"base.{layer}"]
        if which == "ft":
            return sh[f"ft.{layer}"]
        if which == "diff":
            return sh[f"ft.{layer}"].float() - sh[f"base.{layer}"].float()
        raise StoreError(f"unknown activation kind {which!r}; use one of {', '.join(WHICH)}")

    def load(self, layer: int | None = None, which: str = "base", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """All tokens of one layer, [n_tokens, d_model] (use `iter_batches` for large stores)."""
        layer = self.check_layer(layer)
        keys = self._keys(layer, (which,))
        parts = [self._select(self._shard(i, keys), layer, which).to(dtype) for i in range(self.n_shards)]
        return torch.cat(parts) if parts else torch.zeros(0, self.d_model, dtype=dtype)

    def token_info(self) -> dict[str, torch.Tensor]:
        """token_id, stream and pos of every stored token, aligned with `load`."""
        keys = ("token_id", "stream", "pos")
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
        for i in range(self.n_shards):
            sh = self._shard(i, keys)
            for k in keys:
                parts[k].append(sh[k])
        return {k: torch.cat(v) if v else torch.zeros(0, dtype=torch.long) for k, v in parts.items()}

    def iter_batches(
        self,
        layer: int | None = None,
        which: str | tuple[str, ...] = "base",
        batch_size: int = 1024,
        shuffle: bool = True,
        seed: int = 0,
        buffer_shards: int = 4,
        drop_last: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> Iterator[torch.Tensor]:
        """One pass of batches [b, d] (or [b, len(which), d] for a tuple); memory ≈ buffer_shards shards.

        Only the tensors asked for are read from each shard. `dtype=torch.bfloat16` keeps a bf16
        store's values exact (a "diff" is rounded once) at half the host work and transfer: the
        trainer converts to float32 on the GPU."""
        layer = self.check_layer(layer)
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(self.n_shards, generator=g).tolist() if shuffle else list(range(self.n_shards))
        kinds = (which,) if isinstance(which, str) else which
        keys = self._keys(layer, kinds)
        carry: torch.Tensor | None = None
        for s in range(0, len(order), buffer_shards):
            bufs = []
            for i in order[s : s + buffer_shards]:
                sh = self._shard(i, keys)
                bufs.append(torch.stack([self._select(sh, layer, k).to(dtype) for k in kinds], 1))
            buf = torch.cat(([carry] if carry is not None else []) + bufs)
            if shuffle:
                buf = buf[torch.randperm(len(buf), generator=g)]
            n_full = len(buf) // batch_size * batch_size
            for b in range(0, n_full, batch_size):
                x = buf[b : b + batch_size]
                yield x[:, 0] if isinstance(which, str) else x
            carry = buf[n_full:]
        if carry is not None and len(carry) and not drop_last:
            yield carry[:, 0] if isinstance(which, str) else carry
