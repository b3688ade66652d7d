"""A non-editable install carries the templates and finds them outside the checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_install_finds_its_templates(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(REPO), "-w", str(wheels)],
                   check=True, timeout=300, capture_output=True)
    wheel = next(wheels.glob("ferreport-*.whl"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, timeout=300, capture_output=True)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import ferreport, ferreport.report as r; "
            "d = r.templates_dir(); print(ferreport.__file__); print(d); "
            "assert (d / 'base.html.j2').is_file() and (d / 'sections').is_dir()")
    out = subprocess.run([sys.executable, "-c", code, str(site)], check=True, timeout=120, capture_output=True,
                         text=True, cwd=tmp_path).stdout.splitlines()
    assert out[0].startswith(str(site)) and out[1].startswith(str(site))
