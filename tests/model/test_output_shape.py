"""Issue 22, item 4: a Dense head on feature maps (Flatten left out) builds in Keras and fails only in training;
the compiler refuses it at the output layer's line, so `summary` and `run` (before any run exists) say so in one
line."""

from pathlib import Path

import pytest
from helpers import REPO, store_uri, xrun

from runner.errors import XrunError
from runner.language.spec import load_spec
from runner.training.settings import import_tensorflow

BASE = REPO / "experiments" / "base" / "seed004.yaml"
HINT = "put a Flatten or GlobalAveragePooling2D layer before this one"


@pytest.fixture(scope="module", autouse=True)
def tensorflow():
    return import_tensorflow()


def write(tmp_path: Path, layers: str, blocks: str = "") -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(f"extends: {BASE}\nname: t\nmodel:\n{blocks}  layers:\n{layers}")
    return path


def build_error(path: Path) -> str:
    from runner.model.compiler import build_model

    with pytest.raises(XrunError) as info:
        build_model(load_spec(path))
    return info.value.format()


def test_a_dense_head_on_feature_maps_is_refused_at_its_line(tmp_path):
    path = write(tmp_path, "    - {type: Conv2D, filters: 4, kernel_size: 3}\n"
                           "    - {type: Dense, units: 10, activation: softmax}\n")
    assert build_error(path) == (f"{path}:6:14: model.layers[1]: the model's output is (None, 26, 26, 10), 4D, but "
                                 f"the labels are (batch, classes); {HINT}")


def test_a_graph_whose_output_comes_from_a_block_is_refused_inside_the_block(tmp_path):
    blocks = "  blocks:\n    head:\n      layers:\n        - {type: Dense, units: 10, activation: softmax}\n"
    path = write(tmp_path, "    - {type: Conv2D, filters: 4, kernel_size: 3, name: c}\n"
                           "    - {type: Conv2D, filters: 4, kernel_size: 3, name: d, inputs: input}\n"
                           "    - {type: Add, inputs: [c, d]}\n    - {block: head}\n", blocks)
    assert build_error(path) == (
        f"{path}:7:18: model.blocks.head.layers[0] (in block 'head' at model.layers[3]): the model's output is "
        f"(None, 26, 26, 10), 4D, but the labels are (batch, classes); {HINT}")


def test_a_flattened_or_pooled_head_builds(tmp_path):
    from runner.model.compiler import build_model

    for reduce in ("Flatten", "GlobalAveragePooling2D"):
        path = write(tmp_path, f"    - {{type: Conv2D, filters: 4, kernel_size: 3}}\n    - {{type: {reduce}}}\n"
                               "    - {type: Dense, units: 10, activation: softmax}\n")
        assert tuple(build_model(load_spec(path)).outputs[0].shape) == (None, 10)


def test_summary_and_run_fail_in_one_line_and_no_run_is_made(tmp_path):
    path = write(tmp_path, "    - {type: Conv2D, filters: 4, kernel_size: 3}\n"
                           "    - {type: Dense, units: 10, activation: softmax}\n")
    line = (f"{path}:6:14: model.layers[1]: the model's output is (None, 26, 26, 10), 4D, but the labels are "
            f"(batch, classes); {HINT}\n")
    assert xrun("summary", path) == (2, "", line)
    uri = store_uri(tmp_path)
    code, _, err = xrun("run", path, "--tracking-uri", uri, "--quiet")
    assert (code, err) == (2, line)
    from mlflow import MlflowClient
    experiments = MlflowClient(uri).search_experiments()
    assert [r for e in experiments for r in MlflowClient(uri).search_runs([e.experiment_id])] == []
