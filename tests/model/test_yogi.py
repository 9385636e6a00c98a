"""Yogi against an independent float64 NumPy reference, under XLA, in training, and through save/load."""

from dataclasses import dataclass

import keras
import numpy as np
import pytest
import tensorflow as tf

from runner.model.yogi import Yogi

STEPS = 20
SHAPE = (3, 4)


@dataclass(frozen=True)
class Hyper:
    """Yogi's hyperparameters as the reference names them (an unknown one is a TypeError, as in a signature)."""

    lr: object = 0.01
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-3
    l1: float = 0.0
    l2: float = 0.0
    initial_accumulator_value: float = 1e-6
    activation: str = "sign"
    weight_decay: float = 0.0


def yogi_reference(x0, grads, **hyper):
    """Every iterate of Yogi from x0, written from the paper's form of the v update.

    `lr` is a float or a function of the 0-based step. Returns (iterates, signs), where
    signs[t] is sign(v - g^2) before step t, to check which branches the data exercised.
    """
    h = Hyper(**hyper)
    lr_at = h.lr if callable(h.lr) else (lambda step: h.lr)
    x = np.asarray(x0, np.float64).copy()
    m = np.zeros_like(x)
    v = np.full_like(x, h.initial_accumulator_value)
    iterates, signs = [], []
    for t, g in enumerate(grads, start=1):
        g = np.asarray(g, np.float64)
        base_lr = lr_at(t - 1)
        x = x - h.weight_decay * base_lr * x  # Keras' decoupled weight decay runs first
        signs.append(np.sign(v - g**2))
        m = h.beta_1 * m + (1 - h.beta_1) * g
        if h.activation == "sign":
            v = v - (1 - h.beta_2) * np.sign(v - g**2) * g**2
        else:
            v = v - (1 - h.beta_2) * np.tanh(10 * (v - g**2)) * g**2
        per_coord_lr = base_lr * np.sqrt(1 - h.beta_2**t) / (1 - h.beta_1**t) / (np.sqrt(v) + h.epsilon)
        x = x - per_coord_lr * m
        # argmin_w 1/2 (w - x)^2 / plr + l1 |w| + l2/2 w^2, in closed form
        x = np.sign(x) * np.maximum(np.abs(x) - h.l1 * per_coord_lr, 0) / (1 + h.l2 * per_coord_lr)
        iterates.append(x.copy())
    return iterates, signs


def make_gradients(seed=0, steps=STEPS, shape=SHAPE):
    """Gradients alternating between large and small, so v - g^2 takes both signs."""
    rng = np.random.default_rng(seed)
    scales = np.where(np.arange(steps) % 3 == 2, 0.01, 1.0)
    return [rng.normal(size=shape) * s for s in scales]


def run_yogi(optimizer, x0, grads, dtype="float64", jit=False):
    """Apply `grads` one step at a time; return the variable's value after every step."""
    var = keras.Variable(x0, dtype=dtype)
    optimizer.build([var])

    def step(g):
        optimizer.apply([g], [var])

    if jit:
        step = tf.function(step, jit_compile=True)
    iterates = []
    for g in grads:
        step(tf.constant(g, dtype=dtype))
        iterates.append(np.array(var.numpy(), np.float64))
    return iterates


def assert_all_steps_close(actual, expected, rtol=1e-10, atol=1e-13):
    assert len(actual) == len(expected) == STEPS
    for step, (a, e) in enumerate(zip(actual, expected), start=1):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=f"step {step}")


def assert_both_signs(signs):
    """The data exercised both branches of Yogi's v update, not only Adam-like growth."""
    later = np.stack(signs[1:])
    assert (later > 0).sum() >= 10 and (later < 0).sum() >= 10


def f32(value):
    """A float as Keras sees it after a float32 round trip (learning-rate variable, weight decay)."""
    return float(np.float32(value))


LR32 = f32(0.01)


@pytest.fixture
def x0():
    return np.random.default_rng(42).normal(size=SHAPE)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "xla"])
def test_default_hyperparameters_match_reference(x0, jit):
    grads = make_gradients()
    expected, signs = yogi_reference(x0, grads, lr=LR32)
    assert_both_signs(signs)
    assert_all_steps_close(run_yogi(Yogi(), x0, grads, jit=jit), expected)


CUSTOM = [
    dict(beta_1=0.5, beta_2=0.9, epsilon=1e-5, initial_accumulator_value=0.3, learning_rate=0.05),
    dict(beta_1=0.0, beta_2=0.99, epsilon=1e-2, initial_accumulator_value=0.0),
    dict(l1_regularization_strength=0.5, l2_regularization_strength=2.0, learning_rate=0.1),
    dict(l2_regularization_strength=0.3, activation="tanh", beta_2=0.95),
    dict(weight_decay=0.1, learning_rate=0.05, beta_2=0.9),
]


@pytest.mark.parametrize("kwargs", CUSTOM, ids=lambda kw: ",".join(kw))
def test_custom_hyperparameters_match_reference(x0, kwargs):
    ref_names = {"learning_rate": "lr", "l1_regularization_strength": "l1",
                 "l2_regularization_strength": "l2"}
    ref_kwargs = {ref_names.get(k, k): v for k, v in kwargs.items()}
    ref_kwargs["lr"] = f32(ref_kwargs.get("lr", 0.01))
    ref_kwargs["weight_decay"] = f32(ref_kwargs.get("weight_decay", 0.0))
    grads = make_gradients(seed=1)
    expected, signs = yogi_reference(x0, grads, **ref_kwargs)
    assert_both_signs(signs)
    assert_all_steps_close(run_yogi(Yogi(**kwargs), x0, grads), expected)


def test_l1_drives_small_weights_to_exactly_zero(x0):
    grads = [np.zeros(SHAPE)] * STEPS
    final = run_yogi(Yogi(learning_rate=0.5, l1_regularization_strength=5.0), x0, grads)[-1]
    expected = yogi_reference(x0, grads, lr=0.5, l1=5.0)[0][-1]
    assert (final == 0).sum() == (expected == 0).sum() > 0


def test_float32_variable_matches_reference(x0):
    grads = make_gradients(seed=2)
    expected, _ = yogi_reference(x0.astype(np.float32), grads)
    actual = run_yogi(Yogi(), x0.astype(np.float32), grads, dtype="float32", jit=True)
    assert_all_steps_close(actual, expected, rtol=1e-5, atol=1e-6)


def test_learning_rate_schedule_matches_reference(x0):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=4, decay_rate=0.5)
    grads = make_gradients(seed=3)
    expected, _ = yogi_reference(x0, grads, lr=lambda step: f32(0.05 * 0.5 ** (step / 4)))
    actual = run_yogi(Yogi(learning_rate=schedule), x0, grads, jit=True)
    assert_all_steps_close(actual, expected, rtol=1e-6)


def test_loss_scale_optimizer_unscales_before_yogi(x0):
    """What mixed precision does: gradients arrive scaled and Yogi must see them unscaled."""
    grads = make_gradients(seed=4)
    optimizer = keras.optimizers.LossScaleOptimizer(Yogi(), initial_scale=1024.0,
                                                    dynamic_growth_steps=10_000)
    actual = run_yogi(optimizer, x0, [g * 1024.0 for g in grads])
    assert_all_steps_close(actual, yogi_reference(x0, grads, lr=LR32)[0])


def test_sparse_gradient_equals_its_dense_form():
    """An Embedding's tf.IndexedSlices gradient updates like the dense gradient it stands for."""
    rows, values = [0, 3], np.arange(1.0, 5.0).reshape(2, 2)
    dense = np.zeros((5, 2))
    dense[rows] = values
    results = []
    for grad in (tf.IndexedSlices(tf.constant(values), tf.constant(rows), tf.constant([5, 2])),
                 tf.constant(dense)):
        var = keras.Variable(np.ones((5, 2)), dtype="float64")
        optimizer = Yogi()
        for _ in range(3):
            optimizer.apply([grad], [var])
        results.append(var.numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12)
    np.testing.assert_allclose(results[0], yogi_reference(np.ones((5, 2)), [dense] * 3, lr=LR32)[0][-1],
                               rtol=1e-12)


def toy_regression(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x @ np.array([[1.5], [-2.0], [0.5]]) + 0.3).astype(np.float32)
    return x, y


def dense_model(optimizer, jit_compile=True):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    assert model.jit_compile == jit_compile
    return model


def test_xla_training_steps_match_reference():
    """Each jit-compiled train step equals the reference step on the MSE gradient."""
    x, y = toy_regression()
    model = dense_model(Yogi(learning_rate=0.1))
    kernel, bias = (w.astype(np.float64) for w in model.get_weights())
    params = np.concatenate([kernel.ravel(), bias])
    features = np.hstack([x, np.ones((len(x), 1))]).astype(np.float64)
    grads = []
    for _ in range(STEPS):
        residual = features @ params - y[:, 0]
        grads.append(2 * features.T @ residual / len(x))
        params = yogi_reference(np.concatenate([kernel.ravel(), bias]), grads, lr=f32(0.1))[0][-1]
        model.train_on_batch(x, y)
        kernel_now, bias_now = model.get_weights()
        np.testing.assert_allclose(np.concatenate([kernel_now.ravel(), bias_now]), params,
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_xla_fit_reduces_loss():
    x, y = toy_regression()
    model = dense_model(Yogi(learning_rate=0.1))
    history = model.fit(x, y, batch_size=16, epochs=30, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.01 * losses[0]
    np.testing.assert_allclose(model.get_weights()[0].ravel(), [1.5, -2.0, 0.5], atol=0.1)


@pytest.fixture
def mixed_float16():
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    yield
    keras.mixed_precision.set_dtype_policy(previous)


@pytest.mark.slow
def test_xla_fit_under_mixed_precision(mixed_float16):
    x, y = toy_regression()
    model = dense_model(Yogi(learning_rate=0.1))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert type(model.optimizer.inner_optimizer) is Yogi
    history = model.fit(x, y, batch_size=16, epochs=30, verbose=0)
    assert model.layers[0].kernel.dtype == "float32"
    assert history.history["loss"][-1] < 0.01 * history.history["loss"][0]
    np.testing.assert_allclose(model.get_weights()[0].ravel(), [1.5, -2.0, 0.5], atol=0.1)


NON_DEFAULT = dict(learning_rate=0.05, beta_1=0.8, beta_2=0.99, epsilon=1e-4,
                   l1_regularization_strength=0.01, l2_regularization_strength=0.02,
                   initial_accumulator_value=0.1, activation="tanh", clipnorm=1.0, name="yogi_x")


def test_config_round_trip():
    optimizer = Yogi(**NON_DEFAULT)
    config = optimizer.get_config()
    for key, value in NON_DEFAULT.items():
        assert config[key] == (f32(value) if key == "learning_rate" else value), key
    restored = Yogi.from_config(config)
    assert type(restored) is Yogi
    assert restored.get_config() == config


def test_serialize_by_registered_name():
    serialized = keras.optimizers.serialize(Yogi(**NON_DEFAULT))
    assert serialized["registered_name"] == "xrun>Yogi"
    restored = keras.optimizers.deserialize(serialized)
    assert type(restored) is Yogi
    assert restored.get_config() == Yogi(**NON_DEFAULT).get_config()


def test_saved_model_loads_with_yogi_and_its_state(tmp_path):
    x, y = toy_regression(n=16)
    model = dense_model(Yogi(**NON_DEFAULT), jit_compile=False)
    model.fit(x, y, epochs=2, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)

    loaded = keras.saving.load_model(path)
    assert type(loaded.optimizer) is Yogi
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables) == 6
    for saved, restored in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy(), err_msg=saved.path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_integer_learning_rate_is_accepted():
    assert Yogi(learning_rate=1).get_config()["learning_rate"] == 1.0


@pytest.mark.parametrize("kwargs, message", [
    (dict(beta_1=1.0), "beta_1 must be a number in [0, 1), got 1.0"),
    (dict(beta_2=-0.1), "beta_2 must be a number in [0, 1)"),
    (dict(epsilon=-1e-3), "epsilon must be a number >= 0"),
    (dict(l1_regularization_strength=-1.0), "l1_regularization_strength must be a number >= 0"),
    (dict(l2_regularization_strength="big"), "l2_regularization_strength must be a number >= 0"),
    (dict(initial_accumulator_value=-1e-6), "initial_accumulator_value must be a number >= 0"),
    (dict(epsilon=0.0, initial_accumulator_value=0.0), "cannot both be 0"),
    (dict(activation="relu"), "activation must be one of sign, tanh, got 'relu'"),
])
def test_invalid_hyperparameters_raise_value_error(kwargs, message):
    """ValueError, like Keras' optimizers, so the compiler can add the YAML location."""
    with pytest.raises(ValueError, match="^Yogi: ") as raised:
        Yogi(**kwargs)
    assert message in str(raised.value)
