"""training.tta in a run, and `xrun evaluate --tta` of its model: the test set's probabilities averaged over the
augmentation's flip and shifts, against the same average computed here with NumPy from the trained model."""

import numpy as np
import pytest
from helpers import DATA_DIR, client, store_uri, tiny_yaml, train, xrun

from runner.records import names
from runner.training import tta
from runner.training.data import load_dataset
from runner.training.pipeline import to_inputs

pytestmark = pytest.mark.slow


def shifted(x: np.ndarray, dx: int) -> np.ndarray:
    """[N, H, W] images with the content moved dx pixels left (right if negative), the edge column repeated."""
    pad = np.pad(x, ((0, 0), (0, 0), (abs(dx), abs(dx))), mode="edge")
    return pad[:, :, 2 * abs(dx):] if dx > 0 else pad[:, :, :x.shape[2]]


def test_the_runs_tta_scores_and_evaluates_are_the_hand_computed_average(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_yaml(experiment="tta", limit=200, epochs=1, tracking=", log_images: false",
                              extra="augmentation: {horizontal_flip: true, width_shift_range: 2}\n"))
    uri = store_uri(tmp_path)
    result = train(path, ["training.tta=true"], uri=uri)
    run = client(uri).get_run(result.run_id)
    assert run.data.tags[names.TTA] == "identity, flip_h, left 2, right 2"
    x = load_dataset("mnist", DATA_DIR).x_test[:200]
    y = load_dataset("mnist", DATA_DIR).y_test[:200]
    assert shifted(np.arange(4).reshape(1, 1, 4), 2).tolist() == [[[2, 3, 3, 3]]]   # the helper itself
    views = [x, x[:, :, ::-1], shifted(x, 2), shifted(x, -2)]
    probabilities = np.mean([result.model.predict(to_inputs(v), verbose=0).astype(np.float64) for v in views], axis=0)
    loss, accuracy = tta.loss_and_accuracy(probabilities, y)
    assert run.data.metrics["test_accuracy_tta"] == accuracy
    assert run.data.metrics["test_loss_tta"] == pytest.approx(loss, rel=1e-5)

    code, out, err = xrun("evaluate", result.run_id, "--tta", "--tracking-uri", uri, "--data-dir", DATA_DIR)
    assert code == 0, err
    assert (f"test-time augmentation, averaged over 4 views (identity, flip_h, left 2, right 2): loss {loss:.4f}, "
            f"accuracy {accuracy:.4f}") in out
    evaluation, = [r for r in client(uri).search_runs([run.info.experiment_id])
                   if r.data.tags.get(names.EVALUATION_OF) == result.run_id]
    assert evaluation.data.metrics["accuracy_tta"] == accuracy
    assert evaluation.data.metrics["loss_tta"] == pytest.approx(loss, rel=1e-5)
    assert evaluation.data.tags[names.TTA] == "identity, flip_h, left 2, right 2"
