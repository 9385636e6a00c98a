"""How a run's `auto` settings are decided for the machine: precision from the CPU's instructions."""

import os
import platform
import subprocess
import sys

import pytest

from runner.training import settings

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu vme sse2 avx2 avx512f {extra} fma
processor\t: 1
flags\t\t: fpu vme sse2 avx2 avx512f {extra} fma
"""


@pytest.mark.parametrize("extra, native", [("avx512_bf16", True), ("amx_bf16 amx_tile", True),
                                           ("avx512_vnni", False), ("", False)])
def test_bfloat16_is_native_only_with_its_instructions(extra, native):
    assert settings.cpu_has_bfloat16(CPUINFO.format(extra=extra)) is native


def test_a_cpuinfo_without_flags_says_no():
    assert settings.cpu_has_bfloat16("processor\t: 0\nmodel name\t: something\n") is False


@pytest.mark.parametrize("native, chosen", [(True, "mixed_bfloat16"), (False, "float32")])
def test_auto_precision_on_a_cpu_follows_its_bfloat16_instructions(monkeypatch, native, chosen):
    monkeypatch.setattr(settings, "cpu_has_bfloat16", lambda: native)
    assert settings._precision("auto", gpus=[]) == chosen


@pytest.mark.parametrize("asked", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_an_asked_precision_is_kept_whatever_the_cpu(monkeypatch, asked):
    monkeypatch.setattr(settings, "cpu_has_bfloat16", lambda: True)
    assert settings._precision(asked, gpus=[]) == asked


_ONEDNN_PROBE = ("import os; from runner.training.settings import import_tensorflow, onednn_enabled; "
                 "import_tensorflow(); print(onednn_enabled(), os.environ.get('TF_ENABLE_ONEDNN_OPTS'))")


def _onednn_in_a_fresh_process(**env) -> str:
    base = {k: v for k, v in os.environ.items() if k != settings.ONEDNN_SWITCH}
    done = subprocess.run([sys.executable, "-c", _ONEDNN_PROBE], env={**base, **env}, capture_output=True,
                          text=True, check=True)
    return done.stdout.strip()


@pytest.mark.slow  # two fresh TensorFlow imports
@pytest.mark.skipif(platform.machine().lower() not in settings.ONEDNN_MACHINES,
                    reason="xrun leaves TensorFlow's own choice of kernels off x86-64")
def test_onednn_is_switched_on_for_tensorflow_and_the_environment_left_as_it_was():
    assert _onednn_in_a_fresh_process() == "True None"  # on, and nothing left behind for child processes
    assert _onednn_in_a_fresh_process(TF_ENABLE_ONEDNN_OPTS="0") == "False 0"  # the user's own switch is kept
