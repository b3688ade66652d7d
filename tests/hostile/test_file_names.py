"""File names chosen by whoever made the folder reach every CSV ferreport writes: no cell is a live
spreadsheet formula, every name stays one row (CR, LF, quotes, commas, bytes that are not UTF-8),
and ferreport's own readers give back the true name."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from ferreport.runs import folder as names
from ferreport.runs.cells import FORMULA_STARTS, from_cell, name_path, name_text, to_cell, write_frame
from ferreport.runs.folder import RunFolder
from tests.hostile.conftest import HOSTILE_NAMES


def _cells(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_one_row_per_image_scored_whatever_its_name(audit):
    out, shown = audit
    rows = _cells(out / names.PREDICTIONS)
    summary = RunFolder(out).read_audit_summary()
    assert len(rows) - 1 == summary["images_read"] == summary["faces_found"] == len(HOSTILE_NAMES)
    source = rows[0].index("source")
    assert sorted(from_cell(r[source]) for r in rows[1:]) == sorted(shown)


def test_no_cell_is_a_live_formula_and_numbers_stay_numbers(audit):
    out, _ = audit
    for name in (names.PREDICTIONS, names.FACE_STATS, names.SKIPPED):
        rows = _cells(out / name)
        for row in rows[1:]:
            for cell in row:
                assert not cell.startswith(FORMULA_STARTS), (name, cell)
    rows = _cells(out / names.PREDICTIONS)
    conf = rows[0].index("confidence")
    assert all(float(r[conf]) >= 0 for r in rows[1:])  # a number, written as one (no leading ')
    skipped = _cells(out / names.SKIPPED)
    assert [r[0] for r in skipped[1:]] == ["'=broken.jpg"]


def test_ferreports_readers_see_the_true_names_and_the_report_shows_them_escaped(audit):
    out, shown = audit
    back = RunFolder(out).read_predictions()
    assert sorted(back["source"]) == sorted(shown)
    html = (out / names.REPORT_HTML).read_text()
    assert "=HYPERLINK(&#34;evil.invalid&#34;" in html or "=HYPERLINK(&quot;evil" in html
    assert ">bad\\xffname.jpg<" in html  # the caption is the whole name, not cut at a backslash
    folder = Path(RunFolder(out).read_config()["folder"])
    assert all(os.path.lexists(os.path.join(folder, name_path(s))) for s in shown)  # each opens again


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(st.characters(codec="utf-8"), max_size=12), min_size=1, max_size=6))
def test_any_text_round_trips_through_a_csv_artefact_as_one_row_each(tmp_path_factory, texts):
    folder = tmp_path_factory.mktemp("cells")
    frame = pd.DataFrame({"source": texts, "n": range(len(texts))})
    run = RunFolder(folder)
    run.write_label_issues(frame.assign(face_id="0", given="happy", suggested="sad", score=0.5))
    back = run.read_label_issues()
    assert back["source"].fillna("").tolist() == texts and back["n"].tolist() == list(range(len(texts)))
    buf = io.StringIO(newline="")
    write_frame(frame, buf)
    assert len(list(csv.reader(io.StringIO(buf.getvalue(), newline="")))) == len(texts) + 1


@given(st.text())
def test_to_cell_is_undone_by_from_cell(text):
    assert from_cell(to_cell(text)) == text
    assert not to_cell(text).startswith(FORMULA_STARTS)


@given(st.text(st.characters(blacklist_categories=("Cs",))) | st.binary().map(os.fsdecode))
def test_name_text_is_undone_by_name_path_and_always_encodes(name):
    text = name_text(name)
    text.encode("utf-8")
    assert name_path(text) == name
