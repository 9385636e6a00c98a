"""Optimizers that Keras 3 lacks, here Yogi, usable by name from an experiment's YAML."""

from __future__ import annotations

import numbers

import keras
from keras import ops

ACTIVATIONS = ("sign", "tanh")


@keras.saving.register_keras_serializable(package="xrun")
class Yogi(keras.optimizers.Optimizer):
    """Yogi (Zaheer et al., NeurIPS 2018, Algorithm 2), as in TensorFlow Addons.

    Like Adam, but the second moment moves additively towards g^2,
    v_t = v + (1 - beta_2) * sign(g^2 - v) * g^2, so a burst of small gradients
    cannot shrink it (and blow up the step) as fast as Adam's moving average.
    After the step, an optional proximal step applies l1/l2 regularisation.

    Args:
        learning_rate: float, `LearningRateSchedule` or callable. TFA default 0.01.
        beta_1: decay rate of the first moment.
        beta_2: decay rate of the second moment.
        epsilon: added to sqrt(v); Yogi wants it larger than Adam's.
        l1_regularization_strength: >= 0, proximal l1 (soft-threshold) strength.
        l2_regularization_strength: >= 0, proximal l2 (shrinkage) strength.
        initial_accumulator_value: >= 0, starting value of v.
        activation: "sign" (the paper) or "tanh" (TFA's smooth sign, tanh(10x)).
        **kwargs: the usual `keras.optimizers.Optimizer` arguments
            (name, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ...).

    Invalid hyper-parameters raise ValueError, as Keras' own optimizers do, so
    the caller can turn it into an XrunError pointing at the YAML.
    """

    def __init__(self, learning_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-3,  # noqa: PLR0913 - Keras' API
                 l1_regularization_strength=0.0, l2_regularization_strength=0.0,
                 initial_accumulator_value=1e-6, activation="sign", name=None, **kwargs):
        _check_hyperparameters(beta_1, beta_2, epsilon, l1_regularization_strength,
                               l2_regularization_strength, initial_accumulator_value,
                               activation)
        # Keras rejects an int learning rate, and YAML turns `1` into an int.
        if isinstance(learning_rate, numbers.Real) and not isinstance(learning_rate, bool):
            learning_rate = float(learning_rate)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.l1_regularization_strength = l1_regularization_strength
        self.l2_regularization_strength = l2_regularization_strength
        self.initial_accumulator_value = initial_accumulator_value
        self.activation = activation

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        v_init = _filled_with(self.initial_accumulator_value)
        self._momentums = [self.add_variable_from_reference(var, "momentum")
                           for var in var_list]
        self._velocities = [self.add_variable_from_reference(var, "velocity", v_init)
                            for var in var_list]

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        beta_1 = _constant(self.beta_1, dtype)
        beta_2 = _constant(self.beta_2, dtype)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]

        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - beta_1))
        grad2 = ops.square(gradient)
        direction = self._direction(ops.subtract(grad2, v))
        self.assign_add(v, ops.multiply(ops.multiply(direction, grad2), 1 - beta_2))

        alpha = self._bias_corrected_lr(learning_rate, beta_1, beta_2, dtype)
        per_coord_lr = ops.divide(alpha, ops.add(ops.sqrt(v), _constant(self.epsilon, dtype)))
        stepped = ops.subtract(variable, ops.multiply(per_coord_lr, m))
        self.assign(variable, self._proximal(stepped, per_coord_lr, dtype))

    def _bias_corrected_lr(self, learning_rate, beta_1, beta_2, dtype):
        # iterations is still the pre-increment count here, so t = iterations + 1.
        local_step = ops.cast(self.iterations + 1, dtype)
        correction = ops.sqrt(1 - ops.power(beta_2, local_step)) / (1 - ops.power(beta_1, local_step))
        return ops.cast(learning_rate, dtype) * correction

    def _direction(self, x):
        if self.activation == "tanh":
            return ops.tanh(ops.multiply(x, 10.0))
        return ops.sign(x)

    def _proximal(self, x, per_coord_lr, dtype):
        # TFA's closed-form prox step: soft-threshold by l1, then shrink by l2;
        # the Python-level checks keep the default (no regularisation) graph minimal.
        l1 = self.l1_regularization_strength
        l2 = self.l2_regularization_strength
        if l1 > 0:
            threshold = ops.multiply(_constant(l1, dtype), per_coord_lr)
            x = ops.multiply(ops.sign(x), ops.relu(ops.subtract(ops.abs(x), threshold)))
        if l1 > 0 or l2 > 0:
            x = ops.divide(x, ops.add(1.0, ops.multiply(_constant(l2, dtype), per_coord_lr)))
        return x

    def get_config(self):
        config = super().get_config()
        config.update({
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "l1_regularization_strength": self.l1_regularization_strength,
            "l2_regularization_strength": self.l2_regularization_strength,
            "initial_accumulator_value": self.initial_accumulator_value,
            "activation": self.activation,
        })
        return config


def _constant(value, dtype):
    # Not ops.cast: that rounds a Python float through float32 first, which
    # would make a float64 variable's 0.9 into 0.89999998.
    return ops.convert_to_tensor(value, dtype=dtype)


def _filled_with(value):
    """An initializer; keras.initializers.Constant would round through float32 too."""
    return lambda shape, dtype=None: ops.full(shape, value, dtype=dtype)


def _check_hyperparameters(beta_1, beta_2, epsilon, l1, l2, initial_accumulator_value,
                           activation):
    """Raise ValueError for a hyper-parameter outside the range where Yogi is defined."""
    # beta_1 = 1 zeroes the bias correction's denominator; beta_2 = 1 freezes v.
    _require("beta_1", beta_1, lambda x: 0 <= x < 1, "a number in [0, 1)")
    _require("beta_2", beta_2, lambda x: 0 <= x < 1, "a number in [0, 1)")
    _require("epsilon", epsilon, lambda x: x >= 0, "a number >= 0")
    _require("l1_regularization_strength", l1, lambda x: x >= 0, "a number >= 0")
    _require("l2_regularization_strength", l2, lambda x: x >= 0, "a number >= 0")
    _require("initial_accumulator_value", initial_accumulator_value, lambda x: x >= 0,
             "a number >= 0")
    # Yogi keeps a positive v positive; v = 0 with g = 0 and no epsilon would be 0/0.
    if epsilon == 0 and initial_accumulator_value == 0:
        raise ValueError("Yogi: epsilon and initial_accumulator_value cannot both be 0")
    if activation not in ACTIVATIONS:
        raise ValueError(f"Yogi: activation must be one of {', '.join(ACTIVATIONS)}, "
                         f"got {activation!r}")


def _require(arg, value, ok, expected):
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (is_number and ok(value)):
        raise ValueError(f"Yogi: {arg} must be {expected}, got {value!r}")
