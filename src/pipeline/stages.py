"""Resumable stages inside a run directory.

Each stage writes into `RUN_DIR/<stage>/` and, when it finishes, a `_stage.json` marker with
the hash of the config the stage depends on. A rerun skips a stage whose marker hash matches;
a stage killed midway has no marker and runs again (stages themselves resume from their own
partial files where they can: answers JSONL, judge cache, activation shards). Every start,
skip and finish is appended to `RUN_DIR/stages.log.jsonl`, which tests and users can read.

A stage may also be *adopted*: its outputs were made elsewhere for the same hash (a study
probes a base model once, `persona_diff.pipeline.shared`) and are copied in; the log says
``shared`` with where they came from.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from persona_diff.config import config_hash
from persona_diff.log import get_logger

log = get_logger(__name__)

MARKER = "_stage.json"


class StageRunner:
    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.log_path = run_dir / "stages.log.jsonl"
        self.changed = 0  # stages run or adopted by this runner (0: everything was up to date)

    def _log(self, stage: str, event: str, **kw: Any) -> None:
        with self.log_path.open("a") as f:
            f.write(json.dumps({"t": time.time(), "stage": stage, "event": event, **kw}) + "\n")

    def up_to_date(self, *outputs: Path) -> bool:
        """Nothing ran here and every output exists, newer than every finished stage's marker."""
        if self.changed or not all(p.is_file() for p in outputs):
            return False
        markers = [m.stat().st_mtime for m in self.run_dir.glob(f"**/{MARKER}")]
        return min(p.stat().st_mtime for p in outputs) >= max(markers, default=0.0)

    def done(self, stage: str, deps: Any) -> bool:
        marker = self.run_dir / stage / MARKER
        if not marker.is_file():
            return False
        try:
            return json.loads(marker.read_text()).get("hash") == config_hash(deps)
        except json.JSONDecodeError:
            return False

    def skip(self, stage: str, deps: Any) -> Any:
        """Log a skip of a done stage; its recorded result."""
        h = config_hash(deps)
        log.info("stage %s: up to date (config %s), skipped", stage, h)
        self._log(stage, "skip", hash=h)
        return json.loads((self.run_dir / stage / MARKER).read_text()).get("result")

    def _move_aside(self, stage: str) -> None:
        """A finished stage with another hash goes to `<stage>.prev-<hash>` (nothing deleted)."""
        sdir = self.run_dir / stage
        marker = sdir / MARKER
        if marker.is_file():
            old = json.loads(marker.read_text()).get("hash", "old")
            aside = self.run_dir / f"{stage}.prev-{old}"
            if aside.exists():
                shutil.rmtree(aside)
            sdir.rename(aside)
            log.info("stage %s: config changed; previous outputs kept in %s", stage, aside.name)

    def run(self, stage: str, deps: Any, fn: Callable[[Path], Any]) -> Any:
        """Run `fn(stage_dir)` unless the stage is already done for `deps`.

        A finished stage with a *different* hash is moved aside to `<stage>.prev-<hash>`
        (nothing is deleted), then recomputed.
        """
        sdir = self.run_dir / stage
        h = config_hash(deps)
        if self.done(stage, deps):
            return self.skip(stage, deps)
        self._move_aside(stage)
        sdir.mkdir(parents=True, exist_ok=True)
        log.info("stage %s: running", stage)
        self.changed += 1
        self._log(stage, "start", hash=h)
        t0 = time.time()
        result = fn(sdir)
        (sdir / MARKER).write_text(
            json.dumps({"hash": h, "seconds": round(time.time() - t0, 2), "result": result}, default=str)
        )
        self._log(stage, "finish", hash=h, seconds=round(time.time() - t0, 2))
        return result

    def adopt(self, stage: str, deps: Any, source: Path, result: Any) -> Any:
        """Make `stage` a copy of `source` (a finished stage with the same `deps`, made
        elsewhere): previous outputs with another hash are moved aside, the files copied in
        (an unfinished copy has no marker, so a kill just copies again)."""
        sdir = self.run_dir / stage
        h = config_hash(deps)
        self.changed += 1
        self._move_aside(stage)
        if sdir.exists():
            shutil.rmtree(sdir)  # an interrupted copy
        shutil.copytree(source, sdir, ignore=shutil.ignore_patterns(MARKER))
        (sdir / MARKER).write_text(
            json.dumps({"hash": h, "seconds": 0.0, "result": result, "from": str(source)}, default=str)
        )
        log.info("stage %s: outputs shared from %s", stage, source)
        self._log(stage, "shared", hash=h, source=str(source))
        return result
