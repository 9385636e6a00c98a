"""A multi-label run end to end: experiments/multilabel.yaml on a tiny digit-pairs CSV, its metrics read back through
MLflow, then `xrun evaluate` and `xrun predict --threshold` on its logged model."""

import json

import numpy as np
import pytest
from digit_pairs import write_digit_pairs
from helpers import DATA_DIR, REPO, artifact_paths, artifact_text, client, history, only_run, store_uri, train, xrun

EXPERIMENT = REPO / "experiments" / "multilabel.yaml"


@pytest.mark.slow
def test_a_multi_label_run_logs_per_label_metrics_and_its_model_evaluates_and_predicts_per_label(tmp_path):
    csv = write_digit_pairs(tmp_path / "pairs", DATA_DIR, train=96, test=32)
    uri = store_uri(tmp_path)
    train(EXPERIMENT, [f"data.path={csv}", "training.epochs=1", "training.batch_size=32",
                       "tracking.experiment=tests", "tracking.log_images=false"], uri=uri)
    run = only_run(uri)
    metrics = run.data.metrics
    for key in ("loss", "accuracy", "f1_micro", "f1_macro", "auc", "val_loss", "val_f1_macro", "val_auc"):
        assert len(history(uri, run.info.run_id, key)) == 1, key  # one value per epoch
    labels = [str(d) for d in range(10)]
    assert {f"test_f1.{d}" for d in labels} <= set(metrics)
    assert {"test_f1_micro", "test_f1_macro", "test_auc", "test_exact_match"} <= set(metrics)
    assert metrics["test_f1_macro"] == pytest.approx(np.mean([metrics[f"test_f1.{d}"] for d in labels]))
    assert "test_per_label.csv" in artifact_paths(uri, run.info.run_id)
    rows = artifact_text(uri, run.info.run_id, "test_per_label.csv").splitlines()
    assert rows[0] == "label,precision,recall,f1,auc,support" and len(rows) == 11
    # 32 test images, one or two digits each: the supports are the test rows' digit counts.
    test_rows = [line.split(",") for line in csv.read_text().splitlines()[1:] if line.endswith(",test")]
    assert sum(int(r.split(",")[-1]) for r in rows[1:]) == sum(len(r[1].split(";")) for r in test_rows)
    assert run.data.tags["dataset.classes"] == ",".join(labels)

    # The logged model on the run's own test split gives the numbers the run logged.
    code, out, err = xrun("evaluate", run.info.run_id[:8], "--tracking-uri", uri, "--format", "json")
    assert code == 0, err
    scored = json.loads(out)
    assert scored["images"] == 32
    assert scored["f1_micro"] == pytest.approx(metrics["test_f1_micro"], abs=1e-9)
    assert scored["auc"] == pytest.approx(metrics["test_auc"], abs=1e-9)
    assert scored["loss"] == pytest.approx(metrics["test_loss"], rel=1e-4)
    assert [c["class"] for c in scored["per_class"]] == labels
    (evaluation,) = [r for r in client(uri).search_runs([run.info.experiment_id])
                     if r.data.tags.get("xrun.evaluation_of") == run.info.run_id]
    assert evaluation.data.metrics["f1_micro"] == scored["f1_micro"]

    # predict: each label at its own threshold; the labels listed are those at or above it.
    image = tmp_path / "pairs" / "images" / "test_0000.png"
    code, out, err = xrun("predict", run.info.run_id[:8], image, "--tracking-uri", uri, "--threshold", "0.2",
                          "--threshold", "3=0.9", "--format", "json")
    assert code == 0, err
    (found,) = json.loads(out)
    assert found["thresholds"] == {**{d: pytest.approx(0.2) for d in labels}, "3": pytest.approx(0.9)}
    chosen = {x["label"] for x in found["labels"]}
    assert chosen == {d for d in labels if found["probabilities"][d] >= found["thresholds"][d]}
