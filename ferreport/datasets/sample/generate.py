"""Writing a planned sample in ExpW's layout: the JPEG files, label/label.lst and sample.json,
atomically (a temporary folder renamed into place), reusing a complete same-spec sample.

Each ``label.lst`` line is ``image_name face_id_in_image face_box_top face_box_left
face_box_right face_box_bottom face_box_confidence expression_label``.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ferreport.constants import CLASS_NAMES
from ferreport.datasets.sample.plan import PlannedImage, SampleSpec, plan_images
from ferreport.datasets.sample.scene import render_image
from ferreport.errors import OutputError, UsageError
from ferreport.progress import stage
from ferreport.runs.atomic import write_error

#: Bumped whenever the output for a given spec changes; recorded in sample.json.
GENERATOR_VERSION: int = 1
#: The generator's name in sample.json (a reused sample must carry it).
GENERATOR = "ferreport.sample"  # what sample.json has always said: samples made before the move stay valid
SAMPLE_JSON = "sample.json"
LABEL_LST = Path("label") / "label.lst"
IMAGE_DIR = Path("image") / "origin"
JPEG_PARAMS = [int(cv2.IMWRITE_JPEG_QUALITY), 90]
#: Use worker threads only from this many pictures on.
_PARALLEL_FROM = 100


@dataclass(frozen=True)
class SampleInfo:
    """Where the sample is and what it holds."""

    root: Path
    n_images: int
    n_faces: int
    class_counts: tuple[int, ...]  # in CLASS_NAMES order


def _clear_stale_temps(out: Path) -> None:
    """Remove temporary folders left by generators that were killed (their pid is gone)."""
    for tmp in out.parent.glob(f".{glob.escape(out.name)}.tmp-*"):
        try:
            pid = int(tmp.name.rsplit(".tmp-", 1)[1].split("-", 1)[0])
        except (IndexError, ValueError):
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


def _spec_difference(recorded: object, asked: dict[str, Any]) -> str:
    """What differs between a recorded and an asked-for spec, as words (never a Python dict repr)."""
    if not isinstance(recorded, dict):
        return "no recorded spec"
    keys = sorted(k for k in set(recorded) | set(asked) if recorded.get(k) != asked.get(k))
    if not keys:
        return "same spec"
    flags = {"n_faces": "--faces", "seed": "--seed"}
    return "; ".join(f"{flags.get(k, k)} {recorded.get(k, 'unset')} there, {asked.get(k, 'unset')} asked"
                     for k in keys)


def _spec_dict(spec: SampleSpec) -> dict[str, Any]:
    """The spec as sample.json holds it (JSON types: the class shares as a list)."""
    return json.loads(json.dumps(dataclasses.asdict(spec)))


def _existing(out: Path, spec: SampleSpec) -> SampleInfo | None:
    """Return the info of a complete same-spec sample at ``out``, None if ``out`` is free.

    Raises UsageError if ``out`` holds something else.
    """
    if not out.exists():
        return None
    if not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder; choose another sample output folder")
    if not any(out.iterdir()):
        return None
    meta_path = out / SAMPLE_JSON
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        ok = meta.get("generator") == GENERATOR and (out / LABEL_LST).is_file()
    except (OSError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise UsageError(f"{out}: folder is not empty and holds no ferreport sample; choose another output folder")
    if meta.get("version") != GENERATOR_VERSION or meta.get("spec") != _spec_dict(spec):
        version = meta.get("version")
        why = (_spec_difference(meta.get("spec"), _spec_dict(spec)) if version == GENERATOR_VERSION
               else f"generator version {version} there, {GENERATOR_VERSION} now")
        raise UsageError(f"{out}: holds another sample ({why}); choose another --out or delete the folder")
    return SampleInfo(out, int(meta["n_images"]), int(meta["n_faces"]), tuple(int(c) for c in meta["class_counts"]))


def generate_sample(out: Path | str, spec: SampleSpec = SampleSpec(), workers: int | None = None) -> SampleInfo:
    """Write a synthetic ExpW-layout sample to ``out`` (atomically) and describe it.

    If ``out`` already holds a complete sample of the same spec, nothing is redone. If it
    holds anything else, :class:`~ferreport.errors.UsageError` is raised. ``workers`` is
    the number of drawing threads (default: up to 2, one for small samples); the output
    does not depend on it.
    """
    out = Path(out)
    done = _existing(out, spec)
    if done is not None:
        return done
    images, counts = plan_images(spec)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _clear_stale_temps(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    except OSError as exc:
        raise write_error(out, exc) from exc
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the sample is an ordinary folder
        _write_images(tmp, spec, images, workers)
        _write_metadata(tmp, spec, images, counts)
        try:
            os.replace(tmp, out)
        except OSError:
            # someone else filled ``out`` meanwhile: fine if it is the same sample
            done = _existing(out, spec)
            if done is None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            return done
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(out, exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SampleInfo(out, len(images), spec.n_faces, counts)


def _write_images(tmp: Path, spec: SampleSpec, images: list[PlannedImage], workers: int | None) -> None:
    """Draw and write every image under ``tmp`` (in threads for big samples; the bytes do not depend on it)."""
    img_dir = tmp / IMAGE_DIR
    img_dir.mkdir(parents=True)
    (tmp / LABEL_LST).parent.mkdir(parents=True)
    tasks = [
        (str(img_dir / im.name), spec.seed, im.index, im.height, im.width,
         tuple((f.label, f.top, f.left, f.side) for f in im.faces))
        for im in images
    ]
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if len(tasks) >= _PARALLEL_FROM else 1
    with stage("sample", total=len(tasks), unit="images") as bar:
        if workers > 1 and len(tasks) > 1:
            # Threads, not processes: OpenCV releases the GIL in its heavy calls, and a
            # process pool would either fork a multi-threaded parent (deadlocks seen with
            # OpenCV/OpenMP pools) or re-import ``__main__`` (spawn).
            with ThreadPoolExecutor(workers, thread_name_prefix="ferreport-sample") as pool:
                for _ in pool.map(write_image, tasks):
                    bar.advance()
        else:
            for task in tasks:
                write_image(task)
                bar.advance()


def _write_metadata(tmp: Path, spec: SampleSpec, images: list[PlannedImage], counts: tuple[int, ...]) -> None:
    """label/label.lst and sample.json."""
    (tmp / LABEL_LST).write_text(_label_lines(images), encoding="utf-8", newline="\n")
    meta = {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "spec": _spec_dict(spec),
        "n_images": len(images),
        "n_faces": spec.n_faces,
        "class_counts": list(counts),
        "class_names": list(CLASS_NAMES),
    }
    (tmp / SAMPLE_JSON).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _label_lines(images: list[PlannedImage]) -> str:
    """The text of label.lst: one line per face, pictures in plan order."""
    lines = []
    for im in images:
        for f in im.faces:
            lines.append(
                f"{im.name} {f.face_id} {f.top} {f.left} {f.left + f.side} {f.top + f.side} "
                f"{f.confidence:.4f} {f.label}"
            )
    return "\n".join(lines) + "\n"


def write_image(task: tuple[str, int, int, int, int, tuple[tuple[int, int, int, int], ...]]) -> None:
    """Draw one picture, ``(path, seed, index, height, width, faces)``, and write it as a JPEG file.

    Its random numbers come from ``(seed, index)`` alone, so the bytes do not depend on the
    order or thread the pictures are drawn in.
    """
    path, seed, index, height, width, faces = task
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, index)))
    img = render_image(rng, height, width, faces)
    ok, buf = cv2.imencode(".jpg", img, JPEG_PARAMS)
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 BGR image
        raise OutputError(f"{path}: JPEG encoding failed")
    with open(path, "wb") as fh:
        fh.write(buf.tobytes())
