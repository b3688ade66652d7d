"""The report speaks to people: labelled Data and Provenance sections, a glossary of terms (issue 21, point 6).

Checked on the rendered page by content: the internal keys of data_summary.json,
provenance.json and config.json never appear as labels, the provenance is grouped, keys
without a label stay visible under "Other", and the terms are explained in the HTML and in
the printed PDF.
"""

from __future__ import annotations

import html as htmllib
import json
import re
from pathlib import Path

import pytest

from ferreport.evaluation.stored_run import load_run
from ferreport.report import build_report_context, render_html
from ferreport.report.words import GLOSSARY, Terms, data_facts, provenance_groups
from ferreport.runs import folder as artifacts
from tests.report.run_dirs import make_run_dir

#: data_summary.json, provenance.json and config.json as `ferreport run` writes them today.
SUMMARY_EXTRA = {
    "kind": "expw", "fingerprint": "e2f5" * 16, "clipped_boxes": 12, "cache": "/root/.cache/ferreport/17f3",
    "skipped_examples": {"unreadable image": "label.lst:7 (img_7.jpg)"},
    "class_weight": {"angry": 1.9, "happy": 0.4},
}
CONTRACT = {
    "channel_order": "rgb", "channels": 3, "classes": ["angry", "disgust", "fear", "happy", "sad", "surprise",
                                                       "neutral"],
    "format": "keras", "height": 64, "input_range": "0,1", "layout": "nhwc", "outputs": "auto",
    "outputs_detected": "probabilities", "outputs_evidence": "values in [0, 1] with rows summing to 1",
    "recipe": "ferreport 0.1.0, arch compact", "width": 64,
    "summary": "Model input: 64×64 RGB, [0, 1]; outputs: probabilities (detected); classes: 7 of 7 scored",
}
PROVENANCE_EXTRA = {
    "run_id": "wrun", "best_epoch": 4, "epochs_run": 5, "collapse": None, "model_contract": CONTRACT,
    "evaluation": {"data_fingerprint": "ab" * 32, "faces": 300, "model": "run/model.keras", "model_sha256": "cd" * 32,
                   "started": "2025-01-02T03:34:00+00:00", "finished": "2025-01-02T03:34:05+00:00"},
    "a_key_no_label_knows": {"deep": "<kept & shown>"},
}
CONFIG_EXTRA = {
    "augment": False, "cache_dir": None, "early_stopping_patience": None, "extra": {}, "label_smoothing": 0.0,
    "learning_rate": 0.002, "lr_schedule": "cosine", "monitor": "val_loss", "n_resamples": 1000, "out": "run",
    "reports_dir": "reports", "resume": False, "sample_faces": 2000, "strategy": "auto", "strict": False,
    "warmup_epochs": 1, "workers": None,
}
#: Internal names that must not be shown as labels (or as raw dict dumps) in the Data/Provenance sections.
RAW_KEYS = ("clipped_boxes", "skipped_examples", "model_sha256", "data_fingerprint", "model_contract",
            "learning_rate", "batch_size", "lr_schedule", "n_resamples", "command_line", "packages.",
            "outputs_detected", "kind expw", "{}")
GROUPS = ("Run", "Data", "Model", "Training", "Evaluation", "Software", "Other")


def _real_run(root: Path) -> Path:
    run = make_run_dir(root, n=150)
    for name, extra in ((artifacts.DATA_SUMMARY, SUMMARY_EXTRA), (artifacts.PROVENANCE, PROVENANCE_EXTRA),
                        (artifacts.CONFIG, CONFIG_EXTRA)):
        obj = json.loads((run / name).read_text())
        (run / name).write_text(json.dumps({**obj, **extra}))
    return run


def _section(page: str, sid: str) -> str:
    m = re.search(rf'<section class="section[^"]*" id="{sid}">(.*?)</section>', page, re.S)
    assert m, sid
    return m.group(1)


def _visible(fragment: str) -> str:
    """The text a reader sees (tags and attributes dropped, entities decoded)."""
    text = re.sub(r"<img[^>]*>", " ", fragment)
    text = re.sub(r"<[^>]+>", " ", text)
    return " ".join(htmllib.unescape(text).split())


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[Path, str]:
    run = _real_run(tmp_path_factory.mktemp("words") / "run")
    return run, render_html(build_report_context(load_run(run)))


def test_data_section_names_every_field_in_words(page):
    _, html = page
    data = _visible(_section(html, "data"))
    for raw in RAW_KEYS:
        assert raw not in data, raw
    for label in ("Dataset kind ExpW layout", "Boxes clipped at the image border 12", "Faces read 91,793",
                  "Face cache folder /root/.cache/ferreport/17f3", "Class weights in the loss angry 1.90, happy 0.40",
                  "Balancing of the training split SMOTE"):
        assert label in data, label
    # rows skipped by reason, in words, with the first example of each reason
    assert "Rows skipped 16: 12 unreadable image; 3 face box outside image; 1 <b>odd</b> reason" in data
    assert "label.lst:7 (img_7.jpg)" in data
    assert "&lt;b&gt;odd&lt;/b&gt; reason" in _section(html, "data")  # still escaped


def test_rows_skipped_none_and_clipped_none_read_as_words():
    facts = dict(data_facts({"dataset": "d", "kind": "folders", "clipped_boxes": 0, "skipped": {},
                             "skipped_examples": {}}))
    assert facts["Rows skipped"] == "none" and facts["Boxes clipped at the image border"] == "none"
    assert facts["Dataset kind"].startswith("class folders")
    assert all("{}" not in v for v in facts.values())


def test_provenance_is_grouped_and_labelled(page):
    _, html = page
    prov_html = _section(html, "provenance")
    headings = re.findall(r"<h3>(.*?)</h3>", prov_html)
    assert headings == list(GROUPS)
    labels = [_visible(x) for x in re.findall(r'<th scope="row">(.*?)</th>', prov_html, re.S)]
    visible = _visible(prov_html)
    for raw in RAW_KEYS:
        assert not any(raw in lab for lab in labels), raw
    assert "{}" not in visible
    for label in ("Learning rate (peak) 0.002", "Epochs planned 5", "Batch size 32 faces per step",
                  "Balancing of the training split SMOTE", "Augmentation (rotation, shift, shear, zoom, flip) off",
                  "Learning-rate schedule cosine decay", "Bootstrap resamples (for the intervals) 1,000",
                  "Random seed 0", "Input size 64 × 64 pixels", "Pixel values fed to the model [0, 1]",
                  "Outputs (as found) probabilities", "Model format Keras file", "Platform Linux x86_64",
                  "Started 2025-01-02 03:04:05 UTC", "Collapse check no collapse detected", "Trained in this run yes"):
        assert label in visible, label
    assert "Command line ferreport run --data 'data/expw & co'" in visible
    assert "data/expw &amp; co" in prov_html  # escaped in the page
    # the one key no label knows is shown under its own name, escaped; nothing recorded is hidden
    assert "provenance.json: a_key_no_label_knows.deep <kept & shown>" in visible
    assert "&lt;kept &amp; shown&gt;" in prov_html and "<kept & shown>" not in prov_html


def test_every_recorded_leaf_is_shown_somewhere():
    prov = {**json.loads(json.dumps(PROVENANCE_EXTRA)), "seed": 3, "packages": {"numpy": "2", "newlib": "1"}}
    cfg = {**CONFIG_EXTRA, "seed": 4, "surprise_setting": [1, 2]}
    groups = {g["title"]: g["rows"] for g in provenance_groups(prov, cfg, trained=True)}
    other = {r.label: r.value for r in groups["Other"]}
    assert other == {"provenance.json: a_key_no_label_knows.deep": "<kept & shown>",
                     "config.json: surprise_setting": "1, 2"}
    seeds = {r.label: r.value for r in groups["Evaluation"] if r.label.startswith("Random seed")}
    assert seeds == {"Random seed": "3", "Random seed (config.json)": "4"}  # differing values: both shown
    assert "newlib 1" in {r.label: r.value for r in groups["Software"]}["Python packages"]


def test_a_model_from_elsewhere_says_its_training_settings_are_not_how_it_was_trained():
    groups = {g["title"]: g["rows"] for g in provenance_groups({}, {"epochs": 25, "extra": {"model": "m.onnx"}},
                                                               trained=False)}
    assert groups["Training"][0].label == "Trained in this run" and groups["Training"][0].value.startswith("no")
    assert {r.label: r.value for r in groups["Model"]}["Model file"] == "m.onnx"


def test_audit_provenance_names_the_prediction_batch_not_a_training_batch():
    cfg = {"command": "predict", "batch_size": 256, "faces": "whole", "labels": "subfolders (auto)", "workers": 2,
           "model_contract": {**{k: v for k, v in CONTRACT.items() if k in ("height", "width")},
                              "outputs": "probabilities"}}
    groups = {g["title"]: {r.label: r.value for r in g["rows"]} for g in provenance_groups(
        {"model_contract": CONTRACT}, cfg)}
    assert "Training" not in groups
    assert groups["Evaluation"]["Prediction batch size"] == "256 faces"
    assert groups["Data"]["True labels from"] == "the sub-folder names (found automatically)"
    assert groups["Model"]["Outputs (as applied)"] == "probabilities"  # only what differs from the recorded contract


def test_terms_are_explained_where_used_and_listed_at_the_end(page):
    _, html = page
    for key in ("ece", "mce", "brier", "log_loss", "macro_f1", "ci"):
        name, explanation = GLOSSARY[key]
        assert re.search(r'<abbr class="term" title="{}">'.format(re.escape(str(htmllib.escape(explanation, quote=True))
                                                                      .replace("&#x27;", "&#39;"))), html), key
    terms = _visible(_section(html, "terms"))
    for key in ("ece", "mce", "brier", "log_loss", "macro_f1", "ci"):
        name, explanation = GLOSSARY[key]
        assert f"{name} {explanation}" in terms, key
    assert "McNemar" not in terms  # only the terms this page uses
    assert '<a href="#terms">Terms</a>' in html
    assert html.index('id="provenance"') < html.index('id="terms"')


def test_terms_unknown_keys_stay_plain_escaped_text():
    t = Terms()
    assert str(t.term("nope", "<b>")) == "&lt;b&gt;" and t.entries() == []
    assert str(t.label("Model SHA-256")).startswith('<abbr class="term"') and t.entries()[0][0] == "Model SHA-256"


def test_comparison_page_explains_mcnemar_and_paired_intervals(tmp_path):
    from ferreport.report.compare import build_compare_context, render_compare_html
    from tests.report.test_compare import make_pair

    a, b = make_pair(tmp_path / "reports", n=120)
    html = render_compare_html(build_compare_context(a, b, n_resamples=50))
    terms = _visible(_section(html, "terms"))
    for key in ("mcnemar", "paired_ci", "discordant", "macro_f1"):
        assert " ".join(GLOSSARY[key]) in terms, key
    assert '<abbr class="term" title="Compares two models' in html


@pytest.mark.slow
def test_glossary_prints_in_the_pdf(page, tmp_path):
    from pypdf import PdfReader

    from ferreport.report.render import render_pdf

    _, html = page
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(render_pdf(html))
    text = " ".join(" ".join((p.extract_text() or "") for p in PdfReader(str(pdf)).pages).split())
    assert "Terms" in text
    for phrase in ("Expected calibration error", "Maximum calibration error", "Brier score", "Cross-entropy",
                   "Boxes clipped at the image border", "Learning rate (peak)"):
        assert phrase in text, phrase
    assert "clipped_boxes" not in text and "skipped_examples" not in text


def test_report_notices_are_the_pages_warnings_as_console_lines(tmp_path):
    """What evaluate/predict can print: the same notices the page shows, in words, never dict reprs."""
    from ferreport.report import build_report_context, report_notices

    run = make_run_dir(tmp_path / "run", n=120, metrics_extra={
        "collapse": {"reasons": ["best validation accuracy 0.16 never beat the majority class"],
                     "likely_causes": ["too few epochs (1)"]}})
    lines = report_notices(run)
    page = [w.title for w in build_report_context(load_run(run)).warnings]
    assert len(lines) == len(page) and lines[0].startswith("warning: Prediction collapse: training did not learn")
    assert all(line.startswith(("warning: ", "note: ")) and "{" not in line for line in lines)
