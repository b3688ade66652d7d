"""The rendering core: templates, Jinja environment, PDF printing that fetches nothing."""

from __future__ import annotations

import pytest


def test_url_fetcher_serves_data_urls_and_refuses_the_network():
    from ferreport.report.render import URLRefused, data_only_url_fetcher

    fetch = data_only_url_fetcher()
    for url in ("http://example.com/x.png", "https://example.com/font.woff", "file:///etc/passwd", "//example.com/a"):
        with pytest.raises(URLRefused):
            fetch(url)
    resp = fetch("data:text/plain;base64,aGVsbG8=")
    data = resp.read() if hasattr(resp, "read") else resp.get("string")
    assert data == b"hello"


@pytest.mark.slow
def test_pdf_renderer_ignores_external_references():
    from ferreport.report.render import render_pdf

    pdf = render_pdf('<p>x</p><img src="http://127.0.0.1:9/x.png">'
                     '<div style="background: url(https://127.0.0.1:9/y.png)">y</div>')
    assert pdf.startswith(b"%PDF")


def test_templates_dir_prefers_environment(tmp_path, monkeypatch):
    from ferreport.report.render import templates_dir

    default = templates_dir()
    assert (default / "base.html.j2").is_file()
    assert (default / "sections").is_dir()
    (tmp_path / "base.html.j2").write_text("x")
    monkeypatch.setenv("FERREPORT_TEMPLATES", str(tmp_path))
    assert templates_dir() == tmp_path
    monkeypatch.setenv("FERREPORT_TEMPLATES", str(tmp_path / "missing"))
    assert templates_dir() == default


def test_templates_autoescape_html_j2():
    from ferreport.report.render import environment

    env = environment()
    assert env.autoescape("sections/data.html.j2") is True
    assert env.from_string("{{ x }}").render(x="<i>") == "&lt;i&gt;"
