"""Hostile input, interruptions and full disks: each case is used correctly or skipped with a reason."""

from __future__ import annotations

import io
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ferreport.cli.main import main
from ferreport.datasets import class_folders, expw, skips
from ferreport.datasets.decode import decode_image
from ferreport.datasets.expw import read_label_file
from ferreport.datasets.face_cache import prepare_dataset
from ferreport.errors import OutputError
from ferreport.runs.atomic import write_text
from tests.conftest import make_expw, write_image


def _jpeg_bytes(arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", arr)
    assert ok
    return buf.tobytes()


def _png_header_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


@pytest.fixture
def hostile_images(tmp_path) -> dict[str, Path]:
    d = tmp_path / "imgs"
    d.mkdir()
    face = np.full((40, 60, 3), 90, np.uint8)
    face[:, :30] = (10, 200, 30)
    files = {}

    def put(name: str, data: bytes) -> None:
        (d / name).write_bytes(data)
        files[name] = d / name

    put("zero.jpg", b"")
    full = _jpeg_bytes(face)
    put("truncated.jpg", full[: len(full) // 2])
    put("text.jpg", b"hello, I am not a picture\n")
    put("huge.png", _png_header_claiming(200_000, 200_000))
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 1] = 255
    rgba[..., 3] = 0
    put("alpha.png", cv2.imencode(".png", rgba)[1].tobytes())
    put("deep.png", cv2.imencode(".png", np.full((20, 30, 3), 4000, np.uint16))[1].tobytes())
    put("gray.jpg", cv2.imencode(".jpg", np.full((20, 30), 128, np.uint8))[1].tobytes())
    buf = io.BytesIO()
    Image.new("CMYK", (30, 20), (0, 255, 255, 0)).save(buf, "JPEG")
    put("cmyk.jpg", buf.getvalue())
    # EXIF orientation 6: stored 30 wide x 20 high, displayed rotated 90 degrees (20 wide x 30 high)
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(buf, "JPEG", exif=exif)
    put("rotated.jpg", buf.getvalue())
    put("name with spaces ünïcødé <b>&.jpg", full)
    return files


def test_each_hostile_image_is_decoded_or_refused_with_a_reason(hostile_images):
    reasons = {name: decode_image(path) for name, path in hostile_images.items()}
    assert reasons["zero.jpg"] == (None, "empty file")
    assert reasons["truncated.jpg"] == (None, "truncated JPEG")
    assert reasons["text.jpg"] == (None, "cannot decode")
    assert reasons["huge.png"] == (None, "cannot decode")  # OpenCV's pixel limit refuses the header
    for name in ("alpha.png", "deep.png", "gray.jpg", "cmyk.jpg", "rotated.jpg", "name with spaces ünïcødé <b>&.jpg"):
        img, why = reasons[name]
        assert why == "" and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, name
    assert reasons["alpha.png"][0].shape == (20, 30, 3)
    assert reasons["deep.png"][0].max() > 0
    cmyk = reasons["cmyk.jpg"][0][10, 15]  # cyan-free red in CMYK (0, 255, 255, 0) -> red
    assert cmyk[2] > 200 and cmyk[0] < 60 and cmyk[1] < 60
    assert reasons["rotated.jpg"][0].shape[:2] == (30, 20)  # EXIF orientation applied


def test_huge_header_is_refused_without_allocating(hostile_images):
    import tracemalloc

    tracemalloc.start()
    decode_image(hostile_images["huge.png"])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50 * 1024 * 1024


def test_class_folder_dataset_with_hostile_files(hostile_images, tmp_path):
    root = tmp_path / "ds"
    (root / "happy").mkdir(parents=True)
    for name, path in hostile_images.items():
        (root / "happy" / name).write_bytes(path.read_bytes())
    (root / "happy" / "loop").symlink_to(root / "happy", target_is_directory=True)  # a symlink loop
    (root / "happy" / "notes.gif").write_bytes(b"GIF89a")
    prepared = prepare_dataset(root)
    used = set(prepared.index.source)
    assert "happy/cmyk.jpg" in used and "happy/name with spaces ünïcødé <b>&.jpg" in used
    assert len(used) == 6
    assert prepared.skipped == {
        f"{skips.UNREADABLE_IMAGE}: empty file": 1,
        f"{skips.UNREADABLE_IMAGE}: truncated JPEG": 1,
        f"{skips.UNREADABLE_IMAGE}: cannot decode": 2,
        class_folders.NOT_AN_IMAGE: 1,
    }


def test_unreadable_permissions_are_skipped(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    root = make_expw(tmp_path / "d", ["a.jpg 0 0 0 50 50 1 3", "b.jpg 0 0 0 50 50 1 3"],
                     {"a.jpg": (60, 60), "b.jpg": (60, 60)})
    (root / "image" / "origin" / "b.jpg").chmod(0)
    prepared = prepare_dataset(root)
    assert len(prepared.index) == 1 and sum(prepared.skipped.values()) == 1


def test_symlink_loop_in_label_list_is_a_missing_image(tmp_path):
    root = make_expw(tmp_path / "d", ["a.jpg 0 0 0 50 50 1 3", "loop.jpg 0 0 0 50 50 1 3"], {"a.jpg": (60, 60)})
    loop = root / "image" / "origin" / "loop.jpg"
    loop.symlink_to(loop)
    result = read_label_file(root / "label" / "label.lst")
    assert result.skipped == {expw.MISSING_IMAGE: 1}


field = st.one_of(
    st.integers(-5, 2000).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.sampled_from(["img.jpg", "../x.jpg", "/etc/passwd", "a b.jpg", "0", "6", "7", "-1", "1e3", "nan", "0x10"]),
)
line = st.one_of(
    st.lists(field, min_size=0, max_size=10).map(" ".join),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(line, max_size=25))
def test_any_label_line_becomes_a_row_or_a_counted_skip(tmp_path, lines):
    root = tmp_path / "prop"
    (root / "label").mkdir(parents=True, exist_ok=True)
    write_image(root / "image" / "origin" / "img.jpg", 40, 40)
    text = "\n".join(lines)
    (root / "label" / "label.lst").write_text(text, encoding="utf-8")
    result = read_label_file(root / "label" / "label.lst", require_faces=False)
    decoded = (root / "label" / "label.lst").read_bytes().decode("utf-8-sig", errors="replace")
    non_blank = sum(1 for x in decoded.split("\n") if x.strip())
    assert len(result.index) + sum(result.skipped.values()) == non_blank
    assert all(result.index.label.between(0, 6)) and all(result.index.source == "img.jpg")


def test_very_long_label_file_parses_quickly(tmp_path):
    root = make_expw(tmp_path / "d", [], {"a.jpg": (60, 60)})
    lines = [f"a.jpg {i} 0 0 50 50 1.5 {i % 7}" for i in range(200_000)]
    (root / "label" / "label.lst").write_text("\n".join(lines))
    start = time.perf_counter()
    result = read_label_file(root / "label" / "label.lst")
    assert len(result.index) == 200_000
    assert time.perf_counter() - start < 60  # generous: a hang, not a benchmark


# ----------------------------------------------------------------------------------- interruption

def _kill_when(cmd: list[str], cwd: Path, ready, timeout: float = 120) -> None:
    """Start ``cmd``; SIGKILL it as soon as ``ready()`` is true (or it exits).

    Only the main process is killed, as the OOM killer would; its decoding workers must
    then exit by themselves (``datasets.workers.exit_with_parent``).
    """
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline and not ready():
        time.sleep(0.02)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while _session_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _session_members(proc.pid)
    for pid in left:  # never leave strays behind, even when the assertion below fails
        os.kill(pid, signal.SIGKILL)
    assert not left, f"worker processes outlived their killed parent: {left}"


def _session_members(sid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    members.append(int(entry.name))
            except OSError:
                continue
    return members


@pytest.mark.slow
def test_sigkill_during_prepare_leaves_no_half_cache_and_rerun_completes(sample_dataset, tmp_path):
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "ferreport.cli.main", "prepare", "--data", str(sample_dataset),
           "--cache-dir", str(cache)]
    _kill_when(cmd, tmp_path, lambda: any(cache.glob(".*.tmp-*/all.npy")))
    finished = [p for p in cache.glob("*") if not p.name.startswith(".")] if cache.exists() else []
    for entry in finished:  # anything under a final name is complete
        assert (entry / "meta.json").is_file()
    result = CliRunner().invoke(main, ["prepare", "--data", str(sample_dataset), "--cache-dir", str(cache)])
    assert result.exit_code == 0, result.output
    assert not list(cache.glob(".*.tmp-*"))  # the abandoned half-written cache was removed
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 1


def test_atomic_write_never_exposes_a_partial_file(tmp_path):
    target = tmp_path / "out.txt"
    code = ("import sys; from ferreport.runs.atomic import atomic_open\n"
            "with atomic_open(sys.argv[1]) as fh:\n"
            "    fh.write('x' * 1000); fh.flush(); print('writing', flush=True)\n"
            "    import time; time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not target.exists()
    write_text(target, "complete")
    assert target.read_text() == "complete"


# ----------------------------------------------------------------------------------- full or read-only disk

@pytest.fixture
def tiny_tmpfs(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_is_a_clear_error_and_leaves_nothing(tiny_tmpfs):
    target = tiny_tmpfs / "report.html"
    with pytest.raises(OutputError, match="disk is full"):
        write_text(target, "x" * 200_000)
    assert list(tiny_tmpfs.iterdir()) == []


def test_read_only_folder_is_a_clear_error(tiny_tmpfs):
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_tmpfs)], check=True)
    with pytest.raises(OutputError, match="not writable"):
        write_text(tiny_tmpfs / "report.html", "x")


def test_cli_exit_code_5_on_unwritable_cache(tiny_expw, tiny_tmpfs):
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_tmpfs)], check=True)
    result = CliRunner().invoke(main, ["prepare", "--data", str(tiny_expw), "--cache-dir", str(tiny_tmpfs / "c")])
    assert result.exit_code == 5, result.output
    assert "cannot write" in result.output


# --------------------------------------------------------------------------- issue 20: only regular files, real faces


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["fifo", "/dev/urandom", "sparse"])
def test_cli_prepare_refuses_a_hostile_label_file_with_exit_3_and_one_line(tmp_path, kind):
    """A FIFO label.lst used to hang prepare; a link to /dev/urandom took 23 GB in the quick cache key."""
    root = make_expw(tmp_path / "d", ["a.jpg 0 0 0 50 50 1 3"], {"a.jpg": (60, 60)})
    lst = root / "label" / "label.lst"
    lst.unlink()
    if kind == "fifo":
        os.mkfifo(lst)
    elif kind == "sparse":
        lst.touch()
        os.truncate(lst, expw.MAX_LABEL_BYTES + 1)
    else:
        lst.symlink_to(kind)
    result = CliRunner().invoke(main, ["prepare", "--data", str(root), "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 3, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "label.lst" in lines[0], result.output
    assert ("larger than the 512 MiB limit" if kind == "sparse" else "not a regular file") in lines[0]


def test_cli_strict_stops_at_a_box_outside_the_image_and_at_a_partial_jpeg(tmp_path):
    photo = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8), (5, 5), 2)
    data = _jpeg_bytes(photo)
    sos = data.index(b"\xff\xda")
    for extra, expected in ((["a.jpg 1 -60 -60 -10 -10 1 2"], "label.lst:2: box entirely outside the image"),
                            (["cut.jpg 0 0 0 100 100 1 2"], "label.lst:2: image unreadable: corrupt JPEG")):
        root = make_expw(tmp_path / expected[:20].replace(" ", "_").replace(":", "_"),
                         ["a.jpg 0 0 0 50 50 1 3", *extra], {"a.jpg": (60, 60)})
        (root / "image" / "origin" / "cut.jpg").write_bytes(data[:sos + (len(data) - sos) // 4] + b"\xff\xd9")
        lax = CliRunner().invoke(main, ["prepare", "--data", str(root), "--cache-dir", str(tmp_path / "c")])
        assert lax.exit_code == 0 and "faces read  1" in lax.output, lax.output
        strict = CliRunner().invoke(main, ["prepare", "--data", str(root), "--strict",
                                           "--cache-dir", str(tmp_path / "s")])
        assert strict.exit_code == 3 and expected in strict.output, strict.output


def test_stale_part_files_of_a_killed_writer_are_removed_by_the_next_run(tmp_path, capsys):
    """Issue 20, 5a: a writer killed mid-write leaves `.NAME.PID.*.part*`; the next command into the folder removes
    it (its pid is dead), keeps a live process's temporary, and removes pid-less ones only when old."""
    from ferreport.runs.atomic import STALE_PART_AGE_S
    from ferreport.runs.folder import clean_run_dir

    code = ("import sys, time; from ferreport.runs.atomic import atomic_open\n"
            "with atomic_open(sys.argv[1]) as fh:\n"
            "    fh.write('x' * 1000); fh.flush(); print('ready', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "report.html")], stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.stdout.readline().strip() == b"ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = [p for p in tmp_path.iterdir() if ".part" in p.name]
    assert len(killed) == 1 and f".{proc.pid}." in killed[0].name
    live = tmp_path / f".metrics.json.{os.getpid()}.abc123.part.json"
    live.write_text("{}")
    old_legacy = tmp_path / ".predictions.csv.k3j_x9.part.csv"
    old_legacy.write_text("a")
    os.utime(old_legacy, (time.time() - STALE_PART_AGE_S - 10,) * 2)
    young_legacy = tmp_path / ".faces_pool.npz.q8w2e1.part.npz"
    young_legacy.write_text("a")
    keep = tmp_path / "report.part.html"  # not hidden: not ours
    keep.write_text("user file")
    clean_run_dir(tmp_path)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([live.name, young_legacy.name, keep.name])
    err = capsys.readouterr().err
    assert "removed 2 temporary file(s) left by an interrupted run" in err and err.count("\n") == 1


def _tiny_class_folders(root: Path, per_class: int = 2) -> Path:
    for c, name in enumerate(("angry", "happy")):
        for i in range(per_class):
            write_image(root / name / f"{i}.jpg", 64, 64, seed=10 * c + i)
    return root


@pytest.mark.parametrize("pre_made", [False, True])
def test_training_that_fails_before_its_first_epoch_leaves_no_run_folder(tmp_path, pre_made):
    """Too few faces to split is found after config.json and splits.csv are written: they are removed (an
    empty folder the user made stays, empty), so the same command works again without --force."""
    data = _tiny_class_folders(tmp_path / "tiny")
    out = tmp_path / "run"
    if pre_made:
        out.mkdir()
    args = ["train", "--data", str(data), "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 3 and "too few faces" in r.output, r.output
    assert (out.is_dir() and not any(out.iterdir())) if pre_made else not out.exists()
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 3 and "already holds files" not in again.output, again.output


def test_a_corrupt_init_from_model_is_refused_before_any_file_is_written(tmp_path, sample_dataset):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--data", str(sample_dataset), "--init-from", str(bad), "--out", str(out),
                                  "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert r.exit_code == 4 and "bad.keras: not a valid .keras archive" in r.output, r.output
    assert not out.exists()
    assert "prepare:" not in r.output  # refused before a face was decoded
