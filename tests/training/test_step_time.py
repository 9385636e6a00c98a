"""runner/training/step_time.py: the step predicted from the model's own layers, update and loss, each measured
once on this machine and then read from the cache, without moving the run's random state."""

import hashlib
import json

import pytest

keras = pytest.importorskip("keras")

from keras.src.backend.common import global_state  # noqa: E402

from runner.training import peak, step_time  # noqa: E402

FIGURES = {"flops": 2.0e10, "step_overhead": 0.002}


def tiny(extra=()):
    """28x28x1 -> Conv2D(4, 3) -> MaxPool 2 -> Flatten -> [extra] -> Dense(10) softmax."""
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                             keras.layers.MaxPooling2D(2), keras.layers.Flatten(), *extra,
                             keras.layers.Dense(10, activation="softmax")])


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XRUN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(peak, "measure_machine", lambda: dict(FIGURES))
    return tmp_path / "machine.json"


def test_the_cache_key_is_the_class_and_a_hash_of_what_the_time_depends_on():
    parts = ("Dense", {"units": 10}, [[676]], ["float32"], [True], 8)
    digest = hashlib.sha256(b'["Dense", {"units": 10}, [[676]], ["float32"], [true], 8]').hexdigest()[:16]
    assert step_time.cache_key(*parts) == f"Dense:{digest}"


def test_a_layer_fed_by_the_model_input_gets_no_input_gradient_and_its_name_is_not_in_its_key():
    model = tiny()
    fed = {id(t) for t in model.inputs}
    conv_key, _ = step_time.layer_probe(model.layers[0], 8, fed)
    dense_key, _ = step_time.layer_probe(model.layers[3], 8, fed)
    conv_config = {k: v for k, v in model.layers[0].get_config().items() if k != "name"}
    assert conv_key == step_time.cache_key("Conv2D", conv_config, [[28, 28, 1]], ["float32"], [False], 8)
    other = tiny()  # the same layers under other names (conv2d_1, dense_1, ...): the same keys
    assert other.layers[3].name != model.layers[3].name
    assert step_time.layer_probe(other.layers[3], 8, {id(t) for t in other.inputs})[0] == dense_key
    assert step_time.layer_probe(model.layers[3], 16, fed)[0] != dense_key
    assert dense_key.startswith("Dense:")


def test_fastest_is_the_quickest_timed_call_after_the_traced_one(monkeypatch):
    calls = []
    clock = iter([0.0, 0.05, 1.0, 1.02, 2.0, 2.04])  # three timed calls: 50, 20 and 40 ms
    monkeypatch.setattr(peak.time, "perf_counter", lambda: next(clock))
    assert step_time.fastest(lambda: calls.append(1)) == pytest.approx(0.02)
    assert len(calls) == 4  # the first, untimed, traces


def test_a_slow_call_is_timed_once(monkeypatch):
    calls = []
    clock = iter([0.0, 0.5])
    monkeypatch.setattr(peak.time, "perf_counter", lambda: next(clock))
    assert step_time.fastest(lambda: calls.append(1)) == 0.5
    assert len(calls) == 2


def test_the_step_is_the_sum_of_its_parts_measured_once_then_read_from_the_cache(cache, monkeypatch):
    measured = []
    monkeypatch.setattr(step_time, "fastest", lambda call: measured.append(1) or 0.001)
    monkeypatch.setattr(step_time, "_measure_call", lambda: 0.0002)
    model = tiny()
    optimizer, loss = keras.optimizers.Adam(), keras.losses.CategoricalCrossentropy()
    first = step_time.step_seconds(model, 8, optimizer, loss)
    # Four layers (conv, pool, flatten, dense), the update and the loss at 1 ms each less a call's 0.2 ms; fit's
    # overhead 2 ms.
    assert first == pytest.approx({"layers": 4 * 0.0008, "update": 0.0008, "loss": 0.0008, "overhead": 0.002,
                                   "total": 6 * 0.0008 + 0.002})
    assert len(measured) == 6
    assert step_time.step_seconds(model, 8, optimizer, loss) == first
    assert len(measured) == 6  # the second time, all from the cache
    entry = json.loads(cache.read_text())[peak.machine_key()]
    assert len(entry[peak.TIMINGS]) == 7 and entry[peak.TIMINGS][step_time.CALL]["seconds"] == 0.0002
    assert entry["flops"] == 2.0e10
    assert peak.machine() == {**FIGURES, "cpu": peak._cpu()[0]}  # the timings are not machine figures


def test_measuring_moves_neither_the_model_nor_the_seeded_state(cache):
    keras.utils.set_random_seed(3)
    model = tiny([keras.layers.BatchNormalization(), keras.layers.Dropout(0.5)])
    before = [v.numpy().copy() for v in model.variables]
    keras.utils.set_random_seed(3)
    expected = keras.random.uniform((4,)).numpy().tolist()
    keras.utils.set_random_seed(3)
    optimizer, loss = keras.optimizers.SGD(momentum=0.9), keras.losses.CategoricalCrossentropy()
    names = dict(global_state.get_global_attribute("object_name_uids"))  # Keras's auto-name counters
    seconds = step_time.part_seconds(model, 8, optimizer, loss)
    assert all(s >= 0 for s in seconds.values()) and len(seconds) == 8
    assert dict(global_state.get_global_attribute("object_name_uids")) == names
    assert keras.random.uniform((4,)).numpy().tolist() == expected
    after = [v.numpy() for v in model.variables]  # BatchNormalization's statistics and Dropout's seed put back
    assert all((a == b).all() for a, b in zip(before, after))
