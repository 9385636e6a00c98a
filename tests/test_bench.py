"""bench/reproduce.py: a short real training through it gives a row beside the seed's numbers, read back from MLflow."""

import json

import pytest
from helpers import REPO, bench_module, client, store_uri

from runner.training import settings

pytest.importorskip("tensorflow")


def reproduce_module():
    return bench_module("reproduce")


@pytest.mark.slow
def test_reproduce_appends_a_row_with_the_seeds_numbers(tmp_path, capsys):
    out, uri = tmp_path / "reproduce.json", store_uri(tmp_path)
    out.write_text('[{"model": "earlier"}]\n')
    reproduce = reproduce_module()
    assert reproduce.main(["--models", "model3", "--tracking-uri", uri, "--out", str(out),
                           "--set", "data.limit=256", "--set", "training.epochs=1",
                           "--set", "tracking.log_model=false", "--set", "tracking.log_images=false"]) == 0
    earlier, row = json.loads(out.read_text())
    assert earlier == {"model": "earlier"}
    run = client(uri).get_run(row["run_id"])
    assert run.data.metrics["test_accuracy"] == pytest.approx(row["xrun_test_accuracy"])
    assert (row["model"], row["epochs"], row["seed_test_accuracy"], row["seed_test_loss"]) == ("model3", 1, 0.9929,
                                                                                              0.0309)
    assert row["overrides"] == ["data.limit=256", "training.epochs=1", "tracking.log_model=false",
                                "tracking.log_images=false"]
    points = (row["xrun_test_accuracy"] - 0.9929) * 100
    assert (f"| model3 | 1 | 99.29 % | {row['xrun_test_accuracy'] * 100:.2f} % | {points:+.2f} | 0.0309 |"
            in capsys.readouterr().out)


def test_flops_are_counted_per_layer_from_the_built_model():
    from runner.language.spec import load_spec
    from runner.model.compiler import build_model

    flops = bench_module("flops")
    model = build_model(load_spec(REPO / "experiments" / "model1.yaml"))
    by_layer = flops.forward_flops(model)
    # model1: 28x28x1 -> conv 5x5x32 (24x24) -> pool -> conv 5x5x64 (8x8) -> pool -> 1024 -> 512 -> 128 -> 10.
    assert by_layer["conv2d"] == 2 * 5 * 5 * 1 * 32 * 24 * 24 == 921_600
    assert by_layer["conv2d_1"] == 2 * 5 * 5 * 32 * 64 * 8 * 8 == 6_553_600
    assert by_layer["dense"] == 2 * 1024 * 512
    assert by_layer["dense_2"] == 2 * 128 * 10
    assert by_layer["max_pooling2d"] == 2 * 2 * 12 * 12 * 32
    assert flops.training_flops_per_image(model) == 3 * sum(by_layer.values())
    assert flops.largest_conv(model).name == "conv2d_1"


@pytest.mark.slow
def test_gpu_script_smoke_runs_every_step_on_the_cpu(tmp_path):
    import subprocess

    out = tmp_path / "gpu.json"
    done = subprocess.run([str(REPO / "bench" / "gpu.sh"), "--smoke", "--models", "model4", "--out", str(out),
                           "--tracking-uri", store_uri(tmp_path)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["smoke"] is True and result["device_check"]["passed"] is None  # no GPU: nothing to check
    precision = "mixed_bfloat16" if settings.cpu_has_bfloat16() else "float32"  # auto on this CPU
    assert result["device_check"]["used"] == {"precision": precision, "jit_compile": "false",
                                              "steps_per_execution": "1"}
    assert set(result["overhead"]["rows"]) == {"overhead", "overhead_step"}
    [row] = result["reproductions"]
    assert (row["model"], row["epochs"]) == ("model4", 1)
    run = client(store_uri(tmp_path)).get_run(row["run_id"])
    assert run.data.metrics["test_accuracy"] == pytest.approx(row["xrun_test_accuracy"])
    assert "| model4 | 1 | 99.37 % |" in done.stdout


@pytest.mark.slow
def test_folder_bench_smoke_runs_both_sides_and_the_memory_probe(tmp_path):
    out = tmp_path / "folder.json"
    assert bench_module("folder").main(["--images", "48", "--size", "16", "--epochs", "2", "--batch", "16",
                                        "--memory-images", "24", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["throughput"]) == {"xrun cache: memory", "keras .cache()", "keras (no cache)"}
    assert all(len(epochs) == 2 for epochs in result["throughput"].values())
    assert [m["cache"] for m in result["memory"]] == ["none", "disk", "memory"]
    assert all(m["images"] == 23 and m["peak_rss_mib"] >= m["rss_before_epoch_mib"] > 0 for m in result["memory"])
