"""The self-contained HTML report of a run directory (one pair) or of a study (`run --pairs`)."""

from persona_diff.report.html import build_report, render_html
from persona_diff.rundir import RunResult, load_run

__all__ = ["RunResult", "build_report", "load_run", "render_html"]
