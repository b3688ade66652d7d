"""Hostile inputs, run as a user's job would be: ``python -m ferreport`` in a child process whose
address space is capped (``RLIMIT_AS``) and whose run is bounded by a timeout. The timeout is a
hang guard, not a timing assert: a case that takes long is a failure only because it never ends.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from ferreport.cli.main import main
from ferreport.runs import folder as names
from ferreport.runs.cells import name_text
from tests.conftest import write_image
from tests.report.run_dirs import make_run_dir

#: The child's address-space cap: TensorFlow with a small model needs under 4 GiB of it.
MEMORY_LIMIT = 6 * 1024**3
#: Seconds a child may run before the case counts as a hang.
HANG_GUARD_S = int(os.environ.get("FERREPORT_TEST_HANG_GUARD", "240"))
#: Text of the file outside the folders that hostile links point at: it must never reach an output.
SECRET = "SECRET-OUTSIDE-TEXT-7f3a"


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def error(self) -> str:
        """The one ``ferreport: error:`` line (empty when there is none)."""
        return next((line for line in self.stderr.splitlines() if line.startswith("ferreport: error:")), "")


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _argv(args: tuple) -> list[str]:
    return [sys.executable, "-m", "ferreport", *map(str, args)]


def ferreport(*args: str | os.PathLike[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> Outcome:
    """Run ``python -m ferreport ARGS`` in a capped child; fail the test if it does not end."""
    return ferreport_many([args], cwd=cwd, env=env)[0]


def ferreport_many(arg_lists: list[tuple], *, cwd: Path | None = None, env: dict[str, str] | None = None
                   ) -> list[Outcome]:
    """Several independent ``ferreport`` children at once (each capped and bounded as :func:`ferreport`)."""
    procs = [subprocess.Popen(_argv(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=_cap_memory, cwd=cwd, stdin=subprocess.DEVNULL,
                              env={**os.environ, "CI": "true", **(env or {})}) for args in arg_lists]
    out = []
    try:
        for args, proc in zip(arg_lists, procs, strict=True):
            try:
                stdout, stderr = proc.communicate(timeout=HANG_GUARD_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"ferreport {' '.join(map(str, args))} did not end within {HANG_GUARD_S} s: it hangs")
            out.append(Outcome(proc.returncode, stdout, stderr))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return out


def outputs_text(folder: Path) -> str:
    """Every file under ``folder`` as text (bytes decoded leniently): to look for leaked text."""
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in sorted(Path(folder).rglob("*"))
                     if p.is_file() and not p.is_symlink())


@pytest.fixture
def secret_file(tmp_path) -> Path:
    """A file outside every run folder, holding :data:`SECRET` (valid JSON, so only the guard can refuse it)."""
    path = tmp_path / "outside" / "private.json"
    path.parent.mkdir()
    path.write_text(f'{{"note": "{SECRET}", "seed": 1, "dataset": "{SECRET}", "command_line": "{SECRET}"}}')
    return path


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A complete evaluated run folder (written as the pipeline writes it, without TensorFlow)."""
    return make_run_dir(tmp_path / "run", n=120)


#: One image per case of the issue's classes (``bytes``: a name that is not UTF-8).
HOSTILE_NAMES: tuple[str | bytes, ...] = (
    '=HYPERLINK("evil.invalid","x").jpg', "+cmd.jpg", "-2+3.jpg", "@SUM(1).jpg", "\ttab.jpg",
    "cr\rname.jpg", "lf\nname.jpg", "crlf\r\nname.jpg", 'q"u,o.jpg', "'quoted.jpg", "back\\slash.jpg",
    "comma,name.jpg", b"bad\xffname.jpg", "plain.jpg",
)


@pytest.fixture(scope="session")
def model_run(tmp_path_factory) -> Path:
    from ferreport.models.model_file import keras

    run = tmp_path_factory.mktemp("model")
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 5, strides=4)(inputs))
    keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(x)).save(run / names.MODEL)
    return run


@pytest.fixture(scope="session")
def audit(tmp_path_factory, model_run) -> tuple[Path, list[str]]:
    """An audit of a folder of hostile names (and one broken image with a formula name); its folder and the
    names as text."""
    folder = tmp_path_factory.mktemp("hostile-names")
    shown = []
    for i, name in enumerate(HOSTILE_NAMES):
        path = os.path.join(os.fsencode(folder), name) if isinstance(name, bytes) else os.path.join(folder, name)
        write_image(Path(os.fsdecode(path)), 64, 64, seed=i)
        shown.append(name_text(os.fsdecode(name) if isinstance(name, bytes) else name))
    (folder / "=broken.jpg").write_bytes(b"not an image")
    out = tmp_path_factory.mktemp("audit") / "out"
    result = CliRunner().invoke(main, ["predict", str(folder), "--model", str(model_run), "--out", str(out),
                                       "--faces", "whole", "--format", "html", "--no-saliency"])
    assert result.exit_code == 0, result.output
    return out, shown
