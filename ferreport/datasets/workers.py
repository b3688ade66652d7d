"""Process-pool helpers: the start method to use, and an initializer that ends a worker with its parent."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys

__all__ = ["exit_with_parent", "pool_context"]


def exit_with_parent(parent_pid: int | None = None) -> None:
    """Pool initializer: on Linux, a worker is sent SIGTERM when the process that started it dies.

    Without it, killing ``ferreport`` (SIGKILL, OOM killer) leaves its decoding workers behind.
    ``parent_pid`` (the pool owner's pid, passed through ``initargs``) closes the race where
    the parent dies before this runs: the death signal is then never sent, so the worker
    checks its parent once more after arming it and leaves if the parent is gone.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: nothing to do
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def pool_context() -> multiprocessing.context.BaseContext:
    """The start method for a process pool: fork, or spawn once TensorFlow is loaded.

    Forking a process that has TensorFlow loaded can deadlock; spawn is safe there.
    """
    return multiprocessing.get_context("spawn" if "tensorflow" in sys.modules else "fork")
