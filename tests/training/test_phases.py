"""Fine-tuning in phases with a local-weights backbone (MobileNet at width 0.25): the weights each phase trains,
BatchNormalization kept frozen, one continuous curve in MLflow, and a run resumed mid-phase equal to the whole one."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import experiment, history, interrupt_at, store_uri, train, write_experiment

pytestmark = pytest.mark.slow  # builds MobileNet; most tests train it

# MobileNet(alpha=0.25, include_top=False) by hand: convolutions 3*3*3*8 = 216 (conv1) + 9 x 1,240 (depthwise, over
# the 13 blocks' input channels 8, 16, 32, 32, 64, 64, 128 x 6, 256) + 196,224 (pointwise, 8*16 + 16*32 + 32*32 +
# 32*64 + 64*64 + 64*128 + 5 x 128*128 + 128*256 + 256*256) = 207,600; 27 BatchNormalization layers over 2,736
# channels: 5,472 scales and offsets that train, and 5,472 moving statistics that never do.
BACKBONE_TRAINABLE = 207_600 + 5_472
BACKBONE_BN_TRAINABLE = 5_472   # gamma + beta of every BatchNormalization (the same count as their mean + variance)
HEAD = 256 * 10 + 10            # Dense(10) on the 256 pooled features

MODEL = {"layers": [
    {"type": "ZeroPadding2D", "padding": 2, "name": "pad"},          # 28x28 digits to the 32x32 MobileNet needs
    {"type": "Concatenate", "inputs": ["pad", "pad", "pad"], "name": "rgb"},  # and 3 channels
    {"type": "Application", "name": "backbone", "class_name": "MobileNet", "weights": "backbone.weights.h5",
     "include_top": False, "pooling": "avg", "config": {"alpha": 0.25}},
    {"type": "Dense", "units": 10, "activation": "softmax", "name": "head"},
]}
PHASES = [{"epochs": 1, "freeze": ["backbone"], "learning_rate": 0.001}, {"epochs": 2, "learning_rate": 0.0001}]
DOC = experiment(data={"dataset": "mnist", "limit": 256, "validation": "split", "validation_split": 0.25},
                 model=MODEL, optimizer={"type": "Adam", "learning_rate": 0.001},
                 training={"epochs": 3, "batch_size": 64, "seed": 0, "phases": PHASES})


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """The backbone's 'pretrained' weights in a file: a MobileNet whose batch-norm statistics are those of a batch
    of images (momentum 0 for one pass in training mode), so that in inference mode its activations are normalised
    as in training (with the initial 0 and 1, 27 unnormalised layers leave gradients of 1e-18 at the first), and
    a phase that updated them would show."""
    keras.utils.set_random_seed(1)
    twin = keras.applications.MobileNet(weights=None, include_top=False, alpha=0.25, input_shape=(32, 32, 3))
    norms = [layer for layer in twin.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    twin(np.random.default_rng(0).random((64, 32, 32, 3), "float32"), training=True)
    for layer in norms:
        layer.momentum = 0.99
    path = tmp_path_factory.mktemp("weights") / "backbone.weights.h5"
    twin.save_weights(path)
    return path, twin


def folder_with(tmp_path, weights, document=DOC, name="whole"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "backbone.weights.h5").write_bytes(weights[0].read_bytes())  # beside the YAML, which names it so
    return write_experiment(folder, document)


def count(variables) -> int:
    return sum(int(np.prod(v.shape)) for v in variables)


def test_the_weights_each_phase_trains(tmp_path, weights):
    from runner.language.spec import load_spec
    from runner.model.compiler import build_model
    from runner.training import phases

    twin = weights[1]
    bn = [w for layer in twin.layers if isinstance(layer, keras.layers.BatchNormalization)
          for w in (layer.gamma, layer.beta)]
    assert (count(twin.trainable_weights), count(bn)) == (BACKBONE_TRAINABLE, BACKBONE_BN_TRAINABLE)
    document = {**DOC, "training": {**DOC["training"], "epochs": 4,
                                    "phases": [*PHASES, {"epochs": 1, "batch_norm": "train"}]}}
    spec = load_spec(folder_with(tmp_path, weights, document))
    model = build_model(spec)
    model.compile(optimizer=keras.optimizers.Adam(0.001), loss="categorical_crossentropy")
    [switch] = phases.schedule(model, spec)
    slots = count(model.optimizer.variables)
    assert slots == 2 * (BACKBONE_TRAINABLE + HEAD) + 2  # Adam's two moments of every weight, its step and rate
    trained = []
    for index in range(3):
        switch.enter(index)
        trained.append((phases.trainable_count(model), float(model.optimizer.learning_rate)))
        assert count(model.optimizer.variables) == slots  # one optimizer for every phase
    assert trained == [(HEAD, pytest.approx(0.001)),
                       (BACKBONE_TRAINABLE - BACKBONE_BN_TRAINABLE + HEAD, pytest.approx(0.0001)),  # BN kept frozen
                       (BACKBONE_TRAINABLE + HEAD, pytest.approx(0.001))]  # batch_norm: train; the YAML's rate


def test_one_run_one_curve_and_batch_norm_frozen_throughout(tmp_path, weights):
    path = folder_with(tmp_path, weights)
    result = train(path)
    uri = store_uri(path.parent)
    assert history(uri, result.run_id, "phase") == [1, 2, 2]  # epochs 1..3 (steps with no gap), one run
    assert history(uri, result.run_id, "trainable_params") == [
        HEAD, BACKBONE_TRAINABLE - BACKBONE_BN_TRAINABLE + HEAD, BACKBONE_TRAINABLE - BACKBONE_BN_TRAINABLE + HEAD]
    assert history(uri, result.run_id, "learning_rate") == pytest.approx([0.001, 0.0001, 0.0001])
    assert len(history(uri, result.run_id, "loss")) == len(history(uri, result.run_id, "val_loss")) == 3
    backbone, twin = result.model.get_layer("backbone"), weights[1]
    pairs = [(layer, twin.get_layer(layer.name)) for layer in backbone.layers if layer.weights]
    kept = [np.array_equal(a.numpy(), b.numpy()) for layer, other in pairs
            if isinstance(layer, keras.layers.BatchNormalization) for a, b in zip(layer.weights, other.weights)]
    changed = [not np.array_equal(layer.kernel.numpy(), other.kernel.numpy()) for layer, other in pairs
               if isinstance(layer, keras.layers.Conv2D)]  # DepthwiseConv2D's is depthwise_kernel
    assert (len(kept), all(kept)) == (27 * 4, True)  # statistics, scale and offset as loaded, after phase 2
    assert (len(changed), all(changed)) == (14, True)  # the convolutions were fine-tuned in phase 2




def test_a_run_resumed_mid_phase_equals_the_uninterrupted_one(tmp_path, weights):
    from helpers import only_run

    whole = train(folder_with(tmp_path, weights))
    cut = folder_with(tmp_path, weights, name="cut")
    with pytest.raises(KeyboardInterrupt):
        train(cut, extra_callbacks=[interrupt_at(3)])  # after epoch 2: phase 2's first of two
    uri = store_uri(cut.parent)
    resumed = train(cut, resume=only_run(uri).info.run_id)
    assert history(uri, resumed.run_id, "phase") == [1, 2, 2]
    assert history(uri, resumed.run_id, "learning_rate") == pytest.approx([0.001, 0.0001, 0.0001])
    for key in ("loss", "accuracy", "val_loss"):
        assert history(uri, resumed.run_id, key) == pytest.approx(whole.history[key], abs=1e-6), key
    assert resumed.test_loss == pytest.approx(whole.test_loss, abs=1e-6)
