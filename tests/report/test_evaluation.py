"""The evaluation report: run directory -> context -> HTML / PDF (real Jinja2, WeasyPrint and pypdf)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from ferreport.errors import UsageError
from ferreport.runs import folder as artifacts
from tests.report.run_dirs import make_run_dir

# --------------------------------------------------------------------------- HTML inspection


class _Scan(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.h2: list[str] = []
        self.styles: list[str] = []
        self._in_h2 = False
        self._in_style = False
        self._buf: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if "src" in a:
            self.srcs.append(a["src"] or "")
        if "href" in a:
            self.hrefs.append(a["href"] or "")
        if "style" in a:
            self.styles.append(a["style"] or "")
        if tag == "h2":
            self._in_h2, self._buf = True, []
        if tag == "style":
            self._in_style = True

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False
            self.h2.append(re.sub(r"^\d+\s*", "", " ".join("".join(self._buf).split())))
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_h2:
            self._buf.append(data)
        if self._in_style:
            self.styles.append(data)


def _scan(html: str) -> _Scan:
    s = _Scan()
    s.feed(html)
    s.close()
    return s


SECTION_TITLES = ("Overview", "Data", "Training curves", "Confusion matrix", "Per-class metrics",
                  "Most-confused pairs", "Calibration", "Example faces", "Provenance")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One run directory rendered once to HTML (shared across tests)."""
    from ferreport.report import write_report

    run = make_run_dir(tmp_path_factory.mktemp("run") / "run-1", drawn=True)
    paths = write_report(run, ("html",))
    return run, paths


@pytest.fixture(scope="module")
def printed(rendered):
    """The same run printed to PDF too (PDF printing is the slow part)."""
    from ferreport.report import write_report

    run, _ = rendered
    return run, write_report(run, ("html", "pdf"))


# --------------------------------------------------------------------------- tests


def test_html_is_self_contained_escaped_and_complete(rendered):
    run, paths = rendered
    html = paths["html"].read_text(encoding="utf-8")
    scan = _scan(html)
    for title in SECTION_TITLES:
        assert title in scan.h2, title
    assert "script" not in scan.tags
    assert scan.srcs and all(s.startswith("data:") for s in scan.srcs)
    assert sum(s.startswith("data:image/jpeg") for s in scan.srcs) >= 20  # face thumbnails
    assert all(h.startswith("#") for h in scan.hrefs)
    for css in scan.styles:
        for url in re.findall(r"url\(\s*['\"]?([^'\")]*)", css):
            assert url.startswith("data:"), url
    lowered = html.lower()
    assert "http://" not in lowered and "https://" not in lowered
    assert not re.search(r"""(src|href)\s*=\s*["']?//""", lowered)
    # hostile file name and JSON values are escaped, never markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;co.jpg" in html
    assert "<script>alert" not in html
    assert "&lt;b&gt;odd&lt;/b&gt; reason" in html
    assert "data/expw &amp; co" in html
    # no warning by default except notes; bootstrap statement is present
    assert "200 resamples" in html and "seed 0" in html
    assert len(html.encode("utf-8")) < 5_000_000


@pytest.mark.slow
def test_pdf_has_pages_titles_and_images(printed):
    from pypdf import PdfReader

    run, paths = printed
    reader = PdfReader(str(paths["pdf"]))
    assert len(reader.pages) >= 2
    text = " ".join(page.extract_text() or "" for page in reader.pages)
    flat = " ".join(text.split())
    for title in SECTION_TITLES:
        assert title in flat, title
    assert "Page 1 of" in flat
    images = 0
    for page in reader.pages:
        res = page.get("/Resources")
        xobj = res.get_object().get("/XObject") if res is not None else None
        if xobj is None:
            continue
        for ref in xobj.get_object().values():
            obj = ref.get_object()
            if obj.get("/Subtype") == "/Image":
                images += 1
            elif obj.get("/Subtype") == "/Form":
                images += 1  # SVG figures are drawn as form XObjects
    assert images >= 20


@pytest.mark.slow
def test_writes_are_atomic_and_leave_no_temporaries(printed):
    run, paths = printed
    assert paths["html"] == run / artifacts.REPORT_HTML and paths["pdf"] == run / artifacts.REPORT_PDF
    assert paths["pdf"].read_bytes().startswith(b"%PDF")
    assert not [p.name for p in run.iterdir() if ".part" in p.name or p.name.startswith(".")]


def test_failed_render_leaves_no_file(tmp_path, monkeypatch):
    import ferreport.report.render as render
    from ferreport.report import write_report

    run = make_run_dir(tmp_path / "run", n=60, history=False)

    def boom(html):
        raise RuntimeError("printer on fire")

    monkeypatch.setattr(render, "render_pdf", boom)
    with pytest.raises(RuntimeError):
        write_report(run, ("pdf",))
    assert not (run / artifacts.REPORT_PDF).exists()
    assert not [p.name for p in run.iterdir() if ".part" in p.name]


def test_empty_and_tiny_predictions_render(tmp_path):
    from ferreport.evaluation.label_noise import write_label_issue_rows
    from ferreport.evaluation.metrics import metrics_from_predictions
    from ferreport.evaluation.stored_run import load_run
    from ferreport.report import build_report_context, render_html
    from ferreport.runs.folder import RunFolder

    def evaluated(frame):  # predictions.csv with the metrics and labels to check an evaluation stores beside it
        frame.to_csv(run / artifacts.PREDICTIONS, index=False)
        stored = RunFolder(run).read_predictions()
        RunFolder(run).write_metrics(metrics_from_predictions(stored, n_resamples=20).to_dict())
        write_label_issue_rows(stored, run)

    run = make_run_dir(tmp_path / "run", n=60, history=False)
    df = pd.read_csv(run / artifacts.PREDICTIONS, keep_default_na=False)
    (run / artifacts.FACES_POOL).unlink()
    evaluated(df.iloc[:0])
    html = render_html(build_report_context(load_run(run)))
    assert "No face has a true label" in html
    evaluated(df.iloc[:1])
    html = render_html(build_report_context(load_run(run)))
    assert "Per-class metrics" in html


def test_missing_optional_artefacts_are_explained(tmp_path):
    from ferreport.evaluation.stored_run import load_run
    from ferreport.report import build_report_context, render_html

    run = make_run_dir(tmp_path / "run", n=120, history=False, summary=False)
    (run / artifacts.FACES_POOL).unlink()
    (run / artifacts.CONFIG).unlink()
    ctx = build_report_context(load_run(run))
    html = render_html(ctx)
    assert "Evaluated without a training history" in html
    assert "Data summary unavailable" in html
    assert "no face pool" in html
    assert "config.json" in html and "Not present in the run directory" in html


def test_warnings_are_shown_first(tmp_path):
    from ferreport.evaluation.stored_run import load_run
    from ferreport.report import build_report_context, render_html

    run = make_run_dir(tmp_path / "run", n=120, metrics_extra={
        "collapse": {"class": "happy", "share": 0.97},
        "warnings": ["val loss rose for 3 epochs <early stop>", {"title": "Small test split", "message": "n=120"}],
    })
    ctx = build_report_context(load_run(run))
    titles = [w.title for w in ctx.warnings]
    assert titles[0] == "Prediction collapse" and "Small test split" in titles
    html = render_html(ctx)
    assert html.index("Prediction collapse") < html.index('id="overview"')
    assert "&lt;early stop&gt;" in html


def test_unlabelled_predictions_render(tmp_path):
    from ferreport.evaluation.stored_run import load_run
    from ferreport.report import build_report_context, render_html

    run = make_run_dir(tmp_path / "run", n=80, labelled=False, history=False)
    ctx = build_report_context(load_run(run))
    html = render_html(ctx)
    assert "No face has a true label" in html
    assert "Most confident predictions, per predicted class" in html
    assert ctx.n == 0 and ctx.n_unlabelled == 80


def test_rendering_is_deterministic(tmp_path):
    from ferreport.evaluation.stored_run import load_run
    from ferreport.report import build_report_context, render_html

    run = make_run_dir(tmp_path / "run", n=100)
    a = render_html(build_report_context(load_run(run)))
    b = render_html(build_report_context(load_run(run)))
    assert a == b


def test_headline_numbers_match_metrics(tmp_path):
    from ferreport.evaluation.metrics import metrics_from_predictions
    from ferreport.evaluation.stored_run import load_run
    from ferreport.report import build_report_context

    run = make_run_dir(tmp_path / "run", n=150)
    art = load_run(run)
    ctx = build_report_context(art)
    bundle = metrics_from_predictions(art.predictions, n_resamples=200, seed=0)  # what make_run_dir stored
    head = {h.key: h for h in ctx.headline}
    assert head["accuracy"].value == pytest.approx(bundle.classification.accuracy)
    assert head["macro_f1"].low == pytest.approx(bundle.ci["macro_f1"].low)
    assert head["n"].value == 150
    assert [s.number for s in ctx.sections] == list(range(1, 11))


def test_usage_errors(tmp_path):
    from ferreport.report import write_report

    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError):
        write_report(tmp_path / "empty", ("docx",))


def test_report_needs_neither_tensorflow_nor_pyplot(tmp_path):
    import subprocess
    import sys

    run = make_run_dir(tmp_path / "run", n=60, history=False)
    code = (
        "import sys\n"
        "from ferreport.report import write_report\n"
        f"write_report({str(run)!r}, ('html',))\n"
        "bad = [m for m in ('tensorflow', 'keras', 'matplotlib.pyplot') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(Path(__file__).resolve().parents[2]))
    assert (run / artifacts.REPORT_HTML).is_file()


def test_training_section_names_the_monitor_that_chose_the_best_epoch(tmp_path):
    from ferreport.evaluation.stored_run import load_run
    from ferreport.report import build_report_context, render_html

    run = make_run_dir(tmp_path / "run", n=120)
    h = pd.read_csv(run / artifacts.HISTORY)
    h.insert(5, "val_macro_f1", [0.21, 0.30, 0.27, 0.25, 0.36])  # best by F1: epoch 5; by loss: epoch 4
    h.to_csv(run / artifacts.HISTORY, index=False)
    cfg = json.loads((run / artifacts.CONFIG).read_text())
    (run / artifacts.CONFIG).write_text(json.dumps({**cfg, "monitor": "val_macro_f1"}))
    html = render_html(build_report_context(load_run(run)))
    assert "Best epoch (highest validation macro-F1)" in html and "lowest validation loss" not in html
    assert "<th>Validation macro-F1</th>" in html and "Validation macro-F1 at best epoch" in html
    assert re.search(r'<tr class="best"><td>5</td>', html)
    (run / artifacts.CONFIG).write_text(json.dumps(cfg))  # older runs: no monitor recorded -> val_loss
    html = render_html(build_report_context(load_run(run)))
    assert "Best epoch (lowest validation loss)" in html and re.search(r'<tr class="best"><td>4</td>', html)


def test_the_report_shows_the_stored_figures_and_recomputes_none(tmp_path):
    """Compute once, render what is stored: an edited metrics.json is what the page shows."""
    import shutil

    from ferreport.evaluation.stored_run import load_run
    from ferreport.report import build_report_context, render_html

    run = make_run_dir(tmp_path / "run", n=150)
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    doc = json.loads((copy / artifacts.METRICS).read_text())
    assert abs(doc["accuracy"] - 0.777) > 0.01 and abs(doc["per_class"]["happy"]["f1"] - 0.0123) > 0.01
    doc["accuracy"], doc["ci"]["accuracy"] = 0.777, [0.701, 0.852]
    doc["per_class"]["happy"]["f1"] = 0.0123
    (copy / artifacts.METRICS).write_text(json.dumps(doc))
    ctx = build_report_context(load_run(copy))
    head = {h.key: h for h in ctx.headline}
    assert (head["accuracy"].value, head["accuracy"].low, head["accuracy"].high) == (0.777, 0.701, 0.852)
    html = render_html(ctx)
    assert '<div class="tile-value">77.7%</div>' in html and "70.1%–85.2%" in html
    assert "<td><strong>0.012</strong> " in html
    assert "77.7%" not in render_html(build_report_context(load_run(run)))


def test_a_report_without_stored_metrics_names_the_file_and_the_fix(tmp_path):
    from click.testing import CliRunner

    from ferreport.cli.main import main

    run = make_run_dir(tmp_path / "run", n=60)
    (run / artifacts.METRICS).write_text("{ not json")
    r = CliRunner().invoke(main, ["report", str(run), "--format", "html"])
    assert r.exit_code == 3 and f"{run / artifacts.METRICS}: is not valid JSON" in r.stderr, r.stderr
    assert "ferreport evaluate" in r.stderr and not (run / artifacts.REPORT_HTML).exists()
