"""bench/reproduce.py: a short real training through it gives a row beside the seed's numbers, read back from MLflow."""

import json
import statistics

import pytest
from helpers import REPO, auto_cpu_precision, bench_module, client, store_uri

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
    assert result["device_check"]["used"] == {"precision": auto_cpu_precision(), "jit_compile": "false",
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
    assert all(m["images"] == 20 and m["peak_rss_mib"] >= m["rss_before_epoch_mib"] > 0 for m in result["memory"])


def tta_module():
    return bench_module("time_to_accuracy")


def test_time_to_accuracy_is_the_first_epoch_at_the_target_and_the_bar_needs_the_final_score_in_the_budget():
    tta = tta_module()
    runs = [{"seed": 0, "val_accuracy": [0.99, 0.995, 0.996], "seconds_at_epoch_end": [40.0, 55.5, 70.0],
             "test_accuracy": 0.996, "wall_seconds": 90.0, "epochs": 3, "cpu_seconds": 150.0,
             "load_average_before": [1.0, 1.0, 1.0], "load_average_after": [2.25, 1.5, 1.0]},
            {"seed": 1, "val_accuracy": [0.99, 0.994, 0.9949], "seconds_at_epoch_end": [41.0, 56.0, 71.0],
             "test_accuracy": 0.9949, "wall_seconds": 91.0, "epochs": 3, "cpu_seconds": 160.0,
             "load_average_before": [2.0, 1.0, 1.0], "load_average_after": [2.0, 1.5, 1.0]},
            {"seed": 2, "val_accuracy": [0.991, 0.993, 0.997], "seconds_at_epoch_end": [40.0, 57.0, 73.5],
             "test_accuracy": 0.997, "wall_seconds": 130.0, "epochs": 3, "cpu_seconds": 170.0,
             "load_average_before": [6.0, 1.0, 1.0], "load_average_after": [7.0, 1.5, 1.0]}]
    result = tta.summary(runs, target=0.995, budget=120.0)
    assert [(r["target_epoch"], r["time_to_target_seconds"], r["met"]) for r in runs] == [
        (2, 55.5, True), (None, None, False), (3, 73.5, False)]
    assert result == {"target": 0.995, "budget_seconds": 120.0, "all_met": False, "reached_target": 2, "seeds": 3,
                      "median_time_to_target_seconds": 64.5, "time_to_target_spread": "55.5..73.5",
                      "median_wall_seconds": 91.0, "wall_spread": "90.0..130.0", "median_cpu_seconds": 160.0,
                      "final_accuracy_spread": "0.9949..0.9970"}
    assert tta.table(runs, 0.995).splitlines()[2:] == [
        "| 0 | 55.5 s | 2 | 99.60 % | 90.0 s (3 epochs) | 150 s | 1.0 -> 2.2 |",
        "| 1 | not reached |  | 99.49 % | 91.0 s (3 epochs) | 160 s | 2.0 -> 2.0 |",
        "| 2 | 73.5 s | 3 | 99.70 % | 130.0 s (3 epochs) | 170 s | 6.0 -> 7.0 |"]


@pytest.mark.slow
def test_time_to_accuracy_smoke_times_a_real_command_and_reads_its_epochs_back_from_mlflow(tmp_path):
    out, uri = tmp_path / "tta.json", store_uri(tmp_path)
    assert tta_module().main(["--smoke", "--seeds", "3", "--tracking-uri", uri, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    [run] = result["runs"]
    logged = client(uri).get_run(run["run_id"])
    assert run["test_accuracy"] == logged.data.metrics["test_accuracy"] and run["epochs"] == 1
    assert logged.data.params["training.seed"] == "3" and logged.data.params["data.limit"] == "512"
    assert run["precision"] == auto_cpu_precision()
    assert run["val_accuracy"] == [logged.data.metrics["val_accuracy"]]
    assert 0 < run["seconds_at_epoch_end"][0] < run["wall_seconds"]
    assert run["cpu_seconds"] > 0 and len(run["load_average_before"]) == len(run["load_average_after"]) == 3
    assert result["summary"]["seeds"] == 1 and result["overrides"] == ["data.limit=512", "training.epochs=1"]


@pytest.mark.slow
def test_the_utilisation_item_reports_achieved_flops_against_the_limit_measured_beside_it(tmp_path):
    out = tmp_path / "bench.json"
    assert bench_module("run").main(["--smoke", "--only", "utilisation", "--out", str(out)]) == 0
    [row] = json.loads(out.read_text())["measurements"]
    u = row["samples"]
    assert row["name"] == "utilisation_model1" and u["training_flops_per_image"] == 26_047_488
    assert u["compute_dtype"] == ("bfloat16" if settings.cpu_has_bfloat16() else "float32")
    assert u["limit"] == ("conv_bfloat16" if settings.cpu_has_bfloat16() else "conv")
    assert row["xrun"] == pytest.approx(u["images_per_second"] * 26_047_488 / 1e9)
    assert row["baseline"] == pytest.approx(u["peaks_flops"][u["limit"]] / 1e9)
    assert row["ratio"] == pytest.approx(row["xrun"] / row["baseline"])
    assert sum(u["where_the_step_goes"].values()) == pytest.approx(u["step_seconds"]["fit"])


@pytest.mark.slow
def test_steps_times_auto_and_float32_in_separate_processes_and_says_what_auto_picked(tmp_path):
    out = tmp_path / "steps.json"
    assert bench_module("steps").main(["--models", "model3", "--rounds", "1", "--seconds", "0.1",
                                       "--out", str(out)]) == 0
    [row] = json.loads(out.read_text())["rows"]
    [auto], [plain] = row["samples"]["auto"], row["samples"]["float32"]
    assert row["auto_precision"] == auto["precision"] == auto_cpu_precision()
    assert plain["precision"] == "float32" and auto["batch"] == plain["batch"] == 128
    assert len(auto["steps_ms"]) >= 3 and auto["step_ms"] == pytest.approx(statistics.median(auto["steps_ms"]))
    assert row["ratio"] == pytest.approx(plain["step_ms"] / auto["step_ms"])


def test_a_lever_row_is_the_median_of_neighbouring_ratios_in_wall_and_in_cpu_time():
    levers = bench_module("levers")
    row = levers._row("model1", "xla", "in one process, chunks in turn", [10.0, 20.0], [5.0, 40.0], [8.0, 8.0],
                      [4.0, 32.0])
    assert (row["script_step_ms"], row["lever_step_ms"], row["speedup"], row["speedup_spread"]) == (
        15.0, 22.5, 1.25, "0.50..2.00")
    assert (row["cpu_speedup"], row["cpu_speedup_spread"]) == (1.125, "0.25..2.00")
    assert levers.table([row]).splitlines()[2] == (
        "| model1 | xla | in one process, chunks in turn | 15.0 ms | 22.5 ms | **1.25x** (0.50..2.00) "
        "| 1.12x (0.25..2.00) |")


@pytest.mark.slow
def test_the_levers_item_times_each_in_graph_lever_beside_the_script_in_one_process(tmp_path):
    out = tmp_path / "bench.json"
    assert bench_module("run").main(["--smoke", "--only", "levers", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["measurements"]
    assert [r["name"] for r in rows] == ["lever_model1_xla", "lever_model1_steps_per_execution_8",
                                         "lever_model1_uint8_input"]
    for row in rows:
        sample = row["samples"]
        assert len(sample["script_samples_ms"]) == len(sample["lever_samples_ms"]) == 1  # --rounds 1
        assert row["ratio"] == pytest.approx(sample["script_samples_ms"][0] / sample["lever_samples_ms"][0])
        assert row["baseline"] == sample["script_samples_ms"][0] and row["xrun"] == sample["lever_samples_ms"][0]
