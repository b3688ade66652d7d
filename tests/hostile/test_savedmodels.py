"""SavedModels are vetted before they are loaded: every op of every graph and function that loading
or scoring runs must be on the allow-list of pure computation ops."""

from __future__ import annotations

import pytest

from ferreport.errors import ModelError
from ferreport.models.vetting import ALLOWED_OPS, check_savedmodel, savedmodel_ops
from tests import model_zoo as zoo
from tests.conftest import write_image
from tests.hostile.conftest import ferreport
from tests.hostile.savedmodels import KINDS, hostile_savedmodel

#: The op each hostile model is refused for (one of them, when it holds several).
REFUSED_FOR = {
    "init-write": "WriteFile", "serve-write": "WriteFile", "summary": "SummaryWriter|CreateSummaryFileWriter|"
    "WriteScalarSummary", "tfrecord": "DatasetToTFRecord", "cache": "CacheDatasetV2", "restore": "RestoreV2",
    "textline": "TextLineDataset", "readfile": "ReadFile", "pyfunc": "EagerPyFunc",
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-models")
    return {kind: hostile_savedmodel(root / kind, kind, root / f"{kind}.marker") for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_each_hostile_savedmodel_is_refused_before_loading_naming_the_op(hostile, kind):
    with pytest.raises(ModelError, match=rf"runs op .*ops refused in all: .*\b({REFUSED_FOR[kind]})\b.*--unsafe-model"):
        check_savedmodel(hostile[kind])
    assert not (hostile[kind].parent / f"{kind}.marker").exists()


def test_an_honest_savedmodel_holds_only_allowed_ops_and_its_restore_is_its_own(tmp_path):
    folder = zoo.savedmodel(tmp_path)
    ops = savedmodel_ops(folder)
    assert {o.op for o in ops} <= ALLOWED_OPS
    assert "RestoreV2" not in {o.op for o in ops}  # the loader's own restore of variables/ is not listed
    check_savedmodel(folder)


def test_the_allow_list_is_not_a_deny_list():
    for op in ("WriteFile", "ReadFile", "SaveV2", "RestoreV2", "PyFunc", "EagerPyFunc", "TextLineDataset",
               "TFRecordDataset", "CacheDatasetV2", "DatasetToTFRecord", "WriteScalarSummary",
               "CreateSummaryFileWriter",
               "MatchingFiles", "DeleteFile", "ImmutableConst", "LoadAndRemapMatrix"):
        assert op not in ALLOWED_OPS
    assert {"MatMul", "Conv2D", "Softmax", "ReadVariableOp", "StatefulPartitionedCall", "If", "While"} <= ALLOWED_OPS


@pytest.fixture(scope="module")
def two_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("two-images")
    for i in range(2):
        write_image(folder / f"face{i}.png", 64, 64, seed=i)
    return folder


def test_a_savedmodel_that_writes_when_loaded_is_refused_by_the_cli_and_writes_nothing(hostile, two_images,
                                                                                       tmp_path):
    marker = hostile["init-write"].parent / "init-write.marker"
    done = ferreport("predict", two_images, "--model", hostile["init-write"], "--out", tmp_path / "audit",
                     "--faces", "whole", "--format", "none")
    assert done.code == 4, done.stderr
    assert "runs op WriteFile" in done.error and "--unsafe-model" in done.error
    assert not marker.exists() and not (tmp_path / "audit").exists()


def test_unsafe_model_still_runs_it_and_the_report_says_so(hostile, two_images, tmp_path):
    marker = hostile["serve-write"].parent / "serve-write.marker"
    done = ferreport("predict", two_images, "--model", hostile["serve-write"], "--out", tmp_path / "audit",
                     "--faces", "whole", "--format", "html", "--unsafe-model")
    assert done.code == 0, done.stderr
    assert marker.exists()  # the model is really hostile: allowed to run, it wrote its file
    html = (tmp_path / "audit" / "report.html").read_text()
    assert "Model loaded without the safety checks" in html and "--unsafe-model was given" in html
