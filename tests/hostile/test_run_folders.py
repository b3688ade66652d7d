"""A shared run folder is untrusted: FIFOs, links to devices or outside files, deep JSON, huge
``.npy`` headers, NaN/Infinity and text where numbers belong. Required artefacts refused: exit 3
naming the file and the reason; optional ones: their section left out with a notice. Never a hang,
never exit 70, never the outside file's text in an output."""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ferreport.errors import DatasetError
from ferreport.evaluation.gates import load_baseline
from ferreport.report.history import scan_runs
from ferreport.runs import folder as names
from ferreport.runs.folder import RunFolder
from ferreport.runs.guard import MAX_JSON_DEPTH, ArtefactError, open_inside, parse_json
from tests.hostile.conftest import SECRET, ferreport, ferreport_many, outputs_text
from tests.report.run_dirs import make_run_dir


def deep_json(levels: int = 100_000) -> str:
    return '{"a": ' * levels + "1" + "}" * levels


def npz_claiming(elements: int, key: str = "faces") -> bytes:
    """An ``.npz`` whose ``key`` member's header declares ``elements`` uint8 (the data is a few bytes)."""
    header = {"descr": "|u1", "fortran_order": False, "shape": (elements,)}
    body = io.BytesIO()
    np.lib.format.write_array_header_1_0(body, header)
    body.write(b"\0" * 16)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr(f"{key}.npy", body.getvalue())
        zf.writestr("rows.npy", _npy(np.arange(3)))
    return out.getvalue()


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def replace_with(path: Path, kind: str, target: Path | None = None) -> None:
    """Put a hostile object at ``path``: ``fifo``, ``devzero`` (a link to /dev/zero) or ``outside``
    (a link to ``target``)."""
    path.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "devzero":
        path.symlink_to("/dev/zero")
    elif kind == "outside":
        path.symlink_to(target)
    else:
        raise ValueError(kind)


# --------------------------------------------------------------------------- the report, end to end


def test_every_optional_artefact_hostile_at_once_leaves_its_section_out_and_the_report_whole(run_dir, secret_file):
    replace_with(run_dir / names.CONFIG, "outside", secret_file)
    replace_with(run_dir / names.PROVENANCE, "outside", secret_file)
    (run_dir / names.DATA_SUMMARY).write_text(deep_json())
    replace_with(run_dir / names.SLICES, "fifo")
    replace_with(run_dir / names.HISTORY, "devzero")
    replace_with(run_dir / names.LABEL_ISSUES, "fifo")
    (run_dir / names.FACES_POOL).write_bytes(npz_claiming(10**10))
    done = ferreport("report", run_dir, "--format", "html")
    assert done.code == 0, done.stderr
    html = (run_dir / names.REPORT_HTML).read_text()
    for name, why in ((names.CONFIG, "outside"), (names.PROVENANCE, "outside"),
                      (names.DATA_SUMMARY, f"over the limit of {MAX_JSON_DEPTH}"),
                      (names.SLICES, "not a regular file"), (names.HISTORY, "outside"),
                      (names.LABEL_ISSUES, "not a regular file"), (names.FACES_POOL, "declares 9,537 MiB of arrays")):
        line = next((x for x in done.stderr.splitlines() if f"{name}:" in x), "")
        assert why in line, (name, done.stderr)
        assert f"{name}:" in html, name
    assert "Part of the run folder left out" in html
    assert SECRET not in outputs_text(run_dir) and SECRET not in done.stdout + done.stderr


REQUIRED_CASES = {
    "metrics-fifo": (names.METRICS, "fifo", "not a regular file (a FIFO, device, socket or folder)"),
    "metrics-devzero": (names.METRICS, "devzero", "is a link to /dev/zero, outside"),
    "metrics-deep": (names.METRICS, deep_json(), "nests 100000 levels deep"),
    "metrics-nan": (names.METRICS, '{"n": 3, "accuracy": NaN}', "NaN is not a number JSON allows"),
    "metrics-infinity": (names.METRICS, '{"n": 3, "accuracy": -Infinity}', "-Infinity is not a number JSON allows"),
    "metrics-overflow": (names.METRICS, '{"n": 3, "accuracy": 1e999}', "1e999 is too large for a number"),
    "metrics-text": (names.METRICS, '{"n": 3, "accuracy": "high"}', "field accuracy: 'high' is not of type 'number'"),
    "predictions-fifo": (names.PREDICTIONS, "fifo", "not a regular file"),
    "predictions-outside": (names.PREDICTIONS, "outside", "outside"),
}


def test_each_hostile_required_artefact_is_exit_3_naming_it(tmp_path, secret_file):
    runs = {}
    for case, (name, what, _) in REQUIRED_CASES.items():
        runs[case] = make_run_dir(tmp_path / case, n=30)
        if what in ("fifo", "devzero", "outside"):
            replace_with(runs[case] / name, what, secret_file)
        else:
            (runs[case] / name).write_text(what)
    outcomes = ferreport_many([("report", runs[case], "--format", "html") for case in REQUIRED_CASES])
    for (case, (name, _, why)), done in zip(REQUIRED_CASES.items(), outcomes, strict=True):
        assert done.code == 3, (case, done.stderr)
        assert name in done.error and why in done.error, (case, done.error)
        assert len([x for x in done.stderr.splitlines() if x.startswith("ferreport: error:")]) == 1, case
        assert not (runs[case] / names.REPORT_HTML).exists(), case
        assert SECRET not in done.stdout + done.stderr, case


def test_compare_refuses_a_hostile_run_with_exit_3(tmp_path):
    a = make_run_dir(tmp_path / "a", n=60)
    b = make_run_dir(tmp_path / "b", n=60)
    replace_with(b / names.METRICS, "fifo")
    done = ferreport("compare", a, b, "--out", tmp_path / "cmp", "--format", "html")
    assert done.code == 3 and "metrics.json: not a regular file" in done.error, done.stderr
    assert not (tmp_path / "cmp").exists()


# --------------------------------------------------------------------------- the guard itself (no FIFO here)


def test_a_link_inside_the_folder_is_followed_and_one_leaving_it_is_refused(tmp_path, secret_file):
    run = make_run_dir(tmp_path / "run", n=30)
    shutil.copy(run / names.CONFIG, run / "config.orig.json")
    (run / names.CONFIG).unlink()
    (run / names.CONFIG).symlink_to("config.orig.json")
    assert RunFolder(run).read_config() == json.loads((run / "config.orig.json").read_text())
    (run / names.CONFIG).unlink()
    (run / names.CONFIG).symlink_to(Path("..") / secret_file.relative_to(tmp_path))
    problems: list[str] = []
    assert RunFolder(run).read_config(problems) is None
    assert "outside" in problems[0] and SECRET not in problems[0]


def test_size_limits_are_checked_before_reading(tmp_path):
    path = tmp_path / "big.json"
    with open(path, "wb") as fh:
        fh.truncate(2 * 1024**2)  # sparse: 2 MiB claimed, nothing allocated
    with pytest.raises(ArtefactError, match=r"big.json: is 2 MiB, over the limit of 1 MiB"):
        open_inside(path, 1024**2)


def test_depth_is_limited_but_brackets_inside_strings_do_not_count():
    assert parse_json('{"a": "' + "[" * 10_000 + '"}', "x.json") == {"a": "[" * 10_000}
    assert parse_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH, "x.json") is not None
    with pytest.raises(ArtefactError, match="nests 65 levels deep"):
        parse_json("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "x.json")


def test_an_npz_with_a_pickle_or_a_huge_header_is_refused_before_it_is_inflated(tmp_path):
    run = RunFolder(tmp_path)
    (tmp_path / names.EMBEDDINGS).write_bytes(npz_claiming(10**10, key="embeddings"))
    assert run.read_embeddings() is None  # left out: drift runs without the embedding test
    buf = io.BytesIO()
    np.savez(buf, rows=np.arange(2), faces=np.array([{"x": 1}, None], dtype=object))
    (tmp_path / names.FACES_POOL).write_bytes(buf.getvalue())
    problems: list[str] = []
    rows, faces = run.read_face_pool(2, problems)
    assert faces is None and "holds Python objects (a pickle); refused" in problems[0]


def test_a_baseline_folder_is_read_through_the_guard(tmp_path, secret_file):
    base = make_run_dir(tmp_path / "base", n=30)
    replace_with(base / names.METRICS, "outside", secret_file)
    with pytest.raises(DatasetError, match=r"--baseline .*metrics.json: is a link to .*outside"):
        load_baseline(base)


def test_the_runs_index_lists_only_folders_that_live_in_it(tmp_path):
    reports = tmp_path / "reports"
    make_run_dir(reports / "here", n=30)
    elsewhere = make_run_dir(tmp_path / "elsewhere", n=30)
    (reports / "linked").symlink_to(elsewhere)
    runs, _, _ = scan_runs(reports)
    assert [r.href for r in runs] == ["here"]


def _copy_audit(audit, tmp_path) -> Path:
    out = tmp_path / "audit"
    shutil.copytree(audit[0], out, symlinks=True)
    for page in (names.REPORT_HTML, names.REPORT_PDF):
        (out / page).unlink(missing_ok=True)
    return out


def test_an_audit_whose_summary_is_a_fifo_is_exit_3(audit, tmp_path):
    out = _copy_audit(audit, tmp_path)
    replace_with(out / names.AUDIT_SUMMARY, "fifo")
    done = ferreport("report", out, "--format", "html")
    assert done.code == 3 and "audit_summary.json: not a regular file" in done.error, done.stderr


def test_an_audits_optional_artefacts_hostile_leave_their_sections_out(audit, tmp_path, secret_file):
    out = _copy_audit(audit, tmp_path)
    replace_with(out / names.DRIFT, "fifo")
    replace_with(out / names.FACE_STATS, "devzero")
    replace_with(out / names.CONFIG, "outside", secret_file)
    (out / names.EMBEDDINGS).write_bytes(npz_claiming(10**10, key="embeddings"))
    done = ferreport("report", out, "--format", "html")
    assert done.code == 0, done.stderr
    html = (out / names.REPORT_HTML).read_text()
    assert "drift.json: not a regular file" in done.stderr and "drift.json" in html
    assert SECRET not in outputs_text(out)


def test_a_reference_folder_is_read_through_the_guard(audit, model_run, tmp_path, secret_file):
    ref = _copy_audit(audit, tmp_path)
    replace_with(ref / names.PREDICTIONS, "outside", secret_file)
    images = RunFolder(audit[0]).read_config()["folder"]
    done = ferreport("predict", images, "--model", model_run, "--reference", ref, "--out",
                     tmp_path / "again", "--faces", "whole", "--format", "none")
    assert done.code == 3 and "--reference" in done.error and "outside" in done.error, done.stderr
    assert SECRET not in done.stderr and not (tmp_path / "again").exists()
