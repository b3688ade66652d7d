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


def test_report_html_and_pdf_are_committed_together(tmp_path, monkeypatch):
    """A failed PDF keeps the previous pair; it never leaves a new report.html beside an old report.pdf."""
    from ferreport.report import render

    html_path, pdf_path = tmp_path / "report.html", tmp_path / "report.pdf"
    html_path.write_text("old html")
    pdf_path.write_bytes(b"old pdf")

    def broken_pdf(html):
        raise RuntimeError("WeasyPrint died")

    monkeypatch.setattr(render, "render_pdf", broken_pdf)
    with pytest.raises(RuntimeError):
        render.write_pages("<p>new</p>", ("html", "pdf"), html_path, pdf_path)
    assert html_path.read_text() == "old html" and pdf_path.read_bytes() == b"old pdf"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.pdf"]  # no temporaries left

    monkeypatch.setattr(render, "render_pdf", lambda html: b"%PDF new")
    out = render.write_pages("<p>new</p>", ("html", "pdf"), html_path, pdf_path)
    assert out == {"html": html_path, "pdf": pdf_path}
    assert html_path.read_text() == "<p>new</p>" and pdf_path.read_bytes() == b"%PDF new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.pdf"]
