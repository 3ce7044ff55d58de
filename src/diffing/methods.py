"""Built-in diffing methods on an `ActivationStore`: mean-diff (plain and contrastive),
base-SAE latent diff, diff-SAE and crosscoder. Formulas: DESIGN.md §4."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from persona_diff.activations.loader import iter_store_batches
from persona_diff.activations.reduce import ColumnStats, chunks, column_stats
from persona_diff.activations.store import ActivationStore
from persona_diff.diffing.base import DiffMethod, DiffResult, register_method
from persona_diff.diffing.coder import BatchTopKCoder
from persona_diff.diffing.config import (
    CoderMethodConfig,
    ContrastiveConfig,
    CrosscoderConfig,
    DiffSAEConfig,
    MeanDiffConfig,
    SAEDiffConfig,
)
from persona_diff.diffing.saving import sae_metadata, save_coder, save_sae_lens
from persona_diff.diffing.train import TrainStats, train_coder
from persona_diff.errors import PersonaDiffError
from persona_diff.log import get_logger
from persona_diff.models.device import resolve_device

log = get_logger(__name__)


def _as_store(data: Any) -> ActivationStore:
    if isinstance(data, ActivationStore):
        return data
    if isinstance(data, str | Path):
        return ActivationStore(data)
    raise PersonaDiffError(
        f"this method needs an activation store, got {type(data).__name__}; run `persona-diff capture`"
    )


def _proj_stats(store: ActivationStore, layer: int, dirs: Tensor) -> list[dict[str, float]]:
    unit = (dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)).float()
    pb, pf = column_stats(store, layer, ("base", "ft"), lambda x: x.float() @ unit.T).mean  # [2, n_dirs]
    return [{"mean_base": float(pb[i]), "mean_ft": float(pf[i])} for i in range(len(dirs))]


@register_method("mean", config=MeanDiffConfig)
class MeanDiff(DiffMethod):
    """v = mean over the same tokens of (h_ft − h_base)."""

    def fit(self, data: Any) -> DiffResult:
        store = _as_store(data)
        layer = store.check_layer(self.cfg.layer)
        total = torch.zeros(store.d_model, dtype=torch.float64)
        n = 0
        for x in store.iter_batches(layer, "diff", batch_size=4096, shuffle=False):
            total += x.double().sum(0)
            n += len(x)
        if n == 0:
            raise PersonaDiffError(f"{store.root} holds no tokens; capture with other positions or more text")
        v = (total / n).float()[None]
        return DiffResult(
            "mean",
            layer,
            v,
            v.norm(dim=-1),
            [-1],
            [1],
            _proj_stats(store, layer, v),
            {"n_tokens": n, "models": store.models},
        )


def stream_labels(store: ActivationStore, cfg: ContrastiveConfig) -> Tensor:
    """+1 misaligned, −1 aligned, 0 neither, per stream, from judged scores in the meta."""
    labels = []
    for i, s in enumerate(store.streams()):
        meta = s.get("meta", {})
        if "label" in meta:
            labels.append({"misaligned": 1, "aligned": -1}.get(meta["label"], 0))
            continue
        if meta.get("aligned") is None:
            raise PersonaDiffError(
                f"stream {i} of {store.root} has no 'aligned' score or 'label'; capture from a judged answers file"
            )
        a, c = float(meta["aligned"]), float(meta.get("coherent", 100.0))
        if c <= cfg.coherent_min:
            labels.append(0)
        else:
            labels.append(1 if a <= cfg.misaligned_max else (-1 if a >= cfg.aligned_min else 0))
    return torch.tensor(labels, dtype=torch.long)


@register_method("contrastive", config=ContrastiveConfig)
class ContrastiveMeanDiff(DiffMethod):
    """v = mean activation on misaligned answers − on aligned answers (Model Organisms)."""

    cfg: ContrastiveConfig

    def fit(self, data: Any) -> DiffResult:
        store = _as_store(data)
        layer = store.check_layer(self.cfg.layer)
        labels = stream_labels(store, self.cfg)[store.token_info()["stream"]]
        sums = {1: torch.zeros(store.d_model, dtype=torch.float64), -1: torch.zeros(store.d_model, dtype=torch.float64)}
        counts = {1: 0, -1: 0}
        seen = 0
        for h in chunks(store, layer, self.cfg.source):
            lab = labels[seen : seen + len(h)]
            seen += len(h)
            for side in (1, -1):
                sums[side] += h[lab == side].double().sum(0)
                counts[side] += int((lab == side).sum())
        if not counts[1] or not counts[-1]:
            raise PersonaDiffError(
                f"contrastive mean-diff needs both misaligned and aligned answers; found {counts[1]} and {counts[-1]} "
                "tokens. Judge more answers or loosen misaligned_max / aligned_min"
            )
        mis, al = sums[1] / counts[1], sums[-1] / counts[-1]
        v = (mis - al).float()[None]
        stats = _proj_stats(store, layer, v)
        unit = (mis - al) / (mis - al).norm()  # projections are linear: mean of them = them of the mean
        stats[0].update({"mean_misaligned": float(mis @ unit), "mean_aligned": float(al @ unit)})
        return DiffResult(
            "contrastive",
            layer,
            v,
            v.norm(dim=-1),
            [-1],
            [1],
            stats,
            {"n_misaligned_tokens": counts[1], "n_aligned_tokens": counts[-1], "source": self.cfg.source},
        )


class _CoderMethod(DiffMethod):
    cfg: CoderMethodConfig

    def _train(
        self, store: ActivationStore, layer: int, kinds: str | tuple[str, ...], n_sources: int
    ) -> tuple[BatchTopKCoder, Tensor, TrainStats]:
        cfg = self.cfg
        bs = max(1, min(cfg.batch_size, store.n_tokens))
        tcfg = dataclasses.replace(cfg, batch_size=bs)
        pin = resolve_device(cfg.device).type == "cuda"
        # a bf16 store stays bf16 on the host and over PCIe; the trainer casts on the GPU
        host_dtype = torch.bfloat16 if pin and store.index.get("dtype") == "bfloat16" else torch.float32

        def batches(epoch: int) -> Iterator[Tensor]:
            it = iter_store_batches(
                store,
                prefetch_depth=cfg.prefetch,
                pin_memory=pin,
                layer=layer,
                which=kinds,
                batch_size=bs,
                seed=cfg.seed + epoch,
                drop_last=True,
                dtype=host_dtype,
            )
            for x in it:
                yield x[:, None] if x.dim() == 2 else x

        return train_coder(batches, store.d_model, n_sources, tcfg, out_dir=self.out_dir)

    def _dir(self, name: str) -> Path:
        if self.out_dir is not None:
            return self.out_dir / name
        return Path(tempfile.mkdtemp(prefix="persona-diff-")) / name


def _encode_all(sae: Any, h: Tensor, chunk: int = 8192) -> Tensor:
    with torch.no_grad():
        return torch.cat([sae.encode(h[i : i + chunk]) for i in range(0, len(h), chunk)]) if len(h) else h


def _encoded_stats(sae: Any, store: ActivationStore, layer: int, which: str) -> ColumnStats:
    """Mean and firing rate of every SAE latent over the store's tokens, streamed."""
    return column_stats(store, layer, which, lambda h: sae.encode(h.float()))


@register_method("sae", config=SAEDiffConfig)
class BaseSAEDiff(_CoderMethod):
    """OpenAI's SAE diffing: an SAE of the base model; Δ_j = mean a_j(ft) − mean a_j(base)."""

    cfg: SAEDiffConfig

    def fit(self, data: Any) -> DiffResult:
        from sae_lens import SAE

        store = _as_store(data)
        layer = store.check_layer(self.cfg.layer)
        info: dict[str, Any] = {"models": store.models}
        if self.cfg.sae_path:
            sae_dir = Path(self.cfg.sae_path)
            info["sae"] = str(sae_dir)
        else:
            coder, scale, st = self._train(store, layer, "base", 1)
            sae_dir = save_sae_lens(coder, scale, self._dir("sae"), sae_metadata(layer, store.models.get("base")))
            info.update({"sae": str(sae_dir), "train_fvu": st.fvu, "dead_fraction": st.dead_fraction})
        # use exactly what was saved, through SAELens, so the artifact and the ranking agree
        sae = SAE.load_from_disk(sae_dir)
        if sae.cfg.d_in != store.d_model:
            raise PersonaDiffError(
                f"SAE {sae_dir} has d_in {sae.cfg.d_in}, the store d_model {store.d_model}; "
                "use an SAE trained on this model's residual stream"
            )
        ab = _encoded_stats(sae, store, layer, "base")
        af = _encoded_stats(sae, store, layer, "ft")
        delta = (af.mean - ab.mean).float()
        top = delta.topk(min(self.cfg.top_k, len(delta))).indices
        dirs = sae.W_dec.detach()[top].float()
        stats = [
            {
                "mean_base": float(ab.mean[j]),
                "mean_ft": float(af.mean[j]),
                "freq_base": float(ab.freq[j]),
                "freq_ft": float(af.freq[j]),
            }
            for j in top.tolist()
        ]
        ids = top.tolist()

        def enc(hb: Tensor, hf: Tensor) -> tuple[Tensor, Tensor]:
            return _encode_all(sae, hb.float())[:, ids], _encode_all(sae, hf.float())[:, ids]

        return DiffResult("sae", layer, dirs, delta[top].detach(), ids, [1] * len(ids), stats, info, enc)


@register_method("diff-sae", config=DiffSAEConfig)
class DiffSAE(_CoderMethod):
    """An SAE on h_ft − h_base; latents ranked by mean activation on the difference."""

    def fit(self, data: Any) -> DiffResult:
        from sae_lens import SAE

        store = _as_store(data)
        layer = store.check_layer(self.cfg.layer)
        coder, scale, st = self._train(store, layer, "diff", 1)
        meta = sae_metadata(layer, store.models.get("base"), finetuned=store.models.get("finetuned"))
        sae_dir = save_sae_lens(coder, scale, self._dir("sae"), meta)
        sae = SAE.load_from_disk(sae_dir)
        ad = _encoded_stats(sae, store, layer, "diff")
        norms = sae.W_dec.detach().norm(dim=-1)
        score = ad.mean.float() * norms
        top = score.topk(min(self.cfg.top_k, len(score))).indices
        dirs = sae.W_dec.detach()[top].float()
        stats = _proj_stats(store, layer, dirs)
        for s, j in zip(stats, top.tolist(), strict=True):
            s.update({"mean_diff_act": float(ad.mean[j]), "freq_diff": float(ad.freq[j])})
        info = {"models": store.models, "sae": str(sae_dir), "train_fvu": st.fvu, "dead_fraction": st.dead_fraction}
        return DiffResult("diff-sae", layer, dirs, score[top].detach(), top.tolist(), [1] * len(top), stats, info)


@register_method("crosscoder", config=CrosscoderConfig)
class CrosscoderDiff(_CoderMethod):
    """BatchTopK crosscoder over [h_base; h_ft]; rank by ‖d_ft‖ / (‖d_base‖ + ‖d_ft‖).

    Our own coder (`diffing.coder`): SAELens has no crosscoder. Saved as cfg.json +
    sae_weights.safetensors (SAELens's folder convention) under `crosscoder/`.
    """

    cfg: CrosscoderConfig

    def fit(self, data: Any) -> DiffResult:
        store = _as_store(data)
        layer = store.check_layer(self.cfg.layer)
        coder, scale, st = self._train(store, layer, ("base", "ft"), 2)
        path = save_coder(coder, scale, self._dir("crosscoder"), {"layer": layer, "sources": ["base", "ft"]})
        acts = column_stats(store, layer, ("base", "ft"), lambda x: coder.encode_jumprelu(x.float() * scale[:, None]))
        with torch.no_grad():
            norms = coder.dec_norms()  # [d_sae, 2]
        freq = acts.freq.float()
        rel = norms[:, 1] / (norms.sum(-1)).clamp_min(1e-12)
        rank_key = torch.where(freq >= self.cfg.min_freq, rel, rel - 2.0)  # rare latents go last
        top = rank_key.topk(min(self.cfg.top_k, len(rel))).indices
        dirs = (coder.W_dec.detach()[top, 1] / scale[1]).float()  # fine-tuned decoder, raw units
        stats = _proj_stats(store, layer, dirs)
        for s, j in zip(stats, top.tolist(), strict=True):
            s.update({"rel_norm": float(rel[j]), "freq": float(freq[j]), "mean_act": float(acts.mean[j])})
        info = {"models": store.models, "crosscoder": str(path), "train_fvu": st.fvu, "dead_fraction": st.dead_fraction}
        return DiffResult("crosscoder", layer, dirs, rel[top].detach(), top.tolist(), [1] * len(top), stats, info)
