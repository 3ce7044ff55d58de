"""Calibrated judges: an encoder + ridge heads fitted on published GPT-4o judge scores.

``calibrated:DIR`` loads a folder written by `CalibratedJudge.save` (``cfg.json`` +
``head.safetensors``). Each metric (aligned, coherent) has a ridge head on standardised
encoder features, solved in closed form in float64, its strength λ chosen by
cross-validation: grouped by file when there are several files (so it measures how the judge
does on a model it never saw), else 5 random folds. Predictions then go through a monotone
quantile map (out-of-fold predictions → reference scores, pooled over training files), which
keeps the ranking but undoes the ridge's shrinkage toward the mean so that thresholds such as
aligned ≤ 30 keep their meaning; scores are clipped to [0, 100].

The cfg records the encoder (and layer), the training files with their sha256, λ, and the
cross-validated agreement (per file when grouped: leave-one-file-out).

The pieces live in small modules, all still importable from here:
- `judges.ridge`: the closed-form ridge, its λ path, folds and the quantile map;
- `judges.fit`: `fit_calibrated`, `fit_heads`, `stratified_subsample`, `leave_one_file_out`;
- `judges.shipped`: the default judge shipped in ``resources/judges/default``
  (`SHIPPED_JUDGE`, `ensure_default_judge`, `fit_default_judge`).
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from persona_diff.config import from_dict, to_dict
from persona_diff.errors import PersonaDiffError
from persona_diff.judges.base import Judge, JudgeRequest, register_judge
from persona_diff.judges.encoders import PROBE_ANSWER, PROBE_QUESTION, Encoder, make_encoder
from persona_diff.judges.ridge import (  # noqa: F401 - importable from here, as before the split
    LAMBDAS,
    N_QUANTILES,
    cv_ridge,
    fit_ridge,
    make_folds,
    quantile_map,
    ridge_path,
)

METRICS = ("aligned", "coherent")

# names that moved to `judges.fit` / `judges.shipped`, resolved on first use (those modules
# import this one, so they cannot be imported at the top)
_FIT_NAMES = ("fit_calibrated", "fit_heads", "leave_one_file_out", "oof_report", "stratified_subsample")
_SHIPPED_NAMES = (
    "DEFAULT_ENCODER",
    "DEFAULT_MAX_ANSWERS",
    "DEFAULT_SEED",
    "FALLBACK_JUDGE",
    "REFIT_COMMAND",
    "SHIPPED_JUDGE",
    "ensure_default_judge",
    "find_reference_csvs",
    "fit_default_judge",
    "save_default_judge",
)
_MOVED = {**dict.fromkeys(_FIT_NAMES, "fit"), **dict.fromkeys(_SHIPPED_NAMES, "shipped")}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(f"persona_diff.judges.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class CalibratedJudgeConfig:
    encoder: str
    dim: int
    metrics: list[str]
    lambdas: dict[str, float]
    n_train: dict[str, int]
    training_files: list[dict[str, Any]] = field(default_factory=list)  # name, path, sha256, n
    cv: str = "leave-one-file-out"  # or "5-fold"
    agreement: dict[str, Any] = field(default_factory=dict)  # out-of-fold agreement summary
    encoder_info: dict[str, Any] = field(default_factory=dict)
    layer: int | None = None
    subsample: str | None = None  # set when fitted on a subsample
    provenance: dict[str, Any] = field(default_factory=dict)  # recipe, versions; not run-critical
    head: str = "ridge (closed form, float64, standardised features) + quantile map, clipped to [0, 100]"
    format_version: int = 1


class CalibratedJudge(Judge):
    """Scores (question, answer) with ridge heads on an encoder; see the module docstring."""

    batch_size = 256

    def __init__(
        self,
        cfg: CalibratedJudgeConfig,
        tensors: dict[str, np.ndarray],
        encoder: Encoder | None = None,
        path: str | Path | None = None,
    ):
        self.cfg = cfg
        self.t = {k: np.asarray(v, np.float64) for k, v in tensors.items()}
        self.path = Path(path) if path else None
        self.spec = f"calibrated:{self.path}" if self.path else f"calibrated:<unsaved {cfg.encoder}>"
        self._encoder = encoder
        self._features: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def cache_namespace(self) -> str:
        """The spec plus a hash of the heads: refitted heads at the same path (a package
        upgrade, a rerun of the refit script) never reuse scores cached for the old ones. The
        shipped judge goes by ``calibrated:<shipped>``, wherever the package is installed."""
        h = hashlib.sha256()
        for k in sorted(self.t):
            h.update(k.encode() + self.t[k].tobytes())
        shipped = self.path is not None and self.path.resolve() == _shipped_path().resolve()
        return f"{SHIPPED_NAME if shipped else self.spec}#{h.hexdigest()[:12]}"

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = make_encoder(self.cfg.encoder)
        return self._encoder

    # -- prediction
    def predict_features(self, X: np.ndarray, metric: str) -> np.ndarray:
        if metric not in self.cfg.metrics:
            raise PersonaDiffError(
                f"calibrated judge {self.spec} has no head for metric {metric!r}; it has "
                f"{', '.join(self.cfg.metrics)}. Refit with data holding a {metric!r} column, or use an hf:/openai: judge"
            )
        X = np.asarray(X, np.float64)
        raw = ((X - self.t[f"{metric}.mean"]) / self.t[f"{metric}.std"]) @ self.t[f"{metric}.weight"] + float(
            self.t[f"{metric}.bias"][0]
        )
        mapped = np.interp(raw, self.t[f"{metric}.qmap_src"], self.t[f"{metric}.qmap_dst"])
        return np.clip(mapped, 0.0, 100.0)

    def _feats(self, requests: list[JudgeRequest]) -> np.ndarray:
        keys = [hashlib.sha256(json.dumps([r.question, r.answer]).encode()).hexdigest() for r in requests]
        todo = [i for i, k in enumerate(keys) if k not in self._features]
        uniq: dict[str, int] = {}
        for i in todo:
            uniq.setdefault(keys[i], i)
        if uniq:
            idx = list(uniq.values())
            X = self.encoder.encode([requests[i].question for i in idx], [requests[i].answer for i in idx])
            for i, x in zip(idx, X, strict=True):
                self._features[keys[i]] = x
        out = np.stack([self._features[k] for k in keys])
        # aligned and coherent of the same answers share features: keep a bounded LRU
        while len(self._features) > 50_000:
            self._features.popitem(last=False)
        return out

    def _score(self, requests: list[JudgeRequest]) -> list[float | None]:
        if not requests:
            return []
        for m in {r.metric for r in requests}:
            if m not in self.cfg.metrics:
                self.predict_features(np.zeros((0, self.cfg.dim)), m)  # raises the clear error
        X = self._feats(requests)
        out: list[float | None] = [0.0] * len(requests)
        for m in {r.metric for r in requests}:
            idx = [i for i, r in enumerate(requests) if r.metric == m]
            for i, v in zip(idx, self.predict_features(X[idx], m), strict=True):
                out[i] = float(v)
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "calibrated": True,
            "encoder": self.cfg.encoder,
            "layer": self.cfg.layer,
            "training_files": self.cfg.training_files,
            "lambdas": self.cfg.lambdas,
            "cv": self.cfg.cv,
            "agreement": self.cfg.agreement,
            "subsample": self.cfg.subsample,
            "shipped": self.path is not None and self.path.resolve() == _shipped_path().resolve(),
            **({"provenance": self.cfg.provenance} if self.cfg.provenance else {}),
        }

    # -- persistence
    def save(self, out: str | Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.t.items()},
            str(out / "head.safetensors"),
        )
        (out / "cfg.json").write_text(json.dumps(to_dict(self.cfg), indent=2, default=float))
        self.path = out.resolve()
        self.spec = f"calibrated:{out}"
        return out

    @classmethod
    def load(cls, path: str | Path, encoder: Encoder | str | None = None, check_probe: bool = True) -> CalibratedJudge:
        path = Path(path)
        cfg_file, head_file = path / "cfg.json", path / "head.safetensors"
        if not cfg_file.is_file() or not head_file.is_file():
            raise PersonaDiffError(
                f"{path} is not a calibrated judge (needs cfg.json and head.safetensors); "
                "fit one with `persona-diff judge calibrate --data F.csv --out DIR`"
            )
        cfg = from_dict(CalibratedJudgeConfig, json.loads(cfg_file.read_text()))
        tensors = {k: v.numpy() for k, v in load_file(str(head_file)).items()}
        if isinstance(encoder, str):
            if encoder != cfg.encoder:
                raise _mismatch(path, cfg.encoder, encoder, "spec")
            encoder = None
        if encoder is not None:
            if encoder.spec != cfg.encoder:
                raise _mismatch(path, cfg.encoder, encoder.spec, "spec")
            if encoder.dim != cfg.dim:
                raise _mismatch(
                    path,
                    cfg.encoder,
                    f"{encoder.spec} (dim {encoder.dim} != {cfg.dim})",
                    "dimension",
                )
        judge = cls(cfg, tensors, encoder=encoder, path=path)
        if check_probe and "probe" in tensors:
            got = judge.encoder.encode([PROBE_QUESTION], [PROBE_ANSWER])[0].astype(np.float64)
            want = tensors["probe"]
            if got.shape != want.shape:
                raise _mismatch(path, cfg.encoder, f"{judge.encoder.spec} (dim {got.shape[0]})", "dimension")
            rel = float(np.linalg.norm(got - want) / max(float(np.linalg.norm(want)), 1e-12))
            if rel > 1e-3:
                raise _mismatch(
                    path,
                    cfg.encoder,
                    f"{judge.encoder.spec} (probe features differ by {rel:.2g})",
                    "weights",
                )
        return judge


def _mismatch(path: Path, want: str, got: str, what: str) -> PersonaDiffError:
    return PersonaDiffError(
        f"calibrated judge {path} was fitted with encoder {want!r} but got {got} (mismatched {what}); "
        f"load it with the encoder it was fitted with ({want}), or refit with "
        f"`persona-diff judge calibrate --encoder ... --out DIR`"
    )


@register_judge("calibrated")
def _factory(rest: str, encoder: Encoder | str | None = None, **_: Any) -> Judge:
    return CalibratedJudge.load(rest, encoder=encoder)


def check_judge_files(path: str | Path) -> CalibratedJudgeConfig:
    """Read a judge folder's cfg and heads without loading its encoder; a PersonaDiffError
    says what is wrong (missing file, unreadable cfg or safetensors, missing/misshaped head)."""
    path = Path(path)
    cfg_file, head_file = path / "cfg.json", path / "head.safetensors"
    for f in (cfg_file, head_file):
        if not f.is_file():
            raise PersonaDiffError(f"{f} is missing")
    try:
        cfg = from_dict(CalibratedJudgeConfig, json.loads(cfg_file.read_text()), str(cfg_file))
        tensors = load_file(str(head_file))
    except Exception as e:  # noqa: BLE001 - any parse failure means a corrupt file
        raise PersonaDiffError(f"{path} is unreadable: {type(e).__name__}: {e}") from None
    for m in cfg.metrics:
        for k in ("weight", "mean", "std"):
            t = tensors.get(f"{m}.{k}")
            if t is None or tuple(t.shape) != (cfg.dim,):
                raise PersonaDiffError(f"{head_file} lacks a {m}.{k} tensor of shape ({cfg.dim},)")
        for k in ("bias", "qmap_src", "qmap_dst"):
            if f"{m}.{k}" not in tensors:
                raise PersonaDiffError(f"{head_file} lacks the {m}.{k} tensor")
    return cfg


SHIPPED_NAME = "calibrated:<shipped>"  # the shipped judge in cache namespaces and stage keys


def _shipped_path() -> Path:
    from persona_diff.judges import shipped

    return shipped.SHIPPED_JUDGE
