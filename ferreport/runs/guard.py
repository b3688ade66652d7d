"""Guarded reading of files ferreport did not necessarily write: run folders shared by others, specs, metadata.

Every read goes through :func:`open_inside` (or :func:`read_inside`):

* the path is ``lstat``-ed and resolved: it must be a **regular file inside its folder** (a link is
  followed only when it stays inside; a FIFO, socket or device is never opened, so nothing hangs and
  ``/dev/zero`` is never read);
* it must be within its **size limit** (checked from ``fstat`` of what was opened, non-blocking);
* JSON is parsed by :func:`parse_json` with a **depth limit** and **NaN / Infinity rejected** (also a
  number too large for a float), then checked against its schema (:mod:`ferreport.runs.schemas`);
* ``.npy`` members of an ``.npz`` are checked by their header (:func:`check_npz`): no object arrays,
  shape times item size under a limit, before any data is inflated.

Each refusal is an :class:`ArtefactError` (a DatasetError, exit 3) whose message names the file and
the reason.
"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import jsonschema
import numpy as np

from ferreport.errors import DatasetError
from ferreport.safe_io import NOT_REGULAR, NotRegularFile, open_regular

__all__ = ["MAX_JSON_DEPTH", "ArtefactError", "check_npz", "open_inside", "parse_json", "read_inside",
           "read_json_inside", "validate"]

#: JSON nested deeper than this is refused before it is parsed (ferreport's own files nest under 10).
MAX_JSON_DEPTH = 64

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


class ArtefactError(DatasetError):
    """A file that is refused: ``path`` and ``reason`` (exit 3)."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def _mib(n: int) -> str:
    return f"{n / 1024**2:,.0f} MiB" if n >= 1024**2 else f"{n:,} bytes"


def _check_inside(path: Path, root: Path | None) -> None:
    try:
        os.lstat(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ArtefactError(path, f"cannot read it ({exc.strerror or exc})") from None
    if root is not None:
        real, inside = Path(os.path.realpath(path)), Path(os.path.realpath(root))
        if real != inside and not real.is_relative_to(inside):
            raise ArtefactError(path, f"is a link to {real}, outside {root}; refused (a shared folder must not "
                                      "point elsewhere)")


def open_inside(path: str | os.PathLike[str], max_bytes: int, *, root: str | os.PathLike[str] | None = None
                ) -> tuple[BinaryIO, int]:
    """``(binary file, size)`` of ``path``: a regular file of at most ``max_bytes``, inside ``root`` when given.

    FileNotFoundError when it is absent; :class:`ArtefactError` when it is a FIFO, device, socket or folder,
    a link leaving ``root``, or over the limit.
    """
    p = Path(path)
    _check_inside(p, Path(root) if root is not None else None)
    try:
        return open_regular(p, max_bytes, too_large="too large")
    except NotRegularFile as exc:
        if exc.reason == NOT_REGULAR:
            raise ArtefactError(p, "not a regular file (a FIFO, device, socket or folder); refused") from None
        size = os.stat(p).st_size
        raise ArtefactError(p, f"is {_mib(size)}, over the limit of {_mib(max_bytes)} for this file") from None
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ArtefactError(p, f"cannot read it ({exc.strerror or exc})") from None


def read_inside(path: str | os.PathLike[str], max_bytes: int, *, root: str | os.PathLike[str] | None = None
                ) -> bytes:
    """The bytes of ``path`` under the checks of :func:`open_inside`."""
    fh, size = open_inside(path, max_bytes, root=root)
    with fh:
        return fh.read(size)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large for a number")
    return value


def json_depth(text: str) -> int:
    """How deeply ``text``'s arrays and objects nest (brackets inside strings not counted)."""
    bare = _STRING.sub("", text).encode("utf-8", "replace")
    codes = np.frombuffer(bare, np.uint8)
    if not codes.size:
        return 0
    step = (np.isin(codes, (ord("["), ord("{"))).astype(np.int32)
            - np.isin(codes, (ord("]"), ord("}"))).astype(np.int32))
    return int(np.cumsum(step).max(initial=0))


def parse_json(data: bytes | str, where: str | os.PathLike[str], *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON from ``data`` with the depth limited and NaN/Infinity refused; ArtefactError naming ``where``."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise ArtefactError(where, f"is not UTF-8 text (byte {exc.start})") from None
    depth = json_depth(text)
    if depth > max_depth:
        raise ArtefactError(where, f"nests {depth} levels deep, over the limit of {max_depth}; not a file ferreport "
                                   "wrote")
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except ValueError as exc:
        raise ArtefactError(where, f"is not valid JSON ({exc})") from None


def read_json_inside(path: str | os.PathLike[str], max_bytes: int, *, root: str | os.PathLike[str] | None = None,
                     schema: Mapping[str, Any] | None = None) -> Any:
    """A JSON file under every check of this module, and ``schema`` (:func:`ferreport.runs.schemas.validate`)."""
    doc = parse_json(read_inside(path, max_bytes, root=root), path)
    if schema is not None:
        validate(doc, schema, path)
    return doc


def check_npz(fh: BinaryIO, where: str | os.PathLike[str], keys: tuple[str, ...], max_bytes: int) -> None:
    """Refuse (ArtefactError naming ``where``) an ``.npz`` (open binary file ``fh``) whose members ``keys``
    are missing, object arrays, or declare more than ``max_bytes`` in all: read from each ``.npy`` header,
    before any data is inflated. ``fh`` is left at its start."""
    total = 0
    try:
        with zipfile.ZipFile(fh) as zf:
            names = set(zf.namelist())
            for key in keys:
                member = f"{key}.npy"
                if member not in names:
                    raise ArtefactError(where, f"has no array {key!r}")
                with zf.open(member) as npy:
                    version = np.lib.format.read_magic(npy)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(npy, max_header_size=10_000)
                if dtype.hasobject:
                    raise ArtefactError(where, f"array {key!r} holds Python objects (a pickle); refused")
                total += math.prod(int(d) for d in shape) * dtype.itemsize
    except ArtefactError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ArtefactError(where, f"is not a readable .npz ({exc})") from None
    finally:
        fh.seek(0)
    if total > max_bytes:
        raise ArtefactError(where, f"declares {_mib(total)} of arrays, over the limit of {_mib(max_bytes)}")


def _where(path: Any) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else str(p) for p in path]
    return ".".join(parts).replace(".[", "[") or "(the top level)"


def _path_key(error: Any) -> list[str]:
    return [f"{p:08d}" if isinstance(p, int) else str(p) for p in error.absolute_path]


def _closest(error: Any) -> Any:
    """Of an anyOf error's alternatives, the first error of one whose type fits (else of any)."""
    groups: dict[Any, list[Any]] = {}
    for e in error.context:
        groups.setdefault(e.relative_schema_path[0], []).append(e)
    fitting = [g for g in groups.values() if not any(e.validator == "type" and not e.relative_path for e in g)]
    return sorted(fitting[0] if fitting else error.context, key=_path_key)[0]


def validate(doc: Any, schema: Mapping[str, Any], where: str | os.PathLike[str], *,
             hint: str = "not the form ferreport writes (edited or damaged?)") -> None:
    """Raise :class:`ArtefactError` naming ``where`` and the first bad field when ``doc`` breaks ``schema``."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=_path_key)
    if errors:
        error = errors[0]
        while error.context:  # anyOf: say what is wrong within the alternative of the right type
            error = _closest(error)
        message = error.message if len(error.message) <= 160 else error.message[:157] + "..."
        raise ArtefactError(where, f"field {_where(error.absolute_path)}: {message}; {hint}")
