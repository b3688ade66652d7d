"""The "Labels to check" section and the saliency overlays of the evaluation report (no TensorFlow)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from ferreport.evaluation.saliency import write_saliency
from ferreport.evaluation.stored_run import load_run
from ferreport.report import build_report_context, render_html
from ferreport.report.context import ThumbnailLimits
from ferreport.runs import folder as artifacts
from ferreport.runs.folder import LABEL_ISSUES
from tests.report.run_dirs import make_run_dir

#: What a report with saliency and labels to check may weigh (the synthetic run's 300 faces fill every grid).
MAX_HTML_BYTES = 2_500_000
MAX_PDF_BYTES = 3_000_000


def with_saliency(run, seed: int = 0):
    """saliency.npz for every pooled face: random 8x8 maps (the report only draws them)."""
    with np.load(run / artifacts.FACES_POOL) as npz:
        rows = npz["rows"]
    rng = np.random.default_rng(seed)
    write_saliency(run, rows, rng.random((len(rows), 8, 8)),
                   {"available": True, "method": "grad-cam", "layer": "conv<b>4</b>", "faces": len(rows),
                    "seconds": 0.5, "map_size": [8, 8], "target": "log-probability of the predicted class"})
    return run


def section(ctx, sid):
    return next(s for s in ctx.sections if s.id == sid)


def test_the_csv_rows_are_what_the_report_shows(tmp_path):
    from ferreport.evaluation.label_noise import write_label_issue_rows
    from ferreport.runs.folder import RunFolder

    run = make_run_dir(tmp_path / "run", n=400)
    shown_rows = write_label_issue_rows(RunFolder(run).read_predictions(), run)
    csv = pd.read_csv(run / LABEL_ISSUES, dtype={"source": str, "face_id": str}, keep_default_na=False)
    ctx = build_report_context(load_run(run))
    d = section(ctx, "label-issues").data
    assert d["available"] and d["n_flagged"] == len(csv) > 0 and d["csv"] == LABEL_ISSUES
    grid = [(g["source"], g["face_id"], g["given"], g["suggested"], round(g["score"], 4)) for g in d["grid"]]
    head = [tuple(r) for r in csv.head(len(grid)).itertuples(index=False)]
    assert grid == [(s, f, gv, sg, round(float(sc), 4)) for s, f, gv, sg, sc in head]
    assert len(grid) == min(len(csv), ThumbnailLimits().label_issues) == len(shown_rows)
    html = render_html(ctx)
    assert "Labels to check" in html and "Estimated label noise per class" in html
    for g in d["grid"][:5]:
        assert f"{g['given']}</span> → <span class=\"s\">{g['suggested']}</span>" in html


def test_labels_to_check_without_labels_says_why(tmp_path):
    run = make_run_dir(tmp_path / "run", n=120, labelled=False)
    html = render_html(build_report_context(load_run(run)))
    assert "No labels to check: needs at least 10 labelled faces" in html


def test_overlays_sit_beside_the_faces_with_a_css_toggle_and_no_script(tmp_path):
    run = with_saliency(make_run_dir(tmp_path / "run", n=300))
    html = render_html(build_report_context(load_run(run)))
    assert "<script" not in html
    assert html.count('type="checkbox" class="sal-toggle"') == 3      # pairs, faces, labels to check
    assert ".sal-toggle:checked ~ * .thumb .sal" in html
    assert html.count('class="sal"') >= 50
    assert "conv&lt;b&gt;4&lt;/b&gt;" in html and "conv<b>4" not in html  # the layer name is escaped


def test_size_limits_hold_for_every_thumbnail_and_the_page(tmp_path):
    """Every face and overlay data URI <= ThumbnailLimits.max_uri_bytes; the page <= MAX_HTML_BYTES."""
    limits = ThumbnailLimits()
    run = with_saliency(make_run_dir(tmp_path / "run", n=300, drawn=True))
    from ferreport.evaluation.label_noise import write_label_issue_rows
    from ferreport.runs.folder import RunFolder

    write_label_issue_rows(RunFolder(run).read_predictions(), run)
    html = render_html(build_report_context(load_run(run)))
    uris = re.findall(r'src="(data:image/jpeg;base64,[^"]+)"', html)
    assert len(uris) > 100
    assert max(map(len, uris)) <= limits.max_uri_bytes
    assert len(html.encode()) <= MAX_HTML_BYTES


def test_a_noisy_face_at_high_quality_is_re_encoded_within_the_limit():
    from ferreport.report import plots

    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    heat = np.random.default_rng(1).integers(0, 256, (8, 8), dtype=np.uint8)
    assert len(plots.thumbnail_data_uri(noise, quality=95)) > 12_000          # what the limit is for
    assert len(plots.thumbnail_data_uri(noise, quality=95, max_bytes=12_000)) <= 12_000
    assert len(plots.saliency_overlay_data_uri(noise, heat, quality=95, max_bytes=12_000)) <= 12_000
    with pytest.raises(ValueError):
        plots.saliency_overlay_data_uri(noise, heat.astype(np.float32))


@pytest.mark.slow
def test_the_pdf_prints_faces_and_overlays_side_by_side_within_its_size_limit(tmp_path):
    from ferreport.report import write_report

    run = with_saliency(make_run_dir(tmp_path / "run", n=300, drawn=True))
    paths = write_report(run, ("pdf",))
    pdf = paths["pdf"].read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) <= MAX_PDF_BYTES
    bare = make_run_dir(tmp_path / "bare", n=300, drawn=True)
    plain = write_report(bare, ("pdf",))["pdf"].read_bytes()
    # every shown face also prints its overlay: about twice the JPEGs
    assert pdf.count(b"/DCTDecode") >= 1.6 * plain.count(b"/DCTDecode")
