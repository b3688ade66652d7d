"""The report: run directory -> context -> HTML / PDF (real Jinja2, WeasyPrint and pypdf)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ferreport import artifacts
from ferreport.constants import CLASS_NAMES
from ferreport.errors import UsageError

EVIL_SOURCE = "<script>alert(1)</script>&co.jpg"
#: Likely confusions of a facial-expression model (true -> predicted).
_CONFUSE = {0: (1, 4), 1: (0, 4), 2: (5, 4), 3: (6,), 4: (6, 2), 5: (2, 3), 6: (4, 3)}


# --------------------------------------------------------------------------- fixture builder


def _faces(rng: np.random.Generator, labels: np.ndarray, drawn: bool = True) -> np.ndarray:
    """64x64 RGB faces: the sample generator's drawings (slower) when asked, else gradients."""
    try:
        if not drawn:
            raise ImportError
        import cv2

        from ferreport.sample import draw_face

        return np.stack([cv2.cvtColor(draw_face(rng, int(max(lab, 0)), 64), cv2.COLOR_BGR2RGB) for lab in labels])
    except ImportError:
        yy, xx = np.mgrid[0:64, 0:64]
        out = np.empty((len(labels), 64, 64, 3), np.uint8)
        for i, lab in enumerate(labels):
            out[i, ..., 0] = (xx * 4 + 30 * lab) % 256
            out[i, ..., 1] = (yy * 4) % 256
            out[i, ..., 2] = rng.integers(0, 256)
        return out


def synthetic_predictions(n: int, seed: int = 0, *, labelled: bool = True) -> pd.DataFrame:
    """A predictions.csv frame with a plausible confusion (about 65% accuracy)."""
    rng = np.random.default_rng(seed)
    k = len(CLASS_NAMES)
    prior = np.array([0.08, 0.03, 0.03, 0.35, 0.12, 0.09, 0.30])
    t = rng.choice(k, size=n, p=prior)
    pred = t.copy()
    wrong = rng.random(n) < 0.35
    for i in np.flatnonzero(wrong):
        choices = _CONFUSE[int(t[i])]
        pred[i] = choices[rng.integers(len(choices))] if rng.random() < 0.7 else rng.integers(k)
    logits = rng.normal(0, 1.0, size=(n, k))
    logits[np.arange(n), pred] += rng.gamma(2.0, 1.2, size=n) + 0.5
    logits[np.arange(n), t] += 0.8 * wrong
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    proba = np.round(proba, 6)
    pred = proba.argmax(axis=1)
    names = np.asarray(CLASS_NAMES, dtype=object)
    df = pd.DataFrame({
        "source": [f"img_{i // 2:05d}.jpg" for i in range(n)],
        "face_id": [str(i % 2) for i in range(n)],
        "true_label": names[t] if labelled else [""] * n,
        "pred_label": names[pred],
        "confidence": proba.max(axis=1),
    })
    for j, col in enumerate(artifacts.PROBA_COLUMNS):
        df[col] = proba[:, j]
    return df


def make_run_dir(root: Path, n: int = 300, seed: int = 0, *, history: bool = True, summary: bool = True,
                 labelled: bool = True, metrics_extra: dict | None = None, drawn: bool = False) -> Path:
    """A complete run directory as the pipeline writes it, without TensorFlow."""
    from ferreport.metrics import metrics_from_predictions
    from ferreport.report import select_pool_rows

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1)
    df = synthetic_predictions(n, seed, labelled=labelled)
    # The most confident mistake comes from a file with a hostile name.
    evil = int(np.flatnonzero(df["true_label"] != df["pred_label"])[0]) if labelled else 0
    df.loc[evil, "source"] = EVIL_SOURCE
    pvec = np.full(len(CLASS_NAMES), 0.001)
    j = CLASS_NAMES.index(df.loc[evil, "pred_label"])
    pvec[j] = 1 - 0.001 * (len(CLASS_NAMES) - 1)
    for c, col in enumerate(artifacts.PROBA_COLUMNS):
        df.loc[evil, col] = round(float(pvec[c]), 6)
    df.loc[evil, "confidence"] = round(float(pvec[j]), 6)
    df.to_csv(root / artifacts.PREDICTIONS, index=False, float_format="%.6f")

    rows = select_pool_rows(df)
    t_ids = np.array([CLASS_NAMES.index(x) if x else -1 for x in df["true_label"]])
    np.savez_compressed(root / artifacts.FACES_POOL, rows=rows, faces=_faces(rng, t_ids[rows], drawn))

    metrics = metrics_from_predictions(df, n_resamples=200, seed=0).to_dict()
    metrics.update(metrics_extra or {})
    (root / artifacts.METRICS).write_text(json.dumps(metrics, indent=2))
    if history:
        e = np.arange(1, 6)
        pd.DataFrame({
            "epoch": e, "loss": 1.9 - 0.22 * e, "accuracy": 0.30 + 0.07 * e,
            "val_loss": [1.70, 1.42, 1.31, 1.29, 1.33], "val_accuracy": [0.38, 0.49, 0.55, 0.57, 0.56],
            "learning_rate": [1e-3, 1e-3, 1e-3, 5e-4, 5e-4], "seconds": [41.2, 39.8, 40.1, 40.5, 39.9],
        }).to_csv(root / artifacts.HISTORY, index=False)
    if summary:
        counts = {c: int(v) for c, v in zip(CLASS_NAMES, (3671, 3995, 1088, 30537, 10559, 7060, 34883))}
        (root / artifacts.DATA_SUMMARY).write_text(json.dumps({
            "dataset": "ExpW",
            "faces_read": 91793,
            "balance": "smote",
            "splits": {
                "train": {c: int(v * 0.7) for c, v in counts.items()},
                "val": {c: int(v * 0.15) for c, v in counts.items()},
                "test": {c: int(v * 0.15) for c, v in counts.items()},
            },
            "train_balanced": {c: int(max(counts.values()) * 0.7) for c in counts},
            "skipped": {"unreadable image": 12, "face box outside image": 3, "<b>odd</b> reason": 1},
        }))
    (root / artifacts.PROVENANCE).write_text(json.dumps({
        "seed": 0, "data_fingerprint": "sha256:" + "ab" * 32, "model_sha256": "cd" * 32,
        "command_line": f"ferreport run --data 'data/expw & co' --out {root.name}",
        "started": "2025-01-02T03:04:05+00:00", "finished": "2025-01-02T03:34:05+00:00",
        "packages": {"numpy": np.__version__, "pandas": pd.__version__, "weasyprint": "x"},
        "platform": "Linux x86_64",
    }))
    (root / artifacts.CONFIG).write_text(json.dumps({
        "data": "data/expw", "epochs": 5, "batch_size": 32, "balance": "smote", "seed": 0, "arch": "seed",
        "formats": ["html", "pdf"],
    }))
    return root


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
    paths = write_report(run, ("html",), n_resamples=200, seed=0)
    return run, paths


@pytest.fixture(scope="module")
def printed(rendered):
    """The same run printed to PDF too (PDF printing is the slow part)."""
    from ferreport.report import write_report

    run, _ = rendered
    return run, write_report(run, ("html", "pdf"), n_resamples=200, seed=0)


# --------------------------------------------------------------------------- tests


def test_select_pool_rows_keeps_top_of_every_cell_and_least_confident():
    from ferreport.report import select_pool_rows

    df = synthetic_predictions(400, seed=5)
    rows = select_pool_rows(df, per_cell=3)
    assert rows.dtype == np.int64 and np.all(np.diff(rows) > 0)
    conf = df["confidence"].to_numpy()
    chosen = set(rows.tolist())
    for (_, _), g in df.groupby(["true_label", "pred_label"]):
        top = g.assign(r=g.index).sort_values(["confidence", "r"], ascending=[False, True]).index[:3]
        assert set(top) <= chosen
    least = np.lexsort((np.arange(len(df)), conf))[:24]
    assert set(least.tolist()) <= chosen
    assert len(rows) <= 49 * 3 + 48


def test_select_pool_rows_groups_unlabelled_rows_by_prediction():
    from ferreport.report import select_pool_rows

    df = synthetic_predictions(200, seed=2, labelled=False)
    rows = set(select_pool_rows(df, per_cell=2).tolist())
    for _, g in df.groupby("pred_label"):
        assert set(g.sort_values("confidence", ascending=False, kind="stable").index[:2]) <= rows


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
    import ferreport.report as report

    run = make_run_dir(tmp_path / "run", n=60, history=False)

    def boom(html):
        raise RuntimeError("printer on fire")

    monkeypatch.setattr(report, "render_pdf", boom)
    with pytest.raises(RuntimeError):
        report.write_report(run, ("pdf",), n_resamples=20)
    assert not (run / artifacts.REPORT_PDF).exists()
    assert not [p.name for p in run.iterdir() if ".part" in p.name]


def test_empty_and_tiny_predictions_render(tmp_path):
    from ferreport.report import build_report_context, load_run, render_html

    run = make_run_dir(tmp_path / "run", n=60, history=False)
    df = pd.read_csv(run / artifacts.PREDICTIONS, keep_default_na=False)
    (run / artifacts.FACES_POOL).unlink()
    df.iloc[:0].to_csv(run / artifacts.PREDICTIONS, index=False)
    html = render_html(build_report_context(load_run(run), n_resamples=20))
    assert "No face has a true label" in html
    df.iloc[:1].to_csv(run / artifacts.PREDICTIONS, index=False)
    html = render_html(build_report_context(load_run(run), n_resamples=20))
    assert "Per-class metrics" in html


def test_url_fetcher_serves_data_urls_and_refuses_the_network():
    from ferreport.report import URLRefused, data_only_url_fetcher

    fetch = data_only_url_fetcher()
    for url in ("http://example.com/x.png", "https://example.com/font.woff", "file:///etc/passwd", "//example.com/a"):
        with pytest.raises(URLRefused):
            fetch(url)
    resp = fetch("data:text/plain;base64,aGVsbG8=")
    data = resp.read() if hasattr(resp, "read") else resp.get("string")
    assert data == b"hello"


@pytest.mark.slow
def test_pdf_renderer_ignores_external_references():
    from ferreport.report import render_pdf

    pdf = render_pdf('<p>x</p><img src="http://127.0.0.1:9/x.png">'
                     '<div style="background: url(https://127.0.0.1:9/y.png)">y</div>')
    assert pdf.startswith(b"%PDF")


def test_missing_optional_artefacts_are_explained(tmp_path):
    from ferreport.report import build_report_context, load_run, render_html

    run = make_run_dir(tmp_path / "run", n=120, history=False, summary=False)
    (run / artifacts.FACES_POOL).unlink()
    (run / artifacts.CONFIG).unlink()
    ctx = build_report_context(load_run(run), n_resamples=50)
    html = render_html(ctx)
    assert "Evaluated without a training history" in html
    assert "Data summary unavailable" in html
    assert "no face pool" in html
    assert "config.json" in html and "Not present in the run directory" in html


def test_warnings_are_shown_first(tmp_path):
    from ferreport.report import build_report_context, load_run, render_html

    run = make_run_dir(tmp_path / "run", n=120, metrics_extra={
        "collapse": {"class": "happy", "share": 0.97},
        "warnings": ["val loss rose for 3 epochs <early stop>", {"title": "Small test split", "message": "n=120"}],
    })
    ctx = build_report_context(load_run(run), n_resamples=50)
    titles = [w.title for w in ctx.warnings]
    assert titles[0] == "Prediction collapse" and "Small test split" in titles
    html = render_html(ctx)
    assert html.index("Prediction collapse") < html.index('id="overview"')
    assert "&lt;early stop&gt;" in html


def test_unlabelled_predictions_render(tmp_path):
    from ferreport.report import build_report_context, load_run, render_html

    run = make_run_dir(tmp_path / "run", n=80, labelled=False, history=False)
    ctx = build_report_context(load_run(run), n_resamples=50)
    html = render_html(ctx)
    assert "No face has a true label" in html
    assert "Most confident predictions, per predicted class" in html
    assert ctx.n == 0 and ctx.n_unlabelled == 80


def test_rendering_is_deterministic(tmp_path):
    from ferreport.report import build_report_context, load_run, render_html

    run = make_run_dir(tmp_path / "run", n=100)
    a = render_html(build_report_context(load_run(run), n_resamples=50, seed=3))
    b = render_html(build_report_context(load_run(run), n_resamples=50, seed=3))
    assert a == b


def test_headline_numbers_match_metrics(tmp_path):
    from ferreport.metrics import metrics_from_predictions
    from ferreport.report import build_report_context, load_run

    run = make_run_dir(tmp_path / "run", n=150)
    art = load_run(run)
    ctx = build_report_context(art, n_resamples=100, seed=1)
    bundle = metrics_from_predictions(art.predictions, n_resamples=100, seed=1)
    head = {h.key: h for h in ctx.headline}
    assert head["accuracy"].value == pytest.approx(bundle.classification.accuracy)
    assert head["macro_f1"].low == pytest.approx(bundle.ci["macro_f1"].low)
    assert head["n"].value == 150
    assert [s.number for s in ctx.sections] == list(range(1, 10))


def test_usage_errors(tmp_path):
    from ferreport.report import load_run, write_report

    with pytest.raises(UsageError):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError):
        load_run(tmp_path / "empty")
    with pytest.raises(UsageError):
        write_report(tmp_path / "empty", ("docx",))


def test_report_needs_neither_tensorflow_nor_pyplot(tmp_path):
    import subprocess
    import sys

    run = make_run_dir(tmp_path / "run", n=60, history=False)
    code = (
        "import sys\n"
        "from ferreport.report import write_report\n"
        f"write_report({str(run)!r}, ('html',), n_resamples=20)\n"
        "bad = [m for m in ('tensorflow', 'keras', 'matplotlib.pyplot') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(Path(__file__).resolve().parent.parent))
    assert (run / artifacts.REPORT_HTML).is_file()


def test_templates_dir_prefers_environment(tmp_path, monkeypatch):
    from ferreport.report import templates_dir

    default = templates_dir()
    assert (default / "base.html.j2").is_file()
    assert (default / "sections").is_dir()
    (tmp_path / "base.html.j2").write_text("x")
    monkeypatch.setenv("FERREPORT_TEMPLATES", str(tmp_path))
    assert templates_dir() == tmp_path
    monkeypatch.setenv("FERREPORT_TEMPLATES", str(tmp_path / "missing"))
    assert templates_dir() == default


def test_templates_autoescape_html_j2():
    from ferreport.report import _environment

    env = _environment()
    assert env.autoescape("sections/data.html.j2") is True
    assert env.from_string("{{ x }}").render(x="<i>") == "&lt;i&gt;"


def test_training_section_names_the_monitor_that_chose_the_best_epoch(tmp_path):
    from ferreport.report import build_report_context, load_run, render_html

    run = make_run_dir(tmp_path / "run", n=120)
    h = pd.read_csv(run / artifacts.HISTORY)
    h.insert(5, "val_macro_f1", [0.21, 0.30, 0.27, 0.25, 0.36])  # best by F1: epoch 5; by loss: epoch 4
    h.to_csv(run / artifacts.HISTORY, index=False)
    cfg = json.loads((run / artifacts.CONFIG).read_text())
    (run / artifacts.CONFIG).write_text(json.dumps({**cfg, "monitor": "val_macro_f1"}))
    html = render_html(build_report_context(load_run(run), n_resamples=50))
    assert "Best epoch (highest validation macro-F1)" in html and "lowest validation loss" not in html
    assert "<th>val macro f1</th>" in html and "Validation macro-F1 at best epoch" in html
    assert re.search(r'<tr class="best"><td>5</td>', html)
    (run / artifacts.CONFIG).write_text(json.dumps(cfg))  # older runs: no monitor recorded -> val_loss
    html = render_html(build_report_context(load_run(run), n_resamples=50))
    assert "Best epoch (lowest validation loss)" in html and re.search(r'<tr class="best"><td>4</td>', html)
