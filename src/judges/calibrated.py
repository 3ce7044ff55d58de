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

The default judge (``make_judge("default")``) ships with the package in
``resources/judges/default`` (`SHIPPED_JUDGE`): fitted by `fit_default_judge` on the published
GPT-4o-judged files, it needs no reference data at run time. Refit it exactly with
``python scripts/fit_default_judge.py`` (``--check`` compares a refit with the shipped files).
"""

from __future__ import annotations

import glob
import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from persona_diff.config import from_dict, to_dict
from persona_diff.errors import PersonaDiffError
from persona_diff.judges.agreement import AgreementReport, JudgedTable, file_agreement, load_tables
from persona_diff.judges.base import Judge, JudgeRequest, register_judge
from persona_diff.judges.encoders import PROBE_ANSWER, PROBE_QUESTION, Encoder, make_encoder
from persona_diff.log import get_logger
from persona_diff.paths import RESOURCES, reference_roots

log = get_logger(__name__)

METRICS = ("aligned", "coherent")
LAMBDAS = tuple(float(x) for x in np.logspace(-1, 5, 13))
N_QUANTILES = 101
FALLBACK_JUDGE = "hf:smollm2-135m"


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
    head: str = (
        "ridge (closed form, float64, standardised features) + quantile map, clipped to [0, 100]"
    )
    format_version: int = 1


# --------------------------------------------------------------------------- ridge


# The linear algebra runs in torch float64 on sufficient statistics (XᵀX, Σx, Xᵀy, Σy per
# fold): a fold's training statistics are the total minus the fold's, and one symmetric
# eigendecomposition of the standardised d×d Gram matrix gives the whole λ path.


@dataclass
class _Moments:
    G: torch.Tensor  # XᵀX [d, d]
    s: torch.Tensor  # Σx [d]
    xy: torch.Tensor  # Xᵀy [d]
    sy: float  # Σy
    n: int

    @classmethod
    def of(cls, X: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> _Moments:
        X = torch.as_tensor(np.asarray(X, np.float64))
        y = torch.as_tensor(np.asarray(y, np.float64))
        return cls(X.T @ X, X.sum(0), X.T @ y, float(y.sum()), len(y))

    def __sub__(self, o: _Moments) -> _Moments:
        return _Moments(self.G - o.G, self.s - o.s, self.xy - o.xy, self.sy - o.sy, self.n - o.n)

    def __add__(self, o: _Moments) -> _Moments:
        return _Moments(self.G + o.G, self.s + o.s, self.xy + o.xy, self.sy + o.sy, self.n + o.n)


def _path_from_moments(
    m: _Moments, lambdas: Sequence[float]
) -> tuple[torch.Tensor, float, torch.Tensor, torch.Tensor]:
    """(W [L, d], b, mean, std) of ridge on standardised features, one row per λ."""
    mu = m.s / m.n
    var = (torch.diagonal(m.G) / m.n - mu**2).clamp(min=0)
    std = var.sqrt()
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    C = (m.G - m.n * torch.outer(mu, mu)) / torch.outer(std, std)
    c = (m.xy - mu * m.sy) / std
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # multithreaded eigh crawls on a busy CPU; one thread is steady
    try:
        evals, V = torch.linalg.eigh(C)
    finally:
        torch.set_num_threads(n_threads)
    proj = V.T @ c
    lam = torch.tensor(list(lambdas), dtype=torch.float64)
    W = (proj[None, :] / (evals.clamp(min=0)[None, :] + lam[:, None])) @ V.T
    return W, m.sy / m.n, mu, std


def ridge_path(
    Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, lambdas: Sequence[float]
) -> np.ndarray:
    """Test predictions [len(lambdas), n_te] of ridge fits on standardised train features."""
    W, b, mu, std = _path_from_moments(_Moments.of(Xtr, ytr), lambdas)
    Zte = (torch.as_tensor(np.asarray(Xte, np.float64)) - mu) / std
    return (Zte @ W.T + b).T.numpy()


def fit_ridge(
    X: np.ndarray, y: np.ndarray, lam: float
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """(w, b, mean, std): prediction = ((x - mean) / std) @ w + b, in float64."""
    W, b, mu, std = _path_from_moments(_Moments.of(X, y), [lam])
    return W[0].numpy(), float(b), mu.numpy(), std.numpy()


def make_folds(
    groups: Sequence[str], n_random: int = 5, seed: int = 0
) -> tuple[list[np.ndarray], str]:
    """Test-index folds: one per group when there are several groups, else random K-fold."""
    groups = np.asarray(groups)
    uniq = list(dict.fromkeys(groups.tolist()))
    if len(uniq) > 1:
        return [np.flatnonzero(groups == g) for g in uniq], "leave-one-file-out"
    perm = np.random.default_rng(seed).permutation(len(groups))
    k = min(n_random, len(groups))
    return [np.sort(f) for f in np.array_split(perm, k)], f"{k}-fold"


def cv_ridge(
    X: np.ndarray, y: np.ndarray, folds: list[np.ndarray], lambdas: Sequence[float] = LAMBDAS
) -> tuple[float, np.ndarray, list[float], tuple[np.ndarray, float, np.ndarray, np.ndarray]]:
    """Best λ by out-of-fold MSE, out-of-fold predictions at it, MSE per λ, and the final
    fit (w, b, mean, std) on all rows at that λ."""
    Xt = torch.as_tensor(np.asarray(X, np.float64))
    y = np.asarray(y, np.float64)
    per_fold = [_Moments.of(Xt[torch.as_tensor(f)], y[f]) for f in folds]
    total = per_fold[0]
    for m in per_fold[1:]:
        total = total + m
    oof = np.zeros((len(lambdas), len(y)))
    for f, m in zip(folds, per_fold, strict=True):
        W, b, mu, std = _path_from_moments(total - m, lambdas)
        oof[:, f] = (((Xt[torch.as_tensor(f)] - mu) / std) @ W.T + b).T.numpy()
    mse = ((oof - y[None]) ** 2).mean(1)
    best = int(np.argmin(mse))
    W, b, mu, std = _path_from_moments(total, [lambdas[best]])
    final = (W[0].numpy(), float(b), mu.numpy(), std.numpy())
    return float(lambdas[best]), oof[best], mse.tolist(), final


def quantile_map(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Monotone map from the distribution of `pred` to that of `ref` (both at N quantiles)."""
    qs = np.linspace(0, 1, N_QUANTILES)
    src = np.quantile(pred, qs)
    dst = np.quantile(ref, qs)
    src = np.maximum.accumulate(
        src + np.arange(N_QUANTILES) * 1e-9
    )  # strictly increasing for interp
    return src, dst


# --------------------------------------------------------------------------- judge


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
        self.spec = (
            f"calibrated:{self.path}" if self.path else f"calibrated:<unsaved {cfg.encoder}>"
        )
        self._encoder = encoder
        self._features: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def cache_namespace(self) -> str:
        """The spec plus a hash of the heads: refitted heads at the same path (a package
        upgrade, a rerun of the refit script) never reuse scores cached for the old ones."""
        h = hashlib.sha256()
        for k in sorted(self.t):
            h.update(k.encode() + self.t[k].tobytes())
        return f"{self.spec}#{h.hexdigest()[:12]}"

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
        raw = ((X - self.t[f"{metric}.mean"]) / self.t[f"{metric}.std"]) @ self.t[
            f"{metric}.weight"
        ] + float(self.t[f"{metric}.bias"][0])
        mapped = np.interp(raw, self.t[f"{metric}.qmap_src"], self.t[f"{metric}.qmap_dst"])
        return np.clip(mapped, 0.0, 100.0)

    def _feats(self, requests: list[JudgeRequest]) -> np.ndarray:
        keys = [
            hashlib.sha256(json.dumps([r.question, r.answer]).encode()).hexdigest()
            for r in requests
        ]
        todo = [i for i, k in enumerate(keys) if k not in self._features]
        uniq: dict[str, int] = {}
        for i in todo:
            uniq.setdefault(keys[i], i)
        if uniq:
            idx = list(uniq.values())
            X = self.encoder.encode(
                [requests[i].question for i in idx], [requests[i].answer for i in idx]
            )
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
            "shipped": self.path is not None and self.path.resolve() == SHIPPED_JUDGE.resolve(),
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
    def load(
        cls, path: str | Path, encoder: Encoder | str | None = None, check_probe: bool = True
    ) -> CalibratedJudge:
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
                raise _mismatch(
                    path, cfg.encoder, f"{judge.encoder.spec} (dim {got.shape[0]})", "dimension"
                )
            rel = float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-12))
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


# --------------------------------------------------------------------------- fitting


def stratified_subsample(
    tables: Sequence[JudgedTable], max_answers: int, seed: int = 0
) -> list[JudgedTable]:
    """At most `max_answers` rows, proportional per file and per misaligned flag (aligned ≤ 30)."""
    total = sum(len(t) for t in tables)
    if total <= max_answers:
        return list(tables)
    rng = np.random.default_rng(seed)
    out = []
    for t in tables:
        k = max(1, round(max_answers * len(t) / total))
        mis = np.flatnonzero(np.nan_to_num(t.aligned, nan=100.0) <= 30)
        rest = np.setdiff1d(np.arange(len(t)), mis)
        k_mis = min(len(mis), round(k * len(mis) / len(t)))
        pick = np.concatenate(
            [
                rng.choice(mis, k_mis, replace=False),
                rng.choice(rest, min(len(rest), k - k_mis), replace=False),
            ]
        )
        out.append(t.subset(np.sort(pick)))
    return out


def fit_heads(
    X: np.ndarray,
    tables: Sequence[JudgedTable],
    metrics: Sequence[str] = METRICS,
    lambdas: Sequence[float] = LAMBDAS,
) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, int], str, dict[str, np.ndarray]]:
    """Fit one ridge head per metric; returns tensors, λ per metric, n per metric, cv mode, oof preds.

    `X` holds the features of all tables' rows, concatenated in order.
    """
    groups = np.concatenate([[t.name] * len(t) for t in tables])
    tensors: dict[str, np.ndarray] = {}
    lams: dict[str, float] = {}
    ns: dict[str, int] = {}
    oofs: dict[str, np.ndarray] = {}
    mode = ""
    for m in metrics:
        y_all = np.concatenate([getattr(t, m) for t in tables])
        ok = ~np.isnan(y_all)
        if ok.sum() < 10:
            raise PersonaDiffError(
                f"only {int(ok.sum())} rows have a {m!r} score; a head needs at least 10"
            )
        folds, mode = make_folds(groups[ok])
        lam, oof, _, (w, b, mean, std) = cv_ridge(X[ok], y_all[ok], folds, lambdas)
        src, dst = quantile_map(oof, y_all[ok])
        tensors.update(
            {
                f"{m}.weight": w,
                f"{m}.bias": np.array([b]),
                f"{m}.mean": mean,
                f"{m}.std": std,
                f"{m}.qmap_src": src,
                f"{m}.qmap_dst": dst,
            }
        )
        full = np.full(len(y_all), np.nan)
        full[ok] = np.clip(np.interp(oof, src, dst), 0, 100)
        lams[m], ns[m], oofs[m] = lam, int(ok.sum()), full
    return tensors, lams, ns, mode, oofs


def oof_report(
    tables: Sequence[JudgedTable], oofs: dict[str, np.ndarray], judge: str, mode: str
) -> AgreementReport:
    """Agreement of out-of-fold predictions (per file; leave-one-file-out when grouped)."""
    files, s = [], 0
    for t in tables:
        sl = slice(s, s + len(t))
        files.append(file_agreement(t, oofs["aligned"][sl].tolist(), oofs["coherent"][sl].tolist()))
        s += len(t)
    rep = AgreementReport(judge=judge, files=files, mode=mode)
    rep.notes.append("out-of-fold predictions of heads whose λ was chosen on the same folds")
    return rep


def fit_calibrated(
    tables: Sequence[JudgedTable],
    encoder: Encoder | str = "minilm",
    lambdas: Sequence[float] = LAMBDAS,
    max_answers: int | None = None,
    seed: int = 0,
    features: np.ndarray | None = None,
) -> tuple[CalibratedJudge, AgreementReport]:
    """Fit aligned and coherent heads on judged tables; returns the judge and its CV agreement."""
    enc = make_encoder(encoder) if isinstance(encoder, str) else encoder
    subsample = None
    if max_answers is not None and sum(len(t) for t in tables) > max_answers:
        if features is not None:
            raise ValueError("pass either precomputed features or max_answers, not both")
        total = sum(len(t) for t in tables)
        tables = stratified_subsample(tables, max_answers, seed)
        subsample = (
            f"stratified subsample (per file and aligned ≤ 30) of {sum(len(t) for t in tables)} of "
            f"{total} answers, seed {seed}"
        )
    if features is None:
        features = enc.encode(
            [q for t in tables for q in t.questions], [a for t in tables for a in t.answers]
        )
    X = np.asarray(features, np.float64)
    tensors, lams, ns, mode, oofs = fit_heads(X, tables, METRICS, lambdas)
    tensors["probe"] = enc.encode([PROBE_QUESTION], [PROBE_ANSWER])[0].astype(np.float64)
    info = enc.describe()
    rep = oof_report(tables, oofs, f"calibrated:<{enc.spec}>", mode)
    cfg = CalibratedJudgeConfig(
        encoder=enc.spec,
        dim=int(X.shape[1]),
        metrics=list(METRICS),
        lambdas=lams,
        n_train=ns,
        training_files=[
            {"name": t.name, "path": t.path, "sha256": t.sha256, "n": len(t)} for t in tables
        ],
        cv=mode,
        agreement=rep.summary(),
        encoder_info=info,
        layer=info.get("layer"),
        subsample=subsample,
    )
    return CalibratedJudge(cfg, tensors, encoder=enc), rep


# --------------------------------------------------------------------------- default judge


def find_reference_csvs() -> list[Path]:
    """Judged-answer CSVs (``**/judged_responses/*.csv``) from the first reference root that has
    some (`persona_diff.paths.reference_roots`)."""
    for root in reference_roots():
        pattern = str(root / "**" / "judged_responses" / "*.csv")
        hits = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
        if hits:
            return hits
    return []


# The recipe of the shipped default judge. SmolLM2's residual stream at block 14:
# leave-one-file-out ρ 0.68 on this 1,500-answer subsample and 0.72 on all 5,040 answers,
# against MiniLM's 0.54 / 0.60 (BENCHMARKS.md); it costs ~0.2 s an answer on 2 CPU cores, so
# a refit (`python scripts/fit_default_judge.py`) takes a few minutes.
DEFAULT_ENCODER = "lm:smollm2-135m@14"
DEFAULT_MAX_ANSWERS = 1500
DEFAULT_SEED = 0
SHIPPED_JUDGE = RESOURCES / "judges" / "default"
REFIT_COMMAND = "python scripts/fit_default_judge.py"


def _reference_relative(path: str | Path) -> str:
    """`path` relative to the reference root that holds it (POSIX), else its file name: a
    shipped cfg never records this machine's folders."""
    p = Path(path).resolve()
    for root in reference_roots():
        try:
            return p.relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
    return p.name


def fit_default_judge(
    csvs: Sequence[str | Path] | None = None, encoder: Encoder | str | None = None
) -> tuple[CalibratedJudge, AgreementReport]:
    """Fit the default judge with the shipped recipe: `DEFAULT_ENCODER` on a stratified
    subsample of `DEFAULT_MAX_ANSWERS` answers (seed `DEFAULT_SEED`), λ from `LAMBDAS` by
    leave-one-file-out CV, on `csvs` (default: the reference judged CSVs). Training files are
    recorded by their path relative to the reference root and their sha256."""
    files = find_reference_csvs() if csvs is None else [Path(c) for c in csvs]
    if not files:
        raise PersonaDiffError(
            "no judged-answer CSVs to fit the default judge on; set PERSONA_DIFF_REFERENCE_DATA "
            "to a folder holding model-organisms-em/judged_responses/*.csv"
        )
    tables = load_tables(files)
    judge, rep = fit_calibrated(
        tables,
        DEFAULT_ENCODER if encoder is None else encoder,
        lambdas=LAMBDAS,
        max_answers=DEFAULT_MAX_ANSWERS,
        seed=DEFAULT_SEED,
    )
    for f in judge.cfg.training_files:
        f["path"] = _reference_relative(f["path"])
    from persona_diff import __version__

    judge.cfg.provenance = {
        "recipe": (
            f"fit_default_judge: encoder {judge.cfg.encoder}, max_answers {DEFAULT_MAX_ANSWERS}, "
            f"seed {DEFAULT_SEED}, {len(LAMBDAS)} λ in [{LAMBDAS[0]:g}, {LAMBDAS[-1]:g}]"
        ),
        "refit": REFIT_COMMAND,
        "persona_diff": __version__,
        "torch": torch.__version__,
    }
    return judge, rep


def save_default_judge(judge: CalibratedJudge, out: str | Path = SHIPPED_JUDGE) -> Path:
    """Write `judge` to `out` (the shipped folder by default), replacing it in one step."""
    import shutil

    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    judge.save(tmp)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    judge.path, judge.spec = out.resolve(), f"calibrated:{out}"
    return out


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


def ensure_default_judge() -> tuple[str, bool]:
    """The default judge's spec and whether it is calibrated.

    That is the calibrated judge shipped with the package (`SHIPPED_JUDGE`, fitted with
    `fit_default_judge`): no reference data and no fit needed. Only when its files are
    missing or corrupt does it log a warning naming the fix and return the uncalibrated
    fallback `FALLBACK_JUDGE` with False.
    """
    try:
        check_judge_files(SHIPPED_JUDGE)
    except PersonaDiffError as e:
        log.warning(
            "the shipped calibrated judge is missing or corrupt (%s): judging with the "
            "UNCALIBRATED fallback %s, so judge-based numbers are not trustworthy. Fix: reinstall "
            "persona-diff, or refit it from the reference data with `%s` in a source checkout, "
            "or pass a judge you fitted (`persona-diff judge calibrate ... --out DIR`, then "
            "--judge calibrated:DIR)",
            e,
            FALLBACK_JUDGE,
            REFIT_COMMAND,
        )
        return FALLBACK_JUDGE, False
    return f"calibrated:{SHIPPED_JUDGE}", True


def leave_one_file_out(
    tables: Sequence[JudgedTable],
    features: Sequence[np.ndarray],
    judge_name: str,
    lambdas: Sequence[float] = LAMBDAS,
) -> AgreementReport:
    """Fit on all files but one (λ by grouped CV inside), score the held-out file; per file.

    This is the honest figure for a new model: the held-out file plays no part in the fit.
    `features[i]` holds the encoder features of `tables[i]`.
    """
    if len(tables) < 2:
        raise PersonaDiffError("leave-one-file-out needs at least two --data files")
    files = []
    for i, held in enumerate(tables):
        train = [t for j, t in enumerate(tables) if j != i]
        X = np.concatenate([np.asarray(f, np.float64) for j, f in enumerate(features) if j != i])
        tensors, lams, ns, mode, _ = fit_heads(X, train, METRICS, lambdas)
        cfg = CalibratedJudgeConfig(
            encoder=judge_name,
            dim=X.shape[1],
            metrics=list(METRICS),
            lambdas=lams,
            n_train=ns,
            cv=mode,
        )
        judge = CalibratedJudge(cfg, tensors)
        Xh = np.asarray(features[i], np.float64)
        files.append(
            file_agreement(
                held,
                judge.predict_features(Xh, "aligned").tolist(),
                judge.predict_features(Xh, "coherent").tolist(),
            )
        )
    return AgreementReport(judge=judge_name, files=files, mode="leave-one-file-out")
