"""Ownership marker, inputs kept apart from --out, one writer per folder, signals held during a swap."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ferreport.errors import UsageError
from ferreport.runs.atomic import FolderReplacement, signals_held
from ferreport.runs.folder import (
    MARKER,
    RunFolder,
    check_apart,
    check_replaceable,
    check_run_dir,
    folder_lock,
    is_ferreport_folder,
)


def test_created_folders_carry_the_marker_and_only_those_may_be_replaced(tmp_path):
    run = tmp_path / "reports" / "run1"
    RunFolder(run).create("run")
    assert is_ferreport_folder(run) and is_ferreport_folder(tmp_path / "reports")  # a parent it made, too
    (run / "metrics.json").write_text("{}")
    check_replaceable(run)  # ours: --force may replace it
    check_run_dir(tmp_path / "empty-but-marked")  # absent: fine
    RunFolder(tmp_path / "fresh").create("audit")
    check_run_dir(tmp_path / "fresh")  # the marker alone does not make a folder 'hold files'

    thesis = tmp_path / "thesis"
    (thesis / "thesis").mkdir(parents=True)
    (thesis / "thesis" / "chapter1.tex").write_text("\\chapter{One}")
    (thesis / "photos.txt").write_text("my photos")
    with pytest.raises(UsageError, match=r"thesis: not written by ferreport .*\.ferreport"):
        check_replaceable(thesis)
    RunFolder(thesis).create("run")  # never marks a folder that already holds someone's files
    assert not (thesis / MARKER).exists()
    (thesis / MARKER).write_text("{\"tool\": \"something else\"}")
    with pytest.raises(UsageError, match="not written by ferreport"):
        check_replaceable(thesis)
    (tmp_path / "elsewhere.json").write_text("{\"tool\": \"ferreport\"}")
    (thesis / MARKER).unlink()
    (thesis / MARKER).symlink_to(tmp_path / "elsewhere.json")  # a linked marker is not a marker
    with pytest.raises(UsageError, match="not written by ferreport"):
        check_replaceable(thesis)
    empty = tmp_path / "empty"
    empty.mkdir()
    check_replaceable(empty)  # an empty folder may be used


@pytest.mark.parametrize(("out", "how"), [("photos", "is"), (".", "holds"), ("photos/sub/audit", "is inside"),
                                          ("link", "is")])
def test_out_apart_from_every_input_after_resolving_links(tmp_path, out, how):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(photos)
    with pytest.raises(UsageError, match=f"--out .* {how} FOLDER .*choose an --out outside it"):
        check_apart(tmp_path / out, {"FOLDER": photos, "--model": None})
    check_apart(tmp_path / "reports" / "audit", {"FOLDER": photos})  # beside it: fine


def test_a_model_inside_a_run_folder_keeps_the_run_apart_too(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "model.keras").write_bytes(b"PK")
    with pytest.raises(UsageError, match="holds --model"):
        check_apart(run, {"--model": run / "model.keras"})
    with pytest.raises(UsageError, match="is inside --model"):
        check_apart(run / "again", {"--model": run / "model.keras"})


_HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ferreport.runs.folder import folder_lock
    with folder_lock(Path(sys.argv[1])):
        print("held", flush=True)
        time.sleep(60)
""")


def test_one_writer_a_second_is_told_the_pid_and_a_killed_holder_blocks_nobody(tmp_path):
    out = tmp_path / "reports" / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UsageError, match=rf"run: in use by PID {holder.pid} "), folder_lock(out):
            pass
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the lock file stays behind
        holder.wait(timeout=30)
    assert (out.parent / ".run.lock").exists()
    with folder_lock(out):  # the kernel dropped the dead holder's lock: the next writer goes on
        assert (out.parent / ".run.lock").read_text() == str(os.getpid())
    assert not (out.parent / ".run.lock").exists()


def test_signals_wait_for_the_held_step_then_act():
    with pytest.raises(KeyboardInterrupt):  # noqa: SIM117 - the interrupt must surface after the inner block
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # a handler would have run by now
            finished = True
    assert finished
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_replacement_on_a_linked_copy_leaves_the_old_files_as_they_were(tmp_path):
    run = tmp_path / "run"
    RunFolder(run).create("run")
    (run / "metrics.json").write_text('{"accuracy": 0.5}')
    swap = FolderReplacement(run, copy_of=run)
    RunFolder(swap.staged).write_json("metrics.json", {"accuracy": 0.9})  # atomic: a new file, not the linked one
    assert (run / "metrics.json").read_text() == '{"accuracy": 0.5}'
    swap.commit()
    assert '"accuracy": 0.9' in (run / "metrics.json").read_text() and is_ferreport_folder(run)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
