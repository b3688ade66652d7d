"""Text helpers shared by every report: number formats (also the Jinja filters), short
file names, durations, nested JSON flattened to key/value rows, lookups in loose JSON.

Pure functions on plain values; nothing here knows a report kind.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "as_number",
    "parse_time",
    "as_int",
    "as_text",
    "dig",
    "duration",
    "first_present",
    "flatten",
    "fmt_conf",
    "fmt_int",
    "fmt_num",
    "fmt_p",
    "fmt_pct",
    "fmt_signed",
    "short",
]


# --------------------------------------------------------------------------- numbers (Jinja filters)


def fmt_num(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{float(x):.{digits}f}"


def fmt_pct(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{100 * float(x):.{digits}f}%"


def fmt_conf(x: Any) -> str:
    """A probability as a percentage rounded down (0.9996 -> 99.9%, never a false 100%)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{math.floor(float(x) * 1000 + 1e-9) / 10:.1f}%"


def fmt_int(x: Any) -> str:
    if x is None:
        return "—"
    return f"{int(x):,}"


def fmt_signed(x: Any, digits: int = 3) -> str:
    """A difference with its sign (``+0.012``); a difference that rounds to zero has none."""
    if x is None:
        return "—"
    v = float(x)
    return f"{v:+.{digits}f}" if round(v, digits) != 0 else f"{0:.{digits}f}"


def fmt_p(x: Any) -> str:
    """A p-value: four decimals below 0.01, ``< 0.0001`` below that."""
    if x is None:
        return "—"
    v = float(x)
    return "< 0.0001" if v < 1e-4 else f"{v:.4f}" if v < 0.01 else fmt_num(v, 3)


def as_int(v: Any) -> int:
    """An integer count from loose JSON; anything that is not one counts as 0."""
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


# --------------------------------------------------------------------------- names and JSON


def short(name: str, limit: int = 24) -> str:
    """A file's base name, shortened in the middle to ``limit`` characters (captions)."""
    base = name.rsplit("/", 1)[-1] or name  # sources are POSIX paths; a backslash is part of a name
    if len(base) <= limit:
        return base
    keep = limit - 1
    return base[: keep - keep // 3] + "…" + base[len(base) - keep // 3:]


def as_text(v: Any) -> str | None:
    """A JSON value as display text (objects and lists as compact JSON); None stays None."""
    if v is None:
        return None
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, sort_keys=True)
    return str(v)


def dig(obj: Any, path: str) -> Any:
    """``obj["a"]["b"]`` for the dotted ``path`` ``"a.b"``; None where a step is missing."""
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def first_present(sources: Iterable[tuple[Any, str]]) -> Any:
    """The first ``dig(obj, path)`` that is neither None nor empty text."""
    for obj, path in sources:
        v = dig(obj, path)
        if v is not None and v != "":
            return v
    return None


def flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested mapping -> sorted ``(dotted.key, text)`` pairs; every key is kept."""
    out: list[tuple[str, str]] = []
    if isinstance(obj, Mapping):
        if not obj and prefix:
            return [(prefix, "{}")]
        for key in sorted(obj, key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            out.extend(flatten(obj[key], name))
        return out
    if isinstance(obj, (list, tuple)):
        leaf = prefix.rsplit(".", 1)[-1].lower()
        if obj and all(isinstance(x, str) for x in obj) and leaf in ("argv", "command", "command_line", "cmd"):
            return [(prefix, shlex.join(obj))]
        return [(prefix, json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str))]
    if obj is None:
        return [(prefix, "—")]
    return [(prefix, str(obj))]


def parse_time(text: Any) -> _dt.datetime | None:
    """An ISO time from provenance.json (UTC when it names no zone); None when absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)


def as_number(x: Any) -> float | None:
    """``x`` as a float when it is a JSON number (not a bool), else None."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None
