"""A non-editable install carries the templates and finds them outside the checkout."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory) -> Path:
    """The project built as a wheel (hatchling, no build isolation: no index) and installed into a folder."""
    assert importlib.util.find_spec("hatchling"), "hatchling is missing: pip install -e '.[test]'"
    tmp = tmp_path_factory.mktemp("packaging")
    wheels = tmp / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", str(REPO),
                    "-w", str(wheels)], check=True, timeout=300, capture_output=True)
    wheel = next(wheels.glob("ferreport-*.whl"))
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, timeout=300, capture_output=True)
    return site


def _run_installed(site: Path, code: str, cwd: Path) -> list[str]:
    """Run ``code`` against the installed copy only: PYTHONPATH=site, cwd outside the repository, no override."""
    env = {k: v for k, v in os.environ.items() if k != "FERREPORT_TEMPLATES"}
    env["PYTHONPATH"] = str(site)
    return subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True, text=True,
                          cwd=cwd, env=env).stdout.splitlines()


@pytest.mark.slow
def test_wheel_install_finds_its_templates(installed_wheel, tmp_path):
    site = installed_wheel
    code = ("import ferreport, ferreport.report as r; "
            "d = r.templates_dir(); print(ferreport.__file__); print(d); "
            "assert (d / 'base.html.j2').is_file() and (d / 'sections').is_dir()")
    out = _run_installed(site, code, tmp_path)
    assert out[0].startswith(str(site)) and out[1].startswith(str(site))


@pytest.mark.slow
def test_wheel_install_renders_a_template(installed_wheel, tmp_path):
    """A section template (importing macros.html.j2, using the glossary globals) renders from the wheel's copy."""
    code = ("from ferreport.report.render import render_template, templates_dir; print(templates_dir()); "
            "print(render_template('sections/label_audit.html.j2', "
            "section={'data': {'folds': 5, 'facts': [('Folds', '5')]}}))")
    out = _run_installed(installed_wheel, code, tmp_path)
    assert out[0] == str(installed_wheel / "ferreport" / "templates")
    html = "\n".join(out[1:])
    assert "(5-fold cross-validation" in html
    assert '<dl class="facts">' in html and "<dd>5</dd>" in html
