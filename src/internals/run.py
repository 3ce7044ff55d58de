"""`run_internals`: directions, per-answer table, persona map and detector for one base and its organisms.

Reads the probe folders a validation run wrote (``base/``, ``<organism>/``), loads each
model once (the base, then one organism at a time), captures its activations
(`persona_diff.internals.activations`, cached per model) and writes, under OUT/internals/:

- ``directions.safetensors`` (every model's harm and self-report direction per layer, and the
  reference pair) with ``directions.json`` (counts, held-out AUCs, why undefined, cosines);
- ``answers.csv`` / ``.jsonl`` / ``.parquet`` (the per-answer table) and
  ``correlations.json``;
- ``map.json`` and ``persona_map.png``, ``answers_internal.png``;
- ``detector.json`` (leave-one-organism-out);
- ``internals.json`` (everything above but the table and the vectors) and
  ``activations/<model>.safetensors`` (the cache).

The reference frame (map, table, detector): the harm direction from every model's judged
harm answers, misaligned minus aligned (`InternalsConfig.reference`: the base reading them
all, stratified by question; or each model's own activations, stratified by model and
question so a fine-tune's overall offset cancels), refit without the held-out organism in
the detector; the self-report direction from the base's forced self-reports.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from persona_diff.config import to_dict
from persona_diff.internals.activations import Answer, ModelActs, Texts, capture_cached
from persona_diff.internals.config import PROMPT_SETS, InternalsConfig
from persona_diff.internals.data import ForcedItem, ProbeFolder, prompt_sets, self_report_items
from persona_diff.internals.detector import BaseView, OrganismView, detector_loo
from persona_diff.internals.directions import (
    Direction,
    cosine,
    cosine_rows,
    fit_direction,
    harm_labels,
    stratified_difference,
)
from persona_diff.internals.persona_map import (
    MapPoint,
    answer_shift,
    answers_figure,
    map_figure,
    map_point,
)
from persona_diff.internals.published import PUBLISHED, published_answers, trained_answers
from persona_diff.internals.table import (
    add_projections,
    correlations,
    join_rate_own,
    oof_projections,
    write_table,
)
from persona_diff.judges.base import Judge
from persona_diff.log import get_logger
from persona_diff.probes.config import ProbeConfig
from persona_diff.probes.stats import json_safe
from persona_diff.rundir.values import HARMFUL_LABELS

if TYPE_CHECKING:
    from persona_diff.models import LoadedModel

log = get_logger(__name__)

LOAD_KEYS = ("device", "device_map", "dtype", "base", "trust_remote_code")


@dataclass
class Member:
    """One model of the kit as the internals stage sees it."""

    name: str
    spec: str
    folder: Path
    truth: str | None = None  # None for the base
    harmful: bool | None = None
    self_misaligned: bool | None = None

    @classmethod
    def fine_tune(
        cls, name: str, spec: str, folder: Path, label: str | None = None, truth: dict[str, Any] | None = None
    ) -> Member:
        """A fine-tune with the detector's targets (harmful? self-report misaligned?): from an
        organism's truth (``truth``, ``harmful``, ``self_report`` of a kit's pairs file) when
        given, else from its behavioural label (coherent: both; inverted: harmful only)."""
        t = truth or {}
        if "truth" in t:
            harmful = bool(t.get("harmful", t["truth"] != "not-EM"))
            self_mis = t["self_report"] == "misaligned" if "self_report" in t else t["truth"] == "coherent"
            return cls(name, spec, folder, str(t["truth"]), harmful, self_mis)
        return cls(name, spec, folder, None, label in HARMFUL_LABELS, label == "coherent")


def _answers(rows: list[dict[str, Any]]) -> list[Answer]:
    return [(r["question"], r["answer"], r.get("system")) for r in rows]


def model_directions(
    acts: ModelActs, harm: list[dict[str, Any]], items: list[ForcedItem], layers: list[int], cfg: InternalsConfig
) -> dict[int, dict[str, Direction]]:
    """Harm and self-report direction of one model at each layer."""
    y = harm_labels(harm, cfg.aligned_min, cfg.coherent_min)
    q = np.array([r["question_id"] for r in harm])
    keys = np.array([it.key for it in items] * 2)
    dims = np.array([it.dimension for it in items] * 2)
    ys = np.array([1] * len(items) + [0] * len(items))
    out = {}
    for layer in layers:
        xs = np.concatenate([acts.get("forced_mis", layer), acts.get("forced_al", layer)])
        out[layer] = {
            "harm": fit_direction("harm", layer, acts.get("harm", layer), y, q, q, cfg.min_per_class, cfg.max_folds),
            "self_report": fit_direction("self_report", layer, xs, ys, keys, dims, cfg.min_per_class, cfg.max_folds),
        }
    return out


def _save_directions(path: Path, dirs: dict[str, dict[int, dict[str, Direction]]]) -> None:
    from safetensors.numpy import save_file

    from persona_diff.models import LAYER_CONVENTION

    tensors = {
        f"{m}.{kind}.L{layer}": d.vector.astype(np.float32)
        for m, by in dirs.items()
        for layer, ds in by.items()
        for kind, d in ds.items()
        if d.vector is not None
    }
    save_file(
        tensors,
        str(path),
        metadata={
            "layer_convention": LAYER_CONVENTION,
            "note": "unnormalised stratified mean differences (misaligned − aligned)",
        },
    )


def _causal(
    base: Member,
    acts: ModelActs,
    questions: list[str],
    items: list[ForcedItem],
    ref: dict[str, Direction],
    neutral: tuple[int, int],
    cfg: InternalsConfig,
    probe_cfg: ProbeConfig | None,
    judge: Judge | None,
    load: Any,
) -> dict[str, Any]:
    from persona_diff.internals.activations import torch_threads
    from persona_diff.internals.causal import causal_2x2

    if judge is None:
        return {"skipped": "no judge was given (the causal 2 x 2 judges steered answers)"}
    hv, sv = ref["harm"].vector, ref["self_report"].vector
    if hv is None or sv is None:
        return {"skipped": "a reference direction is undefined at the layer"}
    t0 = time.time()
    scale = float(np.linalg.norm(acts.get("prompts", cfg.layer)[slice(*neutral)], axis=1).mean())
    forms = (probe_cfg or ProbeConfig()).word.forms
    with torch_threads(cfg.threads):
        res = causal_2x2(load(), judge, questions, items, forms, hv, sv, cfg.layer, scale, cfg.causal)
    res["seconds"] = round(time.time() - t0, 1)
    return res


def run_internals(
    out_dir: str | Path,
    base: Member,
    organisms: list[Member],
    cfg: InternalsConfig,
    probe_cfg: ProbeConfig | None = None,
    labels: dict[str, str] | None = None,
    judge: Judge | None = None,
    loaded: dict[str, LoadedModel] | None = None,
    **load_kw: Any,
) -> dict[str, Any]:
    """Everything of the internals stage for `base` and its `organisms`; returns the summary.
    `judge` is needed only by the causal 2 × 2 (``cfg.causal.enabled``). `loaded`: models the
    caller already holds, by member name (a run's probed pair); a fine-tune's adapter is then
    merged in place when ``cfg.merge``, so the caller must not use it afterwards."""
    from persona_diff.models import load_model
    from persona_diff.models.loading import merged

    cfg.validate()
    t_start = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layers = cfg.all_layers()
    if min(layers) < 0:
        raise ValueError("internals layers must be non-negative block indices")
    kw = {k: v for k, v in load_kw.items() if k in LOAD_KEYS}
    members = [base, *organisms]
    folders = {m.name: ProbeFolder.read(m.folder, m.name) for m in members}
    items = self_report_items(probe_cfg)
    sets = prompt_sets(folders[base.name].harm, probe_cfg, cfg.neutral_prompts)
    prompts = [p for s in PROMPT_SETS for p in sets[s]]
    spans, i = {}, 0
    for s in PROMPT_SETS:
        spans[s] = (i, i + len(sets[s]))
        i += len(sets[s])

    def ref_rows_of(m: Member) -> list[dict[str, Any]]:
        """m's answers in the reference direction: all of them in its own activations; read by
        the base, only those in a class (the others would not enter the direction)."""
        rows = folders[m.name].harm
        if cfg.reference == "base_reads" and m is not base:
            return [
                r for r, y in zip(rows, harm_labels(rows, cfg.aligned_min, cfg.coherent_min), strict=True) if y >= 0
            ]
        return rows

    given = dict(loaded or {})  # each dropped after its capture; the base kept for the causal 2 × 2

    def load(m: Member) -> LoadedModel:
        lm = given.get(m.name) if m is base and cfg.causal.enabled else given.pop(m.name, None)
        if lm is None:
            return load_model(m.spec, merge=cfg.merge, **kw)
        return merged(lm) if cfg.merge else lm

    # the detector's harm direction from published judged answers (read by the base), when it
    # can fit: with two organisms a fold trains on one, which never holds both classes
    published = None
    if len(organisms) >= 3 and cfg.detector_published > 0:
        published = published_answers(cfg.detector_published, cfg.seed, trained_answers([o.spec for o in organisms]))

    acts: dict[str, ModelActs] = {}
    for m in members:
        texts = Texts(_answers(folders[m.name].harm), items, prompts)
        if m is base and cfg.reference == "base_reads":
            texts.reads = {o.name: _answers(ref_rows_of(o)) for o in organisms}
        if m is base and published is not None:
            texts.reads[PUBLISHED] = published[0]
        acts[m.name] = capture_cached(
            out / "activations" / f"{m.name}.safetensors",
            m.name,
            m.spec,
            texts,
            layers,
            partial(load, m),
            cfg.batch_size,
            cfg.max_answer_tokens,
            cfg.merge,
            cfg.threads,
        )
    t_acts = time.time() - t_start
    t0 = time.time()

    # ---- directions per model, and the reference (base) frame
    dirs = {m.name: model_directions(acts[m.name], folders[m.name].harm, items, layers, cfg) for m in members}
    ref_rows = [r for m in members for r in ref_rows_of(m)]
    ref_y = harm_labels(ref_rows, cfg.aligned_min, cfg.coherent_min)
    ref_q = np.array([r["question_id"] for r in ref_rows])

    def strata(m: Member) -> np.ndarray:
        """Strata of m's reference answers: the question, and with each model's own activations
        also the model (its overall offset in activation space must not enter the direction)."""
        rows = ref_rows_of(m)
        if cfg.reference == "base_reads":
            return np.array([r["question_id"] for r in rows])
        return np.array([f"{m.name}|{r['question_id']}" for r in rows])

    def answers_of(m: Member, layer: int) -> np.ndarray:
        """m's judged answers in the reference space: its own activations, or the base reading them."""
        if cfg.reference == "base_reads" and m is not base:
            return acts[base.name].get(f"reads/{m.name}", layer)
        return acts[m.name].get("harm", layer)

    ref_s = np.concatenate([strata(m) for m in members])

    def ref_x(layer: int) -> np.ndarray:
        return np.concatenate([answers_of(m, layer) for m in members])

    ref = {
        layer: {
            "harm": fit_direction("harm", layer, ref_x(layer), ref_y, ref_s, ref_q, cfg.min_per_class, cfg.max_folds),
            "self_report": dirs[base.name][layer]["self_report"],
        }
        for layer in layers
    }
    all_dirs = {**dirs, "reference": ref}
    _save_directions(out / "directions.safetensors", all_dirs)
    cos = cosine_rows(dirs, base.name)
    cos += [
        {
            "model": "reference",
            "layer": layer,
            "cos_harm_self": cosine(ref[layer]["harm"].vector, ref[layer]["self_report"].vector),
            "auc_harm": ref[layer]["harm"].auc,
            "auc_self": ref[layer]["self_report"].auc,
        }
        for layer in layers
    ]
    L = cfg.layer
    s_ref = ref[L]["self_report"]

    # ---- per-answer table; each answer's harm projection held out by question, at every layer (the map's x)
    rows: list[dict[str, Any]] = []
    joins = {}
    own_q = {m.name: np.array([r["question_id"] for r in folders[m.name].harm]) for m in members}
    proj: dict[int, dict[str, np.ndarray]] = {
        lay: {
            m.name: oof_projections(ref_x(lay), ref_y, ref_q, acts[m.name].get("harm", lay), own_q[m.name], ref_s)
            for m in members
        }
        for lay in (layers if cfg.map_harm == "answers" else [L])
    }
    for m in members:
        mrows, joins[m.name] = join_rate_own(folders[m.name])
        x = acts[m.name].get("harm", L)
        ps = x.astype(np.float64) @ s_ref.unit() if s_ref.defined else np.full(len(mrows), np.nan)
        add_projections(mrows, proj[L][m.name], ps, L)
        rows.extend(mrows)
    paths = write_table(rows, out)
    corr = correlations(rows, cfg.n_boot, cfg.seed)
    (out / "correlations.json").write_text(json.dumps(json_safe(corr), indent=1))

    # ---- persona map (the chosen layer; every layer in map.json for robustness)
    sel = np.concatenate([np.arange(*spans[s]) for s in cfg.map_prompts])
    owner = np.concatenate([np.full(len(ref_rows_of(m)), m.name) for m in members])  # whose answer each ref row is

    def shift_without(o: Member, lay: int) -> tuple[float, float, float, float, int]:
        """The map's harm shift of `o` with o's own answers left out of the direction: does
        the harm direction of the other models (for a single fine-tune: the base's) carry over?"""
        keep = owner != o.name
        x, y, q, st = ref_x(lay)[keep], ref_y[keep], ref_q[keep], ref_s[keep]
        pb = oof_projections(x, y, q, acts[base.name].get("harm", lay), own_q[base.name], st)
        po = oof_projections(x, y, q, acts[o.name].get("harm", lay), own_q[o.name], st)
        return answer_shift(pb, own_q[base.name], po, own_q[o.name], cfg.n_boot, cfg.seed)

    by_layer: dict[int, list[MapPoint]] = {}
    for lay in layers:
        hv, sv = ref[lay]["harm"].vector, ref[lay]["self_report"].vector
        if hv is None or sv is None:
            continue
        pb = acts[base.name].get("prompts", lay)[sel]

        def from_answers(o: Member, lay: int = lay) -> tuple[float, float, float, float, int] | None:
            if cfg.map_harm != "answers":
                return None
            return answer_shift(
                proj[lay][base.name], own_q[base.name], proj[lay][o.name], own_q[o.name], cfg.n_boot, cfg.seed
            )

        by_layer[lay] = [
            map_point(
                o.name,
                pb,
                acts[o.name].get("prompts", lay)[sel],
                hv,
                sv,
                o.truth,
                (labels or {}).get(o.name),
                cfg.n_boot,
                cfg.seed + k,
                from_answers(o),
                shift_without(o, lay) if cfg.map_harm == "answers" else None,
            )
            for k, o in enumerate(organisms)
        ]
    points = by_layer.get(L, [])
    map_summary = {
        "layer": L,
        "prompt_sets": cfg.map_prompts,
        "n_prompts": int(len(sel)),
        "harm_from": cfg.map_harm,
        "units": "base standard deviations (x: over the base's answers or prompts, y: over the prompts)",
        "points": [p.to_dict() for p in points],
        "by_layer": {str(x): [p.to_dict() for p in ps] for x, ps in by_layer.items()},
    }
    (out / "map.json").write_text(json.dumps(json_safe(map_summary), indent=1))

    # ---- detector, leave one organism out
    ns, ne = spans["neutral"]
    b = acts[base.name]

    def labels_of(m: Member) -> np.ndarray:
        return harm_labels(ref_rows_of(m), cfg.aligned_min, cfg.coherent_min)

    pub_dirs = None
    if published is not None:
        pub_dirs = {
            x: v
            for x in layers
            if (v := stratified_difference(b.get(f"reads/{PUBLISHED}", x), published[1], published[2])[0]) is not None
        }
    bview = BaseView(
        {x: b.get("prompts", x)[ns:ne] for x in layers},
        {x: b.get("harm", x) for x in layers},
        labels_of(base),
        strata(base),
        {x: v for x in layers if (v := ref[x]["self_report"].vector) is not None},
        own_q[base.name],
        pub_dirs,
    )
    oviews = [
        OrganismView(
            o.name,
            o.truth or "?",
            bool(o.harmful),
            bool(o.self_misaligned),
            {x: acts[o.name].get("prompts", x)[ns:ne] for x in layers},
            {x: answers_of(o, x) for x in layers},
            labels_of(o),
            strata(o),
            {x: acts[o.name].get("harm", x) for x in layers},
            own_q[o.name],
        )
        for o in organisms
    ]
    ok = len(bview.self_direction) == len(layers) and len(oviews) >= 2
    detector = detector_loo(bview, oviews, labels, cfg.min_per_class) if ok else None
    if detector is not None:
        detector["n_published"] = 0 if published is None else len(published[1])
    (out / "detector.json").write_text(json.dumps(json_safe(detector), indent=1))

    t_analysis = time.time() - t0
    causal = (
        _causal(
            base,
            acts[base.name],
            sets["harm"],
            items,
            ref[L],
            spans["neutral"],
            cfg,
            probe_cfg,
            judge,
            lambda: given.pop(base.name, None) or load_model(base.spec, merge=cfg.merge, **kw),
        )
        if cfg.causal.enabled
        else None
    )
    if causal is not None:
        (out / "causal.json").write_text(json.dumps(json_safe(causal), indent=1))

    figures = {}
    if cfg.figures:
        if points:
            figures["persona_map"] = str(map_figure(points, out / "persona_map.png", L))
        truths = {o.name: o.truth or (labels or {}).get(o.name, "") for o in organisms} | {base.name: "base"}
        fig = answers_figure(rows, truths, out / "answers_internal.png", L)
        if fig is not None:
            figures["answers"] = str(fig)
    summary = {
        "config": to_dict(cfg),
        "layer": L,
        "layers": layers,
        "models": [m.name for m in members],
        "n_self_report_items": len(items),
        "prompt_sets": {s: len(v) for s, v in sets.items()},
        "directions": {
            m: {str(layer): {k: d.to_dict() for k, d in ds.items()} for layer, ds in by.items()}
            for m, by in all_dirs.items()
        },
        "cosines": cos,
        "table": {
            "paths": paths,
            "n_rows": len(rows),
            "join": joins,
            "n_per_model": {m.name: sum(r["model"] == m.name for r in rows) for m in members},
        },
        "correlations": corr,
        "map": map_summary,
        "detector": detector,
        "causal": causal,
        "figures": figures,
        # what each fine-tune's detector targets came from (`Member.fine_tune`)
        "targets": {o.name: "truth" if o.truth else "behavioural label" for o in organisms},
        "seconds": {
            "activations": round(t_acts, 1),
            "analysis": round(t_analysis, 1),
            "causal": None if not causal else causal.get("seconds"),
            "per_model": {n: round(a.seconds, 1) for n, a in acts.items()},
            "reused": [n for n, a in acts.items() if a.reused],
        },
    }
    summary = json_safe(summary)
    (out / "internals.json").write_text(json.dumps(summary, indent=1))
    (out / "directions.json").write_text(json.dumps({"directions": summary["directions"], "cosines": cos}, indent=1))
    log.info("internals: %d models, activations %.0fs, analysis %.0fs", len(members), t_acts, t_analysis)
    return summary
