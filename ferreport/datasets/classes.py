"""Class names as people and other datasets spell them, mapped onto the seven ExpW classes.

Models and folders name the expressions their own way: FER+ says ``happiness`` and
``anger``, CK+'s folders are ``anger``, ``sadness``, ``contempt``. :func:`canonical_class`
maps the common spellings (any case) to ExpW's names; a name it does not know (such as
``contempt``) is a class ferreport does not score, kept under its own name so the caller
can say which classes were dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

from ferreport.constants import CLASS_NAMES
from ferreport.errors import UsageError

__all__ = ["SYNONYMS", "canonical_class", "class_id", "parse_classes"]

#: Spellings of the seven ExpW classes (lower case) -> ExpW's name.
SYNONYMS: dict[str, str] = {
    **{name: name for name in CLASS_NAMES},
    "anger": "angry",
    "disgusted": "disgust", "disgusting": "disgust",
    "fearful": "fear", "afraid": "fear", "scared": "fear",
    "happiness": "happy", "joy": "happy",
    "sadness": "sad", "unhappy": "sad",
    "surprised": "surprise", "surprising": "surprise",
    "neutrality": "neutral",
}


def _key(name: str) -> str:
    return str(name).strip().lower().replace("-", "_").replace(" ", "_")


def canonical_class(name: str) -> str | None:
    """ExpW's name for ``name`` (any case, common synonyms), or None when it is no ExpW class."""
    return SYNONYMS.get(_key(name))


def class_id(name: str) -> int | None:
    """ExpW label id (0-6) of a class name or synonym, or of a digit string ``"0"``-``"6"``."""
    text = str(name).strip()
    if text.isdigit():
        return int(text) if int(text) < len(CLASS_NAMES) else None
    canonical = canonical_class(text)
    return CLASS_NAMES.index(canonical) if canonical else None


def parse_classes(value: str | Iterable[str], *, where: str = "--classes") -> tuple[str, ...]:
    """A model's class names in output order: ExpW classes under ExpW's names, others lower-cased.

    UsageError when the list is empty, names a class twice (``anger,angry``) or scores
    none of the seven.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [str(v).strip() for v in items]
    if not names or any(not n for n in names):
        raise UsageError(f"{where} {value!r}: give the model's class names in output order, comma-separated "
                         f"(e.g. {','.join(CLASS_NAMES)})")
    out: list[str] = []
    for raw in names:
        name = canonical_class(raw) or _key(raw)
        if name in out:
            raise UsageError(f"{where}: {raw!r} names the class {name!r} twice; each output needs its own class")
        out.append(name)
    if not any(n in CLASS_NAMES for n in out):
        raise UsageError(f"{where} {value!r}: none of these is an ExpW class ({', '.join(CLASS_NAMES)}, or a synonym "
                         "such as anger, happiness, sadness); ferreport has nothing to score")
    return tuple(out)
