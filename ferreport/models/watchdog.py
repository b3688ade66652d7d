"""Model calls that cannot hang the job: each runs under ``--model-timeout`` seconds.

A model from elsewhere may never return (an ONNX ``Loop`` without an end, a graph waiting on a
queue). :func:`bounded_call` runs one call in a daemon worker thread and waits at most the
timeout; when it does not return, the job stops with a ModelError (exit 4) naming the model and
the timeout, and the outputs are never written (every artefact is written whole or not at all).

An ONNX call is also told to stop (onnxruntime's ``RunOptions.terminate``). TensorFlow has no way
to stop a running call, so its thread is left behind: :func:`abandoned` says so, and the CLI then
ends the process with ``os._exit`` after its cleanup instead of waiting on that thread.

The worker thread costs about the same as a thread hand-off per batch
(``benchmarks/bench_model_timeout.py`` measures it against direct calls).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from ferreport.errors import ModelError

__all__ = ["DEFAULT_MODEL_TIMEOUT", "abandoned", "bounded_call"]

#: Seconds one model call (the probe, or one scored batch) may take: generous, for a large model on a slow CPU.
DEFAULT_MODEL_TIMEOUT = 600.0

T = TypeVar("T")
_ABANDONED: list[str] = []


def abandoned() -> bool:
    """Whether a model call that did not return was left running in this process."""
    return bool(_ABANDONED)


def bounded_call(fn: Callable[[], T], timeout: float | None, what: str,
                 on_timeout: Callable[[], None] | None = None) -> T:
    """``fn()``'s result, or ModelError when it takes more than ``timeout`` seconds (None: no limit).

    ``what`` names the model in the message; ``on_timeout`` asks the call to stop (ONNX).
    An exception of ``fn`` is raised here as it was.
    """
    if timeout is None:
        return fn()
    box: dict[str, object] = {}
    done = threading.Event()

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread as it was
            box["error"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=work, name="ferreport-model-call", daemon=True)
    worker.start()
    if not done.wait(timeout):
        if on_timeout is not None:
            on_timeout()
        if not done.wait(5.0):
            _ABANDONED.append(what)
        raise ModelError(f"{what}: the model did not return within {timeout:g} s (--model-timeout); it may "
                         "loop forever. Raise --model-timeout for a model that is only slow")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]
