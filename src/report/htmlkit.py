"""HTML pieces shared by the pair report and the study report: escaping, number formats,
tables, embedded figures, the label badge. Pages are self-contained (figures are base64 PNG)."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from persona_diff.log import get_logger
from persona_diff.rundir import LABEL_COLOURS, Estimate

log = get_logger(__name__)

_BADGES = "".join(f".label.{k.lower()}{{background:{c}}}" for k, c in LABEL_COLOURS.items())
CSS = (
    """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3} .num{text-align:right;font-variant-numeric:tabular-nums}
.label{display:inline-block;padding:.3em .9em;border-radius:.4em;font-size:1.4em;font-weight:bold;color:#fff;background:#7f7f7f}
.label.small{font-size:.9em;padding:.1em .5em}
.warn{background:#fff3cd;border:2px solid #d39e00;padding:.6em 1em;font-weight:bold;color:#7a5a00}
.missing{color:#888;font-style:italic} img{max-width:100%;border:1px solid #eee;margin:.4em 0}
.muted{color:#666;font-size:.9em} details{margin:.5em 0} .bad{color:#b00} .ok{color:#070}
"""
    + _BADGES
)


def e(x: Any) -> str:
    return html.escape(str(x))


def fmt(v: Any) -> str:
    """A cell: numbers to 3 significant digits, ``[lo, hi]`` pairs, estimates as ``v [lo, hi]``."""
    if isinstance(v, Estimate):
        return e(v.fmt())
    if isinstance(v, bool) or v is None:
        return e("—" if v is None else v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.3g}" if abs(v) < 1e-3 or abs(v) >= 1e4 else f"{v:.3f}".rstrip("0").rstrip(".")
    if isinstance(v, list | tuple) and len(v) == 2 and all(isinstance(x, int | float) for x in v):
        return f"[{fmt(float(v[0]))}, {fmt(float(v[1]))}]"
    if isinstance(v, dict) and "value" in v:
        est = Estimate.parse(v)
        return e(est.fmt()) if est is not None else "—"
    if isinstance(v, dict | list):
        return e(json.dumps(v, default=str)[:200])
    return e(v)


class Raw(str):
    """A cell that is already HTML (a link, a badge): put in the table as it is."""


def table(rows: Sequence[dict[str, Any]], cols: Sequence[str] | None = None) -> str:
    if not rows:
        return '<p class="missing">no rows</p>'
    cols = list(cols or dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{e(c)}</th>" for c in cols)

    def cell(v: Any) -> str:
        cls = "num" if isinstance(v, int | float | Estimate) and not isinstance(v, bool) else ""
        return f'<td class="{cls}">{v if isinstance(v, Raw) else fmt(v)}</td>'

    body = "".join("<tr>" + "".join(cell(r.get(c)) for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{e(alt)}" src="data:image/png;base64,{data}">'


def missing(stage: str) -> str:
    return f'<p class="missing">stage not run: {e(stage)} (its outputs are not in this run directory)</p>'


def figure(fn: Callable[..., list[Path]], out_stem: Path, alt: str, *args: Any, **kw: Any) -> str:
    """Draw with `fn(*args, out_stem, **kw)` and embed the PNG; a failure is a note, not a crash."""
    try:
        paths = fn(*args, out_stem, **kw)
    except Exception as err:  # a malformed input file must not sink the whole report
        log.warning("figure %s failed: %s", out_stem.name, err)
        return f'<p class="missing">figure {e(out_stem.name)} could not be drawn: {e(err)}</p>'
    return img(paths[0], alt)


def badge(label: str, small: bool = False, element_id: str | None = None) -> str:
    ident = f' id="{e(element_id)}"' if element_id else ""
    return f'<span class="label {e(label.lower())}{" small" if small else ""}"{ident}>{e(label)}</span>'


def page(title: str, where: Path, body: list[str]) -> str:
    built = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{e(title)}</h1><p class='muted'>{e(where.resolve())} · built {built}</p>"
    )
    return "\n".join([head, *body, "</body></html>"])


def judge_section(judge: Any, missing_text: str) -> str:
    """A judge's spec and measured agreement; a warning when it is not validated."""
    if judge is None:
        return f'<p class="warn">UNCALIBRATED judge: {e(missing_text)}; EM% figures have unknown agreement with GPT-4o.</p>'
    agr = judge.agreement
    out = [f"<p>Judge: <code>{e(judge.spec)}</code></p>"]
    if not judge.validated:
        out.append(
            '<p class="warn">UNCALIBRATED judge: its agreement with a reference judge was not measured; '
            "treat EM% and coherent% below as unvalidated.</p>"
        )
    if judge.warning:
        out.append(f"<p class='muted'>{e(judge.warning)}</p>")
    if isinstance(agr, dict):
        keys = [
            k
            for k in ("mode", "mean_spearman", "mean_pearson", "mean_auc", "mean_coherent_spearman", "max_abs_em_gap")
            if k in agr
        ]
        out.append(table([{k: agr[k] for k in keys}]))
        files = agr.get("files")
        if isinstance(files, list) and files and isinstance(files[0], dict):
            cols = [c for c in ("file", "n", "spearman", "pearson", "auc", "em_reference", "em_judge") if c in files[0]]
            out.append("<details><summary>per-file agreement</summary>" + table(files, cols) + "</details>")
    return "".join(out)


def details_json(summary: str, data: Any) -> str:
    return (
        f"<details><summary>{e(summary)}</summary><pre>"
        + e(json.dumps(data, indent=1, default=str))
        + "</pre></details>"
    )
