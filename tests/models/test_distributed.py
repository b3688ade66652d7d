"""Multi-worker training (tf.distribute.MultiWorkerMirroredStrategy) with real worker processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ferreport.errors import UsageError
from ferreport.models.distributed import worker_info
from ferreport.runs import folder as artifacts

TIMEOUT_S = 300  # both workers together; a hung collective fails the test instead of the suite


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def _run_workers(argv_of: callable, cwd: Path,
                 env_extra: dict[str, str] | None = None) -> list[subprocess.CompletedProcess]:
    """Start one process per worker, wait for all (bounded), return their results."""
    ports = _free_ports(2)
    procs = []
    for i in range(2):
        env = dict(os.environ, TF_CONFIG=_tf_config(ports, i), TF_CPP_MIN_LOG_LEVEL="2", **(env_extra or {}))
        procs.append(subprocess.Popen(argv_of(i), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, stdin=subprocess.DEVNULL))
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=TIMEOUT_S)
            results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return results


# --------------------------------------------------------------------------- TF_CONFIG


def test_worker_info_reads_tf_config():
    env = {"TF_CONFIG": _tf_config([1, 2], 1)}
    assert worker_info(env) == {"workers": 2, "task_type": "worker", "task_index": 1, "chief": False}
    env = {"TF_CONFIG": _tf_config([1, 2], 0)}
    assert worker_info(env)["chief"] is True
    with_chief = {"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "worker", "index": 0}}
    info = worker_info({"TF_CONFIG": json.dumps(with_chief)})
    assert (info["workers"], info["chief"]) == (2, False)


@pytest.mark.parametrize("value, needle", [
    (None, "TF_CONFIG is not set"),
    ("{not json", "not valid JSON"),
    ('{"cluster": {"worker": ["a:1"]}}', "needs both 'cluster' and 'task'"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}', "is not in its cluster"),
    ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "does not train"),
])
def test_worker_info_names_what_is_wrong(value, needle):
    env = {} if value is None else {"TF_CONFIG": value}
    with pytest.raises(UsageError, match=needle):
        worker_info(env)


def test_multiworker_needs_an_out_dir(sample_dataset, tmp_path, monkeypatch):
    from ferreport.config import RunConfig
    from ferreport.models.train_stage import train

    monkeypatch.setenv("TF_CONFIG", _tf_config([1, 2], 0))
    with pytest.raises(UsageError, match="--out"):
        train(RunConfig.build(data=sample_dataset, strategy="multiworker", reports_dir=tmp_path, epochs=1))


# --------------------------------------------------------------------------- two real workers


def test_two_workers_train_one_run_directory(sample_dataset, tmp_path):
    """Two processes on 127.0.0.1 train one epoch together; only the chief writes, once."""
    work = tmp_path / "work"
    work.mkdir()
    run_dir = work / "reports" / "mw-run"

    def argv(i: int) -> list[str]:
        return [sys.executable, "-m", "ferreport", "train", "--data", str(sample_dataset), "--out", str(run_dir),
                "--epochs", "1", "--batch-size", "16", "--balance", "class-weight", "--strategy", "multiworker"]

    chief, worker = _run_workers(argv, work, {"FERREPORT_CACHE": str(tmp_path / "cache")})
    assert chief.returncode == 0, chief.stderr[-3000:]
    assert worker.returncode == 0, worker.stderr[-3000:]
    assert "the chief wrote" in worker.stderr
    # exactly one run directory, and nothing else written by either worker
    assert sorted(p.name for p in (work / "reports").iterdir()) == [artifacts.MARKER, "mw-run"]
    assert sorted(p.name for p in work.iterdir()) == ["reports"]
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "splits.csv", "data_summary.json", "history.csv", "model.keras", "provenance.json",
            "checkpoint"} <= names
    assert not [p for p in run_dir.rglob("*") if ".part" in p.name]
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [1]
    assert np.isfinite(history[["loss", "accuracy", "val_loss", "val_accuracy"]].to_numpy()).all()
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    assert state["epochs_done"] == 1 and state["config"]["strategy"] == "multiworker"
    from ferreport.models.model_file import load_model

    assert load_model(run_dir / "model.keras").output_shape == (None, 7)


_RESUME_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from ferreport.models.training import TrainConfig, train_model
    run_dir, epochs, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 64, 64, 3), dtype=np.uint8)
    y = np.arange(40) % 7
    cfg = TrainConfig.from_recipe("seed", epochs=epochs, batch_size=8, seed=4, strategy="multiworker", arch="seed",
                      lr_schedule="cosine", warmup_epochs=1)
    res = train_model(x[:32], y[:32], x[32:], y[32:], cfg, run_dir, resume=resume, class_weight={0: 2.0})
    print(json.dumps({"epochs_run": res.epochs_run, "chief": res.is_chief, "resumed": res.resumed_from_epoch,
                      "loss": res.history["loss"].tolist()}))
""")


def test_two_workers_resume_from_the_chiefs_checkpoint(tmp_path):
    """Workers stop after epoch 1, then resume together to epoch 2 from the chief's checkpoint."""
    script = tmp_path / "worker.py"
    script.write_text(_RESUME_SCRIPT)
    run_dir = tmp_path / "run"
    outs = []
    for epochs, resume in ((1, "0"), (2, "1")):
        results = _run_workers(lambda i, e=epochs, r=resume: [sys.executable, str(script), str(run_dir), str(e), r],
                               tmp_path)
        for r in results:
            assert r.returncode == 0, r.stderr[-3000:]
        outs.append([json.loads(r.stdout.strip().splitlines()[-1]) for r in results])
    first, second = outs
    assert [o["chief"] for o in first] == [True, False]
    assert [o["resumed"] for o in second] == [1, 1]
    assert [o["epochs_run"] for o in second] == [2, 2]
    # both workers saw the same (all-reduced) losses, and the resumed history keeps epoch 1
    assert second[0]["loss"] == pytest.approx(second[1]["loss"], rel=1e-6)
    assert second[0]["loss"][0] == pytest.approx(first[0]["loss"][0], rel=1e-9)
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [1, 2]
