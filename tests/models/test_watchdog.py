"""Bounded model calls (ferreport.models.watchdog): results and errors pass through; a call over the
timeout is a ModelError naming the model, and the next call gets a fresh worker."""

from __future__ import annotations

import threading

import pytest

from ferreport.errors import ModelError
from ferreport.models.watchdog import abandoned, bounded_call


def test_a_result_and_an_error_come_back_as_they_were():
    assert bounded_call(lambda: 41 + 1, 5, "m") == 42
    with pytest.raises(ZeroDivisionError):
        bounded_call(lambda: 1 / 0, 5, "m")
    assert bounded_call(lambda: "direct", None, "m") == "direct"  # no limit: called in this thread


def test_a_call_over_the_timeout_stops_with_the_model_named_and_the_next_call_works():
    stopped = threading.Event()
    threads = []

    def slow() -> int:
        threads.append(threading.current_thread())
        stopped.wait(2.0)  # ends once asked to stop, as an ONNX run does
        return 0

    with pytest.raises(ModelError, match=r"model.onnx: the model did not return within 0.2 s \(--model-timeout\)"):
        bounded_call(slow, 0.2, "model.onnx", stopped.set)
    assert not abandoned()  # it ended when told to: nothing left running
    assert bounded_call(lambda: threading.current_thread(), 5, "m") is not threads[0]  # a fresh worker


def test_calls_reuse_one_worker_thread():
    first = bounded_call(threading.current_thread, 5, "m")
    assert bounded_call(threading.current_thread, 5, "m") is first and first is not threading.current_thread()
