"""Property-based fuzzing: whatever a YAML file says, validate and summary either work or raise XrunError; and
every experiment the schema accepts (optional sections left out or not) validates, summarises and runs.

The budget is small in CI; set XRUN_FUZZ_EXAMPLES (e.g. 2000) for a longer run.
"""

import json
import os
from pathlib import Path

import pytest
import yaml
from helpers import DATA_DIR, only_run, store_uri, xrun
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import XrunError
from runner.language import schema
from runner.language.spec import load_spec
from runner.model import compiler

EXAMPLES = int(os.environ.get("XRUN_FUZZ_EXAMPLES", "40"))
EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
# The big seed-004 nets are slow to build; the small ones exercise the same code.
BASES = ["model1", "model2", "model5", "seed000_yogi", "seed001_cnn5", "seed002_method2"]
# CI replays the same cases (a failure is reproducible); a long run explores new ones.
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="XRUN_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)


def _documents() -> dict:
    return {name: load_spec(EXPERIMENTS / f"{name}.yaml").document for name in BASES}


DOCUMENTS = _documents()


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated(draw):
    """A seed experiment with one to three random edits: a value replaced, a key deleted or renamed."""
    import copy

    document = copy.deepcopy(DOCUMENTS[draw(st.sampled_from(BASES))])
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(document) if p]
        path = draw(st.sampled_from(paths))
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "rename"]))
        if action == "replace" or isinstance(parent, list):
            parent[path[-1]] = draw(values)
        elif action == "delete":
            del parent[path[-1]]
        else:
            parent[draw(st.text(min_size=1, max_size=10))] = parent.pop(path[-1])
    return document


def _check(path: Path) -> None:
    """The property: the project's own error, or a model, and never anything else."""
    try:
        spec = load_spec(path)
    except XrunError as exc:
        assert exc.line().strip() and "Traceback" not in exc.format()
        return
    try:
        compiler.build_model(spec)
    except XrunError as exc:
        assert exc.line().strip()


@pytest.fixture
def small_machine(monkeypatch):
    # A fuzzed Dense can legally ask for a billion weights; pretend memory is small so it is refused, not built.
    monkeypatch.setattr(compiler, "_memory_bytes", lambda: 400 << 20)


@FUZZ
@given(document=mutated())
def test_mutated_experiments_validate_or_fail_cleanly(document, tmp_path_factory, small_machine):
    path = tmp_path_factory.mktemp("fuzz") / "x.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    _check(path)


@FUZZ
@given(text=st.text(max_size=300))
def test_any_text_validates_or_fails_cleanly(text, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "x.yaml"
    path.write_text(text)
    with pytest.raises(XrunError):
        load_spec(path)  # random text is never a complete experiment


@FUZZ
@given(data=st.binary(max_size=300))
def test_any_bytes_validate_or_fail_cleanly(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "x.yaml"
    path.write_bytes(data)
    with pytest.raises(XrunError):
        load_spec(path)


# --- valid experiments: every file validate accepts runs ---------------------------------------------------------

DEFS = schema.schema()["$defs"]
OPTIMIZERS = DEFS["optimizer"]["properties"]["type"]["enum"]
LOSSES = DEFS["loss"]["then"]["enum"]
SCHEDULES = [
    {"type": "ExponentialDecay", "initial_learning_rate": 0.01, "decay_rate": 0.9},
    {"type": "CosineDecay", "initial_learning_rate": 0.001, "warmup_epochs": 0.5, "warmup_target": 0.01},
    {"type": "PiecewiseConstantDecay", "boundaries_epochs": [1], "values": [0.01, 0.001]},
]
AUGMENTATIONS = {"rotation_range": 10, "width_shift_range": 2, "height_shift_range": 0.1, "zoom_range": 0.1,
                 "horizontal_flip": True, "gaussian_noise": 0.05, "random_erasing": {},
                 "brightness_range": [0.8, 1.2], "channel_shift_range": 20, "random_crop": {"padding": 2}}


def _optional(draw, options: dict) -> dict:
    """Some of `options`' keys, each with one of its values; often none at all."""
    keys = draw(st.lists(st.sampled_from(sorted(options)), unique=True, max_size=len(options)))
    return {k: draw(st.sampled_from(options[k])) for k in keys}


@st.composite
def valid_experiments(draw):
    """A random experiment that the schema accepts, each optional section and key present or left out.

    Tiny on purpose: 32 training images in one batch, one epoch, so that a run is one step.
    """
    validation = draw(st.sampled_from(["split", "test", "none", None]))
    data = {"dataset": "mnist", "limit": 32, **({"validation": validation} if validation else {})}
    layers = [{"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]
    model, shapes = {"layers": layers}, [[28, 28, 1], [28, 28]]
    if draw(st.booleans()):
        model["blocks"] = {"conv": {"params": {"f": 2}, "layers": [{"type": "Conv2D", "filters": "${f}",
                                                                   "kernel_size": 3, "padding": "same"}]}}
        layers.insert(0, {"block": "conv", **_optional(draw, {"repeat": [1, 2], "f": [3]})})
        shapes = shapes[:1]  # a Conv2D needs the channels axis (summary says so at its line: test_compiler)
    model.update(_optional(draw, {"input_shape": shapes}))
    learning_rate = draw(st.sampled_from([None, 0.01, *SCHEDULES]))
    optimizer = {"type": draw(st.sampled_from(OPTIMIZERS)),
                 **({"learning_rate": learning_rate} if learning_rate else {})}
    document = {"name": "fuzz", "data": data, "model": model, "optimizer": optimizer,
                "loss": draw(st.sampled_from(LOSSES)),
                "training": {"epochs": 1, "batch_size": 32, **_optional(draw, {
                    "shuffle": [True, False], "seed": [0, 5], "precision": ["auto", "float32"],
                    "jit_compile": ["auto", False], "steps_per_execution": [1, "auto"],
                    "distribute": ["auto", "none"]})}}
    document.update(_optional(draw, {
        "description": ["a fuzzed experiment"], "metrics": [["accuracy"]],
        "augmentation": [_pick(draw, AUGMENTATIONS)],
        "tracking": [_optional(draw, {"experiment": ["fuzz"], "log_model": [False], "log_images": [False],
                                      "tags": [{"team": "x"}]})],
        "callbacks": [_callbacks(draw, validation != "none", learning_rate is None or learning_rate == 0.01)]}))
    return document


def _pick(draw, options: dict) -> dict:
    keys = draw(st.lists(st.sampled_from(sorted(options)), unique=True, max_size=3))
    return {k: options[k] for k in keys}


def _callbacks(draw, validates: bool, fixed_rate: bool) -> list:
    monitor = "val_loss" if validates else "loss"
    options = [{"type": "EarlyStopping", "monitor": monitor, "patience": 1}, {"type": "TerminateOnNaN"},
               {"type": "CSVLogger"}, {"type": "ModelCheckpoint", "monitor": monitor}]
    if validates:
        options.append({"type": "EarlyStopping"})  # monitors val_loss, the schema's default
    if fixed_rate:
        options.append({"type": "ReduceLROnPlateau", "monitor": monitor})
    return draw(st.lists(st.sampled_from(options), max_size=3))


def _write(tmp_path_factory, document: dict) -> Path:
    path = tmp_path_factory.mktemp("valid") / "x.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


# Each example builds a Keras model: fewer of them keep the fast tier fast (XRUN_FUZZ_EXAMPLES raises it too).
@settings(FUZZ, max_examples=max(EXAMPLES // 3, 1))
@given(document=valid_experiments())
def test_valid_experiments_validate_and_summarise(document, tmp_path_factory):
    path = _write(tmp_path_factory, document)
    assert xrun("validate", path) == (0, f"ok  {path}\n", ""), document
    code, out, err = xrun("summary", path)
    assert code == 0 and err == "" and "Total params" in out, (document, err)


@pytest.mark.slow
@settings(max_examples=int(os.environ.get("XRUN_FUZZ_RUNS", "3")), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(document=valid_experiments())
def test_valid_experiments_run_one_step_and_list(document, tmp_path_factory):
    path = _write(tmp_path_factory, document)
    uri = store_uri(path.parent)
    code, out, err = xrun("run", path, "--tracking-uri", uri, "--data-dir", DATA_DIR, "--quiet")
    assert (code, "Traceback" in err) == (0, False), (document, err)
    code, out, err = xrun("list", path.parent, "--tracking-uri", uri, "--format", "json")
    assert code == 0, (document, err)
    assert [(row["name"], row["runs"]) for row in json.loads(out)] == [("fuzz", 1)], (document, out)


@pytest.mark.slow
def test_an_experiment_without_any_optional_section_runs_and_lists(tmp_path):
    path = tmp_path / "minimal.yaml"
    path.write_text("name: minimal\ndata: {dataset: mnist, limit: 32}\n"
                    "model:\n  layers: [{type: Flatten}, {type: Dense, units: 10, activation: softmax}]\n"
                    "optimizer: {type: Adam}\nloss: CategoricalCrossentropy\ntraining: {epochs: 1}\n")
    uri = store_uri(tmp_path)
    code, out, err = xrun("run", path, "--tracking-uri", uri, "--data-dir", DATA_DIR, "--quiet")
    assert code == 0, err
    run = only_run(uri, experiment="xrun")  # tracking.experiment's default
    assert (run.info.status, run.data.params["tracking.log_model"], run.data.params["training.batch_size"]) == (
        "FINISHED", "true", "32")
    code, out, err = xrun("list", tmp_path, "--tracking-uri", uri, "--format", "json")
    assert code == 0, err
    assert [(row["name"], row["runs"]) for row in json.loads(out)] == [("minimal", 1)]
