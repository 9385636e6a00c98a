"""bench/reproduce.py: a short real training through it gives a row beside the seed's numbers, read back from MLflow."""

import importlib.util
import json

import pytest
from helpers import REPO, client, store_uri

pytest.importorskip("tensorflow")


def reproduce_module():
    spec = importlib.util.spec_from_file_location("reproduce", REPO / "bench" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
