"""Open a report.html (a run's or a study's) in headless chromium, save a screenshot and check what rendered.

    python scripts/check_report_browser.py [REPORT_HTML] [--out shot.png] [--height 7000]

Without REPORT_HTML a synthetic run directory is written to a temporary folder and its report
built first. Checks: the DOM chromium renders contains the persona label and the embedded
figures, and the screenshot shows the label badge's colour and plot colours (so the page and
its images actually painted). Needs Debian's chromium (`apt-get install -y chromium`).
Exit status 0 = all checks passed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from matplotlib import image as mpimg

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--hide-scrollbars",
]
BADGE = {"coherent": (0xD6, 0x27, 0x28), "inverted": (0x94, 0x67, 0xBD), "not-em": (0x2C, 0xA0, 0x2C)}


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    sys.exit("chromium not found: run `apt-get update && apt-get install -y chromium`")


def has_colour(img: np.ndarray, rgb: tuple[int, int, int], tol: int = 6, min_px: int = 50) -> int:
    px = (img[..., :3] * 255).round().astype(int) if img.dtype != np.uint8 else img[..., :3].astype(int)
    n = int((np.abs(px - np.array(rgb)).max(-1) <= tol).sum())
    return n if n >= min_px else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", nargs="?", type=Path, help="report.html to open (default: build a synthetic one)")
    ap.add_argument("--out", type=Path, default=Path("report_screenshot.png"), help="screenshot PNG path")
    ap.add_argument("--height", type=int, default=7000, help="window height in pixels (the whole page)")
    args = ap.parse_args()
    report = args.report
    if report is None:
        from persona_diff.report import build_report
        from persona_diff.report.synthetic import write_synthetic_run

        report = build_report(write_synthetic_run(Path(tempfile.mkdtemp()) / "run"))
    report = report.resolve()
    url = report.as_uri()
    exe = chromium()
    with tempfile.TemporaryDirectory() as prof:
        common = [exe, *FLAGS, f"--user-data-dir={prof}", f"--window-size=1200,{args.height}"]
        dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
        subprocess.run(
            [*common, f"--screenshot={args.out.resolve()}", url], capture_output=True, timeout=120, check=True
        )
    ok = True
    m = re.search(r'id="persona-label">([^<]+)<', dom)
    badges = re.findall(r'<span class="label [a-z-]+ small">([^<]+)<', dom)  # a study page: one per fine-tune
    label = m.group(1) if m else (badges[0] if badges else None)
    if badges:
        print(f"study table labels: {badges}")
    n_img = len(re.findall(r'<img[^>]+src="data:image/png;base64,', dom))
    print(f"DOM: label={label!r}, embedded images={n_img}, {len(dom)} chars")
    if not label or n_img == 0:
        ok = False
    img = mpimg.imread(args.out)
    print(f"screenshot {args.out} {img.shape[1]}x{img.shape[0]}")
    if label and label.lower() in BADGE:
        n = has_colour(img, BADGE[label.lower()])
        print(f"label badge colour {BADGE[label.lower()]}: {n} px")
        ok &= n > 0
    plot_px = has_colour(img, (0x1F, 0x77, 0xB4), tol=10)  # matplotlib C0 / base blue
    print(f"plot colour pixels (C0 blue): {plot_px}")
    ok &= plot_px > 0
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
