"""Model calls that cannot hang the job: each runs under ``--model-timeout`` seconds.

A model from elsewhere may never return (an ONNX ``Loop`` without an end, a graph waiting on a
queue). :func:`bounded_call` runs one call in a daemon worker thread and waits at most the
timeout; when it does not return, the job stops with a ModelError (exit 4) naming the model and
the timeout, and the outputs are never written (every artefact is written whole or not at all).

The worker thread is kept for the next call (TensorFlow sets itself up once per thread); one that
did not return is never handed another. An ONNX call is also told to stop (onnxruntime's
``RunOptions.terminate``). TensorFlow has no way to stop a running call, so its thread is left
behind: :func:`abandoned` says so, and the CLI then ends the process with ``os._exit`` after its
cleanup instead of waiting on that thread.

The cost is a hand-off between two threads per batch (``benchmarks/model_timeout.py`` measures it
against direct calls).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TypeVar

from ferreport.errors import ModelError

__all__ = ["DEFAULT_MODEL_TIMEOUT", "abandoned", "bounded_call"]

#: Seconds one model call (the probe, or one scored batch) may take: generous, for a large model on a slow CPU.
DEFAULT_MODEL_TIMEOUT = 600.0

T = TypeVar("T")
_ABANDONED: list[str] = []
_LOCAL = threading.local()  # each calling thread's worker


def abandoned() -> bool:
    """Whether a model call that did not return was left running in this process."""
    return bool(_ABANDONED)


class _Worker:
    """A daemon thread that runs one call at a time for its caller (reused: TensorFlow sets up per thread)."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.stuck = False
        threading.Thread(target=self._loop, name="ferreport-model-call", daemon=True).start()

    def _loop(self) -> None:
        while True:
            fn, box, done = self.jobs.get()
            try:
                box["value"] = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread as it was
                box["error"] = exc
            finally:
                done.set()


def bounded_call(fn: Callable[[], T], timeout: float | None, what: str,
                 on_timeout: Callable[[], None] | None = None) -> T:
    """``fn()``'s result, or ModelError when it takes more than ``timeout`` seconds (None: no limit).

    ``what`` names the model in the message; ``on_timeout`` asks the call to stop (ONNX).
    An exception of ``fn`` is raised here as it was.
    """
    if timeout is None:
        return fn()
    worker = getattr(_LOCAL, "worker", None)
    if worker is None or worker.stuck:
        worker = _LOCAL.worker = _Worker()
    box: dict[str, object] = {}
    done = threading.Event()
    worker.jobs.put((fn, box, done))
    if not done.wait(timeout):
        worker.stuck = True  # never handed another call
        if on_timeout is not None:
            on_timeout()
        if not done.wait(5.0):
            _ABANDONED.append(what)
        raise ModelError(f"{what}: the model did not return within {timeout:g} s (--model-timeout); it may "
                         "loop forever. Raise --model-timeout for a model that is only slow")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]
