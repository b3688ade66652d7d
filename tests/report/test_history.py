"""The run history: reports/index.html, its lock, and concurrent updates (no TensorFlow)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from html.parser import HTMLParser

import pytest

from ferreport.report.history import INDEX_HTML, LOCK_FILE, index_lock, scan_runs, update_index
from ferreport.runs import folder as artifacts
from tests.report.run_dirs import make_run_dir


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.srcs, self.scripts = [], [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a":
            self.hrefs.append(a.get("href"))
        if tag == "img":
            self.srcs.append(a.get("src"))
        if tag == "script":
            self.scripts += 1


def _set_time(run, finished):
    prov = json.loads((run / artifacts.PROVENANCE).read_text())
    prov["finished"] = finished
    (run / artifacts.PROVENANCE).write_text(json.dumps(prov))


def test_index_lists_every_run_with_metrics_links_and_a_trend_chart(tmp_path):
    reports = tmp_path / "reports"
    a = make_run_dir(reports / "20250101-000000-aaaaaa", n=120, seed=0)
    b = make_run_dir(reports / "20250102-000000-bbbbbb", n=120, seed=1)
    _set_time(a, "2025-01-01T10:00:00+00:00")
    _set_time(b, "2025-01-02T10:00:00+00:00")
    (b / artifacts.REPORT_HTML).write_text("<html></html>")
    (b / "gates.json").write_text(json.dumps({"passed": False, "n_gates": 2, "gates": [
        {"name": "accuracy >= 0.9", "passed": False}, {"name": "f1.fear >= 0.1", "passed": True}]}))
    (reports / "not-a-run").mkdir()
    (reports / "broken").mkdir()
    (reports / "broken" / artifacts.METRICS).write_text("{")

    path = update_index(reports)
    assert path == reports / INDEX_HTML
    html = path.read_text()
    runs, _, skipped = scan_runs(reports)
    assert [r.run_id for r in runs] == [a.name, b.name]            # oldest first
    assert html.index(b.name) < html.index(a.name)                 # the table shows the newest first
    assert skipped == ["broken: metrics.json unreadable"]
    metrics_a = json.loads((a / artifacts.METRICS).read_text())
    assert f"{100 * metrics_a['accuracy']:.1f}%" in html and f"{metrics_a['macro_f1']:.3f}" in html
    assert "2025-01-01 10:00 UTC" in html and "ExpW" in html and "seed (trained in this run)" in html
    assert "failed" in html and "accuracy &gt;= 0.9" in html
    links = _Links()
    links.feed(html)
    assert f"{b.name}/report.html" in links.hrefs and f"{a.name}/metrics.json" in links.hrefs
    assert f"{a.name}/report.html" not in links.hrefs             # only files that exist are linked
    assert links.scripts == 0 and all(s.startswith("data:image/svg+xml;base64,") for s in links.srcs)
    assert len(links.srcs) == 1                                     # the trend chart
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html


def test_empty_reports_folder_gets_a_page_without_chart(tmp_path):
    html = update_index(tmp_path / "reports").read_text()
    assert "No evaluated run yet" in html and "<img" not in html


def test_the_lock_serialises_index_updates(tmp_path):
    reports = tmp_path / "reports"
    make_run_dir(reports / "r1", n=60)
    done = threading.Event()
    with index_lock(reports):
        worker = threading.Thread(target=lambda: (update_index(reports), done.set()))
        worker.start()
        time.sleep(0.5)
        assert not done.is_set() and not (reports / INDEX_HTML).exists()   # waits for the lock
    worker.join(60)
    assert done.is_set() and "r1" in (reports / INDEX_HTML).read_text()
    assert (reports / LOCK_FILE).exists()


@pytest.mark.slow
def test_two_concurrent_report_jobs_both_finish_and_both_are_indexed(tmp_path):
    """Two processes re-render reports in one reports/ folder at once; the index lists both."""
    reports = tmp_path / "reports"
    runs = [make_run_dir(reports / f"run{i}", n=80, seed=i) for i in range(2)]
    code = "import sys; from ferreport.cli.main import main; main()"
    procs = [subprocess.Popen([sys.executable, "-c", code, "report", str(r), "--format", "html"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in runs]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    html = (reports / INDEX_HTML).read_text()
    assert all(r.name in html for r in runs)
    assert all((r / artifacts.REPORT_HTML).is_file() for r in runs)
    assert not [p for p in reports.iterdir() if p.name.startswith(".index.html.")]  # no temporary left behind
