"""runner/training/peak.py: the machine's figures are measured once per machine and then read from the cache."""

import json

import pytest

pytest.importorskip("tensorflow")

from runner.training import peak  # noqa: E402

FIGURES = {"flops": 2.0e10, "bandwidth": 5.0e9, "step_overhead": 0.004}


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
