"""Progress of the long stages, on stderr only: a live bar on a terminal, one line per stage otherwise.

Every long stage (sample generation, decoding faces, each training epoch, prediction,
folder audits, report rendering) wraps its work in :func:`stage` and calls
:meth:`Stage.advance` as it goes. What the user sees depends on the mode the command
line set with :func:`configure`:

* ``live`` (a terminal, or ``--progress``): a `rich <https://rich.readthedocs.io>`_ bar per
  stage with its count, rate and ETA, and the stage's summary line when it ends;
* ``lines`` (no terminal, e.g. cron; the default there): only the summary line of each
  stage, ``prepare: 4,416 faces in 3.2 s``;
* ``off`` (``--no-progress``): nothing.

Nothing is ever written to stdout, so ``--json`` output stays one object. rich is imported
only when a bar is drawn (``ferreport --help`` imports neither rich nor TensorFlow).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["Stage", "configure", "echo", "is_live", "mode", "stage"]

#: The modes :func:`configure` sets.
MODES = ("live", "lines", "off")

_state: dict[str, Any] = {"mode": None, "progress": None, "depth": 0}


def configure(enabled: bool | None) -> str:
    """Set the mode from ``--progress`` (True), ``--no-progress`` (False) or neither (None: live on a
    terminal, lines otherwise); returns the mode."""
    _state["mode"] = "off" if enabled is False else "live" if enabled or _stderr_is_terminal() else "lines"
    return _state["mode"]


def mode() -> str:
    """The current mode (``lines`` or ``live`` by stderr when :func:`configure` was never called)."""
    return _state["mode"] or ("live" if _stderr_is_terminal() else "lines")


def is_live() -> bool:
    """Whether bars are drawn (a terminal or ``--progress``)."""
    return mode() == "live"


def _stderr_is_terminal() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def echo(message: str) -> None:
    """A line on stderr, printed above the live bars when they are shown (never between their frames)."""
    bars = _state["progress"]
    if bars is not None:
        bars.console.print(message, markup=False, highlight=False, soft_wrap=True)
    else:
        print(message, file=sys.stderr, flush=True)


@dataclass
class Stage:
    """One stage's counter: ``advance`` it; its summary line is printed when the ``with`` block ends."""

    name: str
    total: int | None
    unit: str
    started: float = field(default_factory=time.perf_counter)
    done: int = 0
    note: str = ""
    summary: str | None = None
    _task: Any = None

    def advance(self, n: int = 1, note: str | None = None) -> None:
        """Count ``n`` more items done; ``note`` (e.g. the loss so far) is shown after the bar."""
        self.done += int(n)
        if note is not None:
            self.note = note
        bars = _state["progress"]
        if bars is not None and self._task is not None:
            bars.update(self._task, completed=self.done, note=self.note)

    def set_total(self, total: int | None) -> None:
        """The number of items, once known (``None``: a spinner without ETA)."""
        self.total = total
        bars = _state["progress"]
        if bars is not None and self._task is not None:
            bars.update(self._task, total=total)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def line(self) -> str:
        """``prepare: 4,416 faces in 3.2 s`` (or the stage's own summary)."""
        if self.summary is not None:
            return f"{self.name}: {self.summary}"
        count = f"{self.done:,} {self.unit} in " if self.unit else ""
        return f"{self.name}: {count}{self.seconds:.1f} s"


@contextlib.contextmanager
def stage(name: str, total: int | None = None, unit: str = "items") -> Iterator[Stage]:
    """A stage of work: a live bar (mode ``live``), its summary line when it ends (``live``, ``lines``).

    Nothing is printed when the block raises: the error's own line says what happened.
    """
    current = Stage(name, total, unit)
    current_mode = mode()
    if current_mode == "live":
        bars = _open_bars()
        current._task = bars.add_task(name, total=total, note="", unit=unit)
    try:
        yield current
    finally:
        if current_mode == "live":
            _close_task(current)
    if current_mode != "off":
        echo(current.line())


def _open_bars() -> Any:
    """The shared rich Progress on stderr, started for the outermost stage."""
    if _state["progress"] is None:
        _state["progress"] = _new_bars()
        _state["progress"].start()
    _state["depth"] += 1
    return _state["progress"]


def _close_task(current: Stage) -> None:
    bars = _state["progress"]
    if bars is None:
        return
    bars.remove_task(current._task)
    _state["depth"] -= 1
    if _state["depth"] <= 0:
        bars.stop()
        _state["progress"], _state["depth"] = None, 0


def _new_bars() -> Any:
    """A rich Progress writing to stderr (forced to draw when ``--progress`` was given off a terminal)."""

    console = Console(stderr=True, force_terminal=True if not _stderr_is_terminal() else None)
    count, rate, eta = _columns()
    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), count, rate,
                    TimeElapsedColumn(), eta, TextColumn("{task.fields[note]}"), console=console,
                    redirect_stdout=False, redirect_stderr=True, transient=True)


def _columns() -> tuple[Any, Any, Any]:
    """``352/581 images``, ``8,544.1/s`` and ``ETA 0:00:01``, each blank while it means nothing (a stage
    without a count, or whose total is not known yet): rich's own columns are for bytes or show ``0/?``."""

    class CountColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            unit = task.fields.get("unit", "")
            if not unit:
                return Text("")
            of = f"/{task.total:,.0f}" if task.total is not None else ""
            return Text(f"{task.completed:,.0f}{of} {unit}", style="progress.download")

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None or not task.fields.get("unit") else f"{speed:,.1f}/s")

    class EtaColumn(TimeRemainingColumn):
        def render(self, task: Any) -> Text:
            if task.total is None:
                return Text("")
            return Text.assemble("ETA ", super().render(task))

    return CountColumn(), RateColumn(), EtaColumn()
