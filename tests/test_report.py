"""The HTML report builds from a directory the real pipeline wrote (and from synthetic ones
made with the same contract), embeds its figures, tolerates gaps; the study page sorts and
colours every label and hooks in a persona map."""

from __future__ import annotations

import base64
import json
import re
import shutil

import pytest

from persona_diff.errors import PersonaDiffError
from persona_diff.report import build_report, load_run
from persona_diff.report.synthetic import write_synthetic_run, write_synthetic_study
from persona_diff.rundir import LABEL_COLOURS


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


@pytest.fixture
def run(tiny_run, tmp_path):
    """A writable copy of the pipeline's run directory, without its report and figures."""
    d = shutil.copytree(tiny_run, tmp_path / "run")
    shutil.rmtree(d / "plots")
    (d / "report.html").unlink()
    return d


def test_report_of_a_pipeline_run(run):
    path = build_report(run)
    assert path == run / "report.html"
    page = path.read_text()
    label = json.loads((run / "label.json").read_text())
    assert re.search(rf'id="persona-label">{re.escape(label["label"])}<', page)
    assert label["label_text"] in page and "Evidence per probe" in page
    imgs = _images(page)
    # S/R bars, top directions of 4 methods, dose-response, feature vs self-report
    assert len(imgs) == 7
    assert all(im.startswith(b"\x89PNG\r\n\x1a\n") and len(im) > 5000 for im in imgs)
    assert 'src="http' not in page and "<script" not in page  # self-contained, nothing fetched
    assert "stage not run" not in page
    # the hash judge has no measured agreement: the page says so, and not that judge.json is missing
    assert "UNCALIBRATED judge: its agreement" in page and "no judge.json" not in page and "hash:t" in page
    assert "Self-report informativeness" in page
    for stem in ("report_dose_response", "report_sr_bars", "report_feature_vs_selfreport", "report_top_mean"):
        assert (run / "plots" / f"{stem}.png").is_file() and (run / "plots" / f"{stem}.svg").is_file()


def test_missing_stages_say_stage_not_run(run):
    for rel in ("steering/dose_response.jsonl", "label.json", "judge.json"):
        (run / rel).unlink()
    shutil.rmtree(run / "diffing")
    (run / "analysis" / "correlations.json").write_text("{not json")  # torn file: treated as missing
    page = build_report(run).read_text()
    assert page.count("stage not run") == 3  # label, diffing, steering
    assert "UNCALIBRATED judge: no judge.json in this run" in page  # true here
    assert len(_images(page)) == 2  # S/R bars + feature vs self-report remain
    d = load_run(run)
    assert d.dose_response is None and d.correlations is None and d.moral


def test_synthetic_run_is_made_with_the_same_contract(run, tmp_path):
    syn = load_run(write_synthetic_run(tmp_path / "syn", label="inverted"))
    real = load_run(run)
    assert set(syn.probes) == set(real.probes) == {"base", "finetuned"}
    assert set(syn.probes["finetuned"]) <= set(real.probes["finetuned"])
    assert set(syn.directions) <= set(real.directions)
    for role in ("base", "finetuned"):
        for name, p in syn.probes[role].items():
            assert p.kind == real.probes[role][name].kind
    page = build_report(tmp_path / "syn").read_text()
    assert 'id="persona-label">inverted<' in page and "UNCALIBRATED" not in page and "0.735" in page


def test_empty_and_absent_run_dirs(tmp_path):
    (tmp_path / "empty").mkdir()
    page = build_report(tmp_path / "empty").read_text()
    assert page.count("stage not run") >= 4 and "<html>" in page
    with pytest.raises(PersonaDiffError, match="does not exist"):
        build_report(tmp_path / "nope")


def test_extra_plots_embedded_and_html_escaped(tmp_path):
    import numpy as np
    from matplotlib import image as mpimg

    run = write_synthetic_run(tmp_path / "run")
    for sub in ("steering", "analysis", "diffing", "probes"):
        shutil.rmtree(run / sub)
    (run / "plots").mkdir()
    mpimg.imsave(run / "plots" / "custom.png", np.random.default_rng(0).random((60, 80, 3)))
    lab = json.loads((run / "label.json").read_text())
    lab["label_text"] = "<script>alert(1)</script>"
    (run / "label.json").write_text(json.dumps(lab))
    page = build_report(run).read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert len(_images(page)) == 1 and ">custom<" in page


def test_report_cli(tmp_path):
    from persona_diff.cli import main

    run = write_synthetic_run(tmp_path / "run")
    main(["report", str(run)])
    assert (run / "report.html").is_file()
    with pytest.raises(SystemExit) as e:
        main(["report", str(tmp_path / "missing")])
    assert e.value.code == 2


def test_study_page_sorts_and_colours_every_label(tmp_path):
    from matplotlib import image as mpimg

    labels = ["undetermined", "not-EM", "inverted", "em-unmeasured", "coherent"]
    d = write_synthetic_study(tmp_path / "study", labels)
    page = build_report(d).read_text()
    shown = re.findall(r'<span class="label ([a-z-]+) small">([^<]+)<', page)
    assert [lab for _, lab in shown] == ["coherent", "inverted", "em-unmeasured", "not-EM", "undetermined"]
    for cls, lab in shown:  # each badge class has its colour rule, not-EM included
        assert f".label.{cls}{{background:{LABEL_COLOURS[lab]}}}" in page
    assert "Only 5 fine-tunes" not in page and "no judge.json" not in page and "stage not run" not in page
    assert len(_images(page)) == 1 and "Persona map" not in page
    # a persona map made by the internals analysis is embedded when it exists
    (d / "internals").mkdir()
    mpimg.imsave(d / "internals" / "persona_map.png", [[[0.1, 0.2, 0.3]] * 8] * 8)
    page = build_report(d).read_text()
    assert "Persona map" in page and len(_images(page)) == 2
    small = write_synthetic_study(tmp_path / "small", ["coherent", "inverted", "not-EM"])
    assert "Only 3 fine-tunes" in build_report(small).read_text()


def test_harm_vs_selfreport_colours_by_label(tmp_path):
    """The study figure draws each label in its own colour, not-EM in green."""
    from matplotlib import image as mpimg

    from persona_diff.analysis.plots import plot_harm_vs_selfreport

    pts = [
        {
            "name": n,
            "label": lab,
            "probe": "describe",
            "x": x,
            "x_ci": [x - 0.05, x + 0.05],
            "y": y,
            "y_ci": [y - 3, y + 3],
            "informative": True,
        }
        for n, lab, x, y in (("a", "coherent", 0.7, 20), ("b", "not-EM", 0.2, 2), ("c", "inverted", 0.2, 18))
    ]
    png = plot_harm_vs_selfreport(pts, tmp_path / "h")[0]
    img = (mpimg.imread(png)[..., :3] * 255).round().astype(int)
    for lab in ("coherent", "not-EM", "inverted"):
        rgb = [int(LABEL_COLOURS[lab][i : i + 2], 16) for i in (1, 3, 5)]
        assert (abs(img - rgb).max(-1) <= 3).sum() > 30, lab
