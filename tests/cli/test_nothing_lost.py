"""Nothing of the user's is ever lost (real processes, real signals, real foreign folders).

--force replaces only what ferreport wrote; --out never lies in what is read; the history index
leaves an index.html it did not write alone; one writer per folder; under SIGINT or SIGTERM the
folder is the old one whole or the new one whole, reports included.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ferreport.cli.main import main
from ferreport.constants import CLASS_NAMES
from ferreport.datasets.sample import draw_face
from ferreport.runs import folder as artifacts
from tests.audit.folders import write_image

TIMEOUT = 240  # a hang guard for each child, not a timing assert


def _cli(*args, cwd: Path, **popen) -> subprocess.Popen:
    env = {**os.environ, "FERREPORT_NO_PROGRESS": "1"}
    return subprocess.Popen([sys.executable, "-m", "ferreport", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _run(*args, cwd: Path) -> subprocess.CompletedProcess:
    proc = _cli(*args, cwd=cwd)
    out, err = proc.communicate(timeout=TIMEOUT)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _tree(root: Path) -> dict[str, str]:
    """Every file below ``root`` by relative path -> SHA-256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A working folder with photos/ (labelled faces), two tiny real Keras models (a, b) in run folders."""
    from ferreport.models.model_file import keras

    root = tmp_path_factory.mktemp("nothing-lost")
    rng = np.random.default_rng(7)
    for label, name in enumerate(CLASS_NAMES):
        for i in range(6):
            write_image(root / "photos" / name / f"{name}_{i}.png", draw_face(rng, label, 64 + 4 * i))
    for seed, name in ((1, "a"), (2, "b")):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((64, 64, 3))
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 5, strides=4, activation="relu")(inputs))
        run = root / f"model-{name}"
        run.mkdir()
        keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(x)).save(run / artifacts.MODEL)
    return root


def _predict(work: Path, out: str, model: str = "a", *extra: str) -> list[str]:
    return ["predict", "photos", "--model", f"model-{model}/model.keras", "--out", out, "--faces", "whole",
            "--workers", "1", "--no-saliency", *extra]


def test_force_never_deletes_what_is_read(work, monkeypatch):
    monkeypatch.chdir(work)  # refused before any work: in-process, the same command line
    before = _tree(work / "photos")
    for out, how in (("photos", "is FOLDER"), ("photos/happy", "is inside FOLDER"), (".", "holds FOLDER"),
                     ("model-a", "holds --model")):
        res = CliRunner().invoke(main, [*_predict(work, out), "--force"])
        assert res.exit_code == 2, res.output
        assert f"{how}" in res.stderr and "never writes where it reads" in res.stderr, res.stderr
    assert _tree(work / "photos") == before and (work / "model-a" / "model.keras").is_file()


def test_force_replaces_only_a_folder_ferreport_wrote(work):
    thesis = work / "thesis"
    (thesis / "thesis").mkdir(parents=True)
    (thesis / "thesis" / "chapter1.tex").write_text("\\chapter{One}")
    (thesis / "photos.txt").write_text("the photos are elsewhere")
    before = _tree(thesis)
    res = _run(*_predict(work, "thesis"), "--force", cwd=work)
    assert res.returncode == 2 and "thesis: not written by ferreport" in res.stderr, res.stderr
    assert _tree(thesis) == before

    (work / "emptied").mkdir()
    first = _run(*_predict(work, "emptied", "a", "--format", "html"), cwd=work)  # an empty folder may be used
    assert first.returncode == 0, first.stderr
    assert json.loads((work / "emptied" / artifacts.MARKER).read_text())["kind"] == "audit"
    again = _run(*_predict(work, "emptied", "b", "--format", "html"), "--force", cwd=work)
    assert again.returncode == 0, again.stderr
    config = json.loads((work / "emptied" / artifacts.CONFIG).read_text())
    assert "model-b" in json.dumps(config) and "model-a" not in json.dumps(config)
    assert not [p for p in work.iterdir() if p.name.startswith(".emptied.")]  # no staging or lock left


def test_the_index_leaves_an_index_html_it_did_not_write_alone(work):
    reports = work / "shared-reports"
    reports.mkdir()
    (reports / "index.html").write_text("<html>my own page</html>")
    res = _run(*_predict(work, "shared-reports/audit", "a", "--format", "html"), cwd=work)
    assert res.returncode == 0, res.stderr
    assert (reports / "index.html").read_text() == "<html>my own page</html>"
    assert "index.html was not written by ferreport: left alone" in res.stderr
    assert "audit" in (reports / "ferreport-index.html").read_text()


def test_two_writers_of_one_folder_one_is_refused_and_nothing_mixes(work):
    first = _cli(*_predict(work, "shared", "a", "--format", "html"), cwd=work)
    time.sleep(0.5)
    second = _cli(*_predict(work, "shared", "b", "--format", "html"), cwd=work)
    results = {}
    for model, proc in (("a", first), ("b", second)):
        _, err = proc.communicate(timeout=TIMEOUT)
        results[model] = (proc.returncode, err, proc.pid)
    (winner,) = [m for m, (code, _, _) in results.items() if code == 0]  # whichever took the lock first
    (loser,) = [m for m in results if m != winner]
    code, err, _ = results[loser]
    assert code == 2, err
    assert f"shared: in use by PID {results[winner][2]}" in err or "already holds files" in err, err
    config = (work / "shared" / artifacts.CONFIG).read_text()
    provenance = (work / "shared" / artifacts.PROVENANCE).read_text()
    assert f"model-{winner}" in config and f"model-{winner}" in provenance
    assert f"model-{loser}" not in config + provenance


def _wait_for(predicate, proc: subprocess.Popen, limit: float = TIMEOUT) -> bool:
    """Poll until ``predicate()`` (True) or the child ends (False)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    raise AssertionError("the child neither reached the point nor ended")


def _staged(work: Path, name: str, file: str):
    return lambda: any(work.glob(f".{name}.replace-*/{name}/{file}"))


def _whole(folder: Path, model: str, formats: str) -> bool:
    """The audit folder is one run, complete: its config, provenance and the reports asked for, of ``model``."""
    names = {p.name for p in folder.iterdir()}
    config = (folder / artifacts.CONFIG).read_text()
    provenance = (folder / artifacts.PROVENANCE).read_text()
    pages = {artifacts.REPORT_HTML} | ({artifacts.REPORT_PDF} if "pdf" in formats else set())
    return ({artifacts.CONFIG, artifacts.PROVENANCE, artifacts.PREDICTIONS, *pages} <= names
            and f"model-{model}" in config and f"model-{model}" in provenance)


@pytest.fixture(scope="module")
def old_audit(work) -> Path:
    """An audit of photos/ with model a, complete (both reports): what each signal case starts from."""
    res = _run(*_predict(work, "old-audit", "a"), cwd=work)
    assert res.returncode == 0, res.stderr
    return work / "old-audit"


@pytest.mark.parametrize(("sig", "point", "formats"), [
    (signal.SIGTERM, artifacts.CONFIG, "html"),             # scanning: the staged folder has just begun
    (signal.SIGINT, artifacts.AUDIT_SUMMARY, "html"),       # scoring, after the scan
    (signal.SIGTERM, artifacts.PROVENANCE, "html,pdf"),     # the reports being rendered (PDF, then HTML)
    (signal.SIGINT, artifacts.REPORT_HTML, "html,pdf"),     # the reports written, the swap next
])
def test_a_signal_leaves_the_old_folder_whole_or_the_new_one(work, old_audit, sig, point, formats):
    name = f"sig-{sig.name}-{point}"
    shutil.copytree(old_audit, work / name)
    old = _tree(work / name)
    proc = _cli(*_predict(work, name, "b", "--format", formats), "--force", cwd=work)
    reached = _wait_for(_staged(work, name, point), proc)
    if reached:
        proc.send_signal(sig)
    proc.communicate(timeout=TIMEOUT)
    folder = work / name
    assert _tree(folder) == old or _whole(folder, "b", formats), (reached, proc.returncode, sorted(os.listdir(folder)))
    if _tree(folder) == old:
        assert proc.returncode != 0  # stopped, and it says so by its exit code
    if point == artifacts.CONFIG:  # SIGTERM kills at once: the next writer of the folder removes the leftovers
        again = _run(*_predict(work, name, "b", "--format", "html"), "--force", cwd=work)
        assert again.returncode == 0, again.stderr
        assert not [p for p in work.iterdir() if p.name.startswith(f".{name}.")]


def test_report_replaces_html_and_pdf_together_under_sigint(work, old_audit):
    pypdf = pytest.importorskip("pypdf")
    name = "rerender"
    shutil.copytree(old_audit, work / name)
    metrics = json.loads((work / name / artifacts.METRICS).read_text())
    metrics["accuracy"] = 0.777  # the new pages show 77.7%: old and new are told apart by content
    (work / name / artifacts.METRICS).write_text(json.dumps(metrics))
    for delay in (1.0, 3.0, 6.0):
        proc = _cli("report", name, "--format", "html,pdf", cwd=work)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=TIMEOUT)
        html_new = "77.7%" in (work / name / artifacts.REPORT_HTML).read_text(encoding="utf-8")
        pdf_text = "".join(page.extract_text() for page in pypdf.PdfReader(work / name / artifacts.REPORT_PDF).pages)
        pdf_new = "77.7%" in pdf_text
        assert html_new == pdf_new, (delay, proc.returncode)
        if html_new:
            break
    assert not [p for p in (work / name).iterdir() if ".part" in p.name]
