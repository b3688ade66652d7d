"""Every leaf of real artefacts, mutated: the schema refuses the file, or the report is built from it.
Never an unexpected error (exit 70)."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ferreport.errors import FerreportError
from ferreport.evaluation.stored_run import load_run
from ferreport.report.evaluation import build_report_context
from ferreport.report.render import render_html
from ferreport.runs import folder as names
from ferreport.runs.folder import SCHEMAS
from ferreport.runs.guard import ArtefactError, validate
from tests.report.run_dirs import make_run_dir

ARTEFACTS = (names.METRICS, names.PROVENANCE, names.CONFIG, names.DATA_SUMMARY, names.LABEL_NOISE)
MUTATIONS: tuple[Any, ...] = ("text", -1, None, [], {}, 1e300, True)


def leaves(doc: Any, path: tuple = ()) -> Iterator[tuple]:
    if isinstance(doc, dict) and doc:
        for k, v in doc.items():
            yield from leaves(v, (*path, k))
    elif isinstance(doc, list) and doc:
        yield from leaves(doc[0], (*path, 0))  # the first item stands for the rest
    else:
        yield path


def mutated(doc: Any, path: tuple, value: Any) -> Any:
    out = copy.deepcopy(doc)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


@pytest.mark.broken_artefacts
def test_each_mutated_leaf_is_refused_by_the_schema_or_reported(tmp_path):
    run = make_run_dir(tmp_path / "run", n=60)
    originals = {name: json.loads((run / name).read_text()) for name in ARTEFACTS}
    accepted, refused = [], 0
    for name, doc in originals.items():
        for path in leaves(doc):
            for value in MUTATIONS:
                if not path:
                    continue
                candidate = mutated(doc, path, value)
                try:
                    validate(candidate, SCHEMAS[name], name)
                except ArtefactError:
                    refused += 1
                    continue
                accepted.append((name, path, value, candidate))
    assert refused > 100 and accepted
    for name, path, value, candidate in [*random.Random(0).sample(accepted, 6),
                                         *(a for a in accepted if a[0] == names.METRICS)][:12]:
        (run / name).write_text(json.dumps(candidate))
        try:
            render_html(build_report_context(load_run(run), max_thumbnails=4))
        except FerreportError:
            pass  # a clear refusal (a mutated count that no longer matches predictions.csv, ...)
        except Exception as exc:  # noqa: BLE001 - the assertion: nothing else escapes
            pytest.fail(f"{name} {'.'.join(map(str, path))} = {value!r}: {type(exc).__name__}: {exc}")
        finally:
            (run / name).write_text(json.dumps(originals[name]))
    # and the ones the schema refuses leave the report whole (optional) or are exit 3 (metrics.json)
    (run / names.DATA_SUMMARY).write_text(json.dumps(mutated(originals[names.DATA_SUMMARY], ("faces_read",), "many")))
    ctx = build_report_context(load_run(run), max_thumbnails=4)
    assert any("data_summary.json: field faces_read" in w.message for w in ctx.warnings)
    (run / names.METRICS).write_text(json.dumps(mutated(originals[names.METRICS], ("accuracy",), "high")))
    with pytest.raises(ArtefactError, match="metrics.json: field accuracy"):
        load_run(Path(run))
