"""bench/export.py: a quick run trains, exports through runner.trained.export and measures every model on the test set."""

import json

import pytest
from helpers import DATA_DIR, bench_module

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")

MODELS = ["keras", "tflite_float32", "tflite_float16", "tflite_int8"]


def export_bench():
    return bench_module("export")


@pytest.mark.slow
def test_quick_run_measures_keras_and_each_tflite_export_on_the_whole_test_set(tmp_path, capsys):
    out = tmp_path / "export.json"
    assert export_bench().main(["--limit", "512", "--epochs", "1", "--rounds", "2", "--calls", "5",
                                "--data-dir", DATA_DIR, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert list(result) == ["machine", "load_average", "training", "settings", "models"]
    training = result["training"]
    assert (training["epochs"], training["limit"], training["test_images"]) == (1, 512, 512)
    assert result["settings"] == {"test_images": 10000, "batch": 500, "rounds": 2, "calls": 5, "check_images": 1000,
                                  "tflite_threads": "default"}
    models = result["models"]
    assert list(models) == MODELS
    # The model measured is the run's: Keras's accuracy on the run's 512 test images is the one MLflow recorded.
    assert models["keras"]["accuracy_on_the_runs_test_split"] == pytest.approx(training["test_accuracy"])
    assert models["keras"]["max_difference_from_keras"] == 0.0
    # conv 16, conv 32, dense 64, dense 10: 160 + 4,640 + 51,264 + 650 = 56,714 parameters, 4 bytes each in
    # float32, 2 in float16, 1 in int8 (plus the graph, the same in each file).
    assert models["tflite_int8"]["bytes"] < models["tflite_float32"]["bytes"] / 3
    assert models["tflite_float16"]["bytes"] < models["tflite_float32"]["bytes"] * 0.6
    assert models["tflite_float32"]["max_difference_from_keras"] < 1e-4
    assert models["tflite_float32"]["agreement_with_keras"] >= 0.9999
    for name in MODELS:
        row = models[name]
        assert row["kib"] == round(row["bytes"] / 1024, 1)
        assert 0 <= row["test_accuracy"] <= 1
        assert {kind: len(samples) for kind, samples in row["samples"].items()} == (
            {"one": 10, "all": 2} | ({"direct": 10} if name == "keras" else {}))
        assert row["batch1_ms"] > 0 and row["all_s"] > 0
    checks = {name: models[name]["export_check"] for name in MODELS[1:]}
    assert {name: (c["images"], c["tolerance"]) for name, c in checks.items()} == {
        "tflite_float32": (1000, 1e-4), "tflite_float16": (1000, 2e-2), "tflite_int8": (1000, None)}
    assert len({c["keras_accuracy"] for c in checks.values()}) == 1  # one model, the same 1,000 check images
    printed = capsys.readouterr().out
    int8 = models["tflite_int8"]
    assert (f"| TFLite int8 | {int8['kib']:,.1f} KiB | {int8['test_accuracy'] * 100:.2f} % | "
            f"{int8['max_difference_from_keras']:.2e} | {int8['batch1_ms']:.3f} ms | {int8['all_s']:.3f} s |"
            in printed)
    assert f"wrote {out}" in printed
