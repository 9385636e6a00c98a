"""runner/training/peak.py: the machine's figures and timings are measured once per machine and then read from the
cache."""

import json

import pytest

pytest.importorskip("tensorflow")

from runner.training import peak  # noqa: E402

FIGURES = {"flops": 2.0e10, "step_overhead": 0.004}


def test_a_second_call_reads_the_cache_instead_of_measuring(tmp_path, monkeypatch):
    monkeypatch.setenv("XRUN_CACHE_DIR", str(tmp_path))
    calls = []

    def measure():
        calls.append(1)
        return dict(FIGURES)

    first = peak.machine(measure)
    second = peak.machine(measure)
    assert len(calls) == 1
    assert first == second == {**FIGURES, "cpu": peak._cpu()[0]}
    assert json.loads((tmp_path / "machine.json").read_text()) == {peak.machine_key(): first}


def test_another_cpu_is_measured_again_and_kept_beside_the_first(tmp_path, monkeypatch):
    monkeypatch.setenv("XRUN_CACHE_DIR", str(tmp_path))
    here = peak.machine(lambda: dict(FIGURES))
    monkeypatch.setattr(peak, "_cpu", lambda: ("Another CPU", "fpu avx2"))
    there = peak.machine(lambda: {**FIGURES, "flops": 1.0e9})
    assert (here["flops"], there["flops"], there["cpu"]) == (2.0e10, 1.0e9, "Another CPU")
    assert len(json.loads((tmp_path / "machine.json").read_text())) == 2


def test_an_unreadable_cache_is_measured_again(tmp_path, monkeypatch):
    monkeypatch.setenv("XRUN_CACHE_DIR", str(tmp_path))
    (tmp_path / "machine.json").write_text('{"half a fi')
    assert peak.machine(lambda: dict(FIGURES))["flops"] == 2.0e10
    assert list(tmp_path.iterdir()) == [tmp_path / "machine.json"]  # no .partial file left behind


def test_timings_are_measured_once_each_and_kept_beside_the_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("XRUN_CACHE_DIR", str(tmp_path))

    def never():
        raise AssertionError("measured again")

    assert peak.timed({"a": lambda: 0.5, "b": lambda: 0.25}, load=1.5) == {"a": 0.5, "b": 0.25}
    assert peak.timed({"a": never, "c": lambda: 1.0}, load=2.0) == {"a": 0.5, "c": 1.0}
    key = peak.machine_key()
    timings = {"a": {"seconds": 0.5, "load": 1.5}, "b": {"seconds": 0.25, "load": 1.5},
               "c": {"seconds": 1.0, "load": 2.0}}
    assert json.loads((tmp_path / "machine.json").read_text()) == {key: {"timings": timings}}
    figures = peak.machine(lambda: dict(FIGURES))  # not yet measured: measured, the timings kept
    assert figures == {**FIGURES, "cpu": peak._cpu()[0]}
    assert json.loads((tmp_path / "machine.json").read_text()) == {key: {**figures, "timings": timings}}


def test_a_timing_taken_on_a_busier_machine_is_taken_again_and_the_quicker_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("XRUN_CACHE_DIR", str(tmp_path))
    assert peak.timed({"a": lambda: 0.5, "b": lambda: 0.5}, load=4.0) == {"a": 0.5, "b": 0.5}
    assert peak.timed({"a": lambda: 0.5}, load=3.0) == {"a": 0.5}  # not quieter by QUIETER_BY: read
    assert peak.timed({"a": lambda: 0.2, "b": lambda: 0.7}, load=2.5) == {"a": 0.2, "b": 0.5}  # again: quicker kept
    timings = json.loads((tmp_path / "machine.json").read_text())[peak.machine_key()]["timings"]
    assert timings == {"a": {"seconds": 0.2, "load": 2.5}, "b": {"seconds": 0.5, "load": 2.5}}


