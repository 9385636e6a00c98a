"""bench/run.py's process harness: rows and their statistics, the machine, trainings that take turns in side
processes, xrun's instrumentation by monkeypatching, and the table/JSON output.

The measurements themselves (what is trained or timed, against which baseline) are in bench/run.py; this module
knows nothing of them. A side process runs a function that bench/run.py names in its SIDES registry: the function
travels to the spawned process by reference (its module and name), so it must be defined at module level.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import multiprocessing
import os
import platform
import queue
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path


@dataclass
class Measurement:
    """One row of the table; `samples` keeps every raw number it was computed from."""

    name: str
    what: str
    unit: str
    xrun: float
    baseline: float
    ratio: float
    ratio_label: str
    target: str
    passed: bool | None          # None: informational, no target
    spread: str = ""
    samples: dict = field(default_factory=dict)
    notes: str = ""


# --- helpers ---------------------------------------------------------------------------------------------------

def median(values) -> float:
    return float(statistics.median(values)) if values else float("nan")


def spread(values, fmt: str = "{:.3g}") -> str:
    """'min..max' of a list, to show how far the noise of a shared machine moves a number."""
    return f"{fmt.format(min(values))}..{fmt.format(max(values))}" if values else ""


def xrun_command() -> list[str]:
    """The `xrun` command of this Python's environment (its script, else `python -m runner.cli`)."""
    script = Path(sys.executable).with_name("xrun")
    return [str(script)] if script.exists() else [sys.executable, "-m", "runner.cli"]


def load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def machine_info() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in ("tensorflow", "keras", "mlflow", "xrun"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": os.cpu_count(), "cores_usable": affinity, "platform": platform.platform(),
            "python": platform.python_version(), **versions,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


# --- timing epochs: side by side, in turns --------------------------------------------------------------------

class TakeTurns:
    """Trainings in separate processes that run one epoch at a time, in turn: A1 B1 A2 B2 ...

    On a machine shared with other work the load changes from one minute to the next, so two runs one after the
    other can differ by 50% for no reason of their own; adjacent epochs see nearly the same load, so the ratio of
    paired epochs is far steadier. A side waits (blocked, using no CPU) while another trains. Separate processes,
    because TensorFlow's switches are process-wide (xrun turns on op determinism, under which the notebook's
    unseeded shuffle cannot even run) and each side should start as a fresh program would.
    """

    def __init__(self, ctx, sides: list[str], timeout: float = 1800.0):
        self.sides, self.timeout = list(sides), timeout
        self.cond = ctx.Condition()
        self.turn = ctx.Value("i", 0, lock=False)          # guarded by cond
        self.done = ctx.Array("b", len(sides), lock=False)  # guarded by cond
        self.ready = ctx.Array("b", len(sides), lock=False)  # guarded by cond

    def start_together(self, side: str) -> None:
        """Wait until every side is ready to train: no timed epoch may overlap another side's set-up (TensorFlow
        import, data loading, compile), which takes seconds of CPU."""
        with self.cond:
            self.ready[self.sides.index(side)] = 1
            self.cond.notify_all()
            self.cond.wait_for(lambda: all(r or d for r, d in zip(self.ready, self.done)), self.timeout)

    def wait(self, side: str) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self.sides[self.turn.value] == side, self.timeout):
                raise RuntimeError(f"{side}: no other side handed over within {self.timeout:.0f}s")

    def hand_over(self) -> None:
        with self.cond:
            self._advance()
            self.cond.notify_all()

    def finish(self, side: str) -> None:
        """`side` trains no more (done, or crashed): the others stop waiting for it. Idempotent."""
        with self.cond:
            self.done[self.sides.index(side)] = 1
            if self.sides[self.turn.value] == side:
                self._advance()
            self.cond.notify_all()

    def wait_all_done(self) -> None:
        with self.cond:
            self.cond.wait_for(lambda: all(self.done), self.timeout)

    def _advance(self) -> None:
        for step in range(1, len(self.sides) + 1):
            i = (self.turn.value + step) % len(self.sides)
            if not self.done[i]:
                self.turn.value = i
                return


def turn_clock(turns: TakeTurns, side: str):
    """A Keras callback that times each epoch of `side`, start to start, and takes turns at epoch boundaries.

    An epoch runs from its on_epoch_begin to the next one (the last: to on_train_end), so it includes validation
    and *every* callback's epoch-end work (xrun's own epoch_seconds stops before its tracking callback runs).
    """
    import keras

    class TurnClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []       # per epoch
            self.step_ms: list[float] = []       # per epoch: the median training step, in ms
            self.val_seconds: list[float] = []   # per epoch: the validation pass
            self.start_seconds: list[float] = []  # per epoch: from its start to its first step (iterator set-up)
            self.started: float | None = None
            self.train_examples: int | None = None
            self._steps: list[float] = []
            self._step_started = self._val_started = self._val = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            if self._stop():
                turns.hand_over()
            elif not self.seconds:
                turns.start_together(side)
            turns.wait(side)
            self._steps, self._val = [], 0.0
            self.started = time.perf_counter()

        # The median step is robust to bursts of load that hit a few seconds of an epoch; the epoch time is not.
        def on_train_batch_begin(self, batch, logs=None):
            self._step_started = time.perf_counter()
            if not self._steps:
                self.start_seconds.append(self._step_started - self.started)

        def on_train_batch_end(self, batch, logs=None):
            self._steps.append(time.perf_counter() - self._step_started)

        # fit() runs validation through the same callbacks, between the last step and on_epoch_end.
        def on_test_begin(self, logs=None):
            self._val_started = time.perf_counter()

        def on_test_end(self, logs=None):
            self._val += time.perf_counter() - self._val_started

        def on_train_end(self, logs=None):
            self._stop()
            turns.finish(side)
            turns.wait_all_done()  # post-training work (xrun's evaluate, plots) must not overlap a timed epoch

        def numbers(self) -> dict:
            return {"epoch_seconds": self.seconds,
                    "images_per_second": [self.train_examples / s for s in self.seconds],
                    "step_ms": self.step_ms, "val_seconds": self.val_seconds, "start_seconds": self.start_seconds}

        def _stop(self) -> bool:
            if self.started is None:
                return False
            self.seconds.append(time.perf_counter() - self.started)
            self.step_ms.append(1000 * median(self._steps))
            self.val_seconds.append(self._val)
            self.started = None
            return True

    return TurnClock()


def side_main(turns: TakeTurns, side: str, train: Callable, kwargs: dict, results) -> None:
    """A side's process: train with a turn clock, send back ("ok", numbers) or ("error", traceback)."""
    try:
        if not getattr(train, "plain_tensorflow", False):
            from runner.training.settings import import_tensorflow

            import_tensorflow()  # quietly, and with the kernels xrun chooses for this machine
        else:
            import tensorflow  # noqa: F401  as a user's script has it: TensorFlow's own choice of kernels
        clock = turn_clock(turns, side)
        with contextlib.redirect_stdout(io.StringIO()):  # Keras's progress bar, as if in a notebook cell
            results.put((side, "ok", train(clock=clock, **kwargs)))
    except BaseException:  # noqa: BLE001 - reported by the parent
        results.put((side, "error", traceback.format_exc()))
    finally:
        turns.finish(side)


def in_turns(registry: dict[str, Callable], sides: dict[str, tuple[str, dict]], timeout: float = 1800.0) -> dict:
    """Run {side: (kind, kwargs)} in processes that take turns, epoch by epoch; returns {side: numbers}.

    `registry` ({kind: function}) is what a side can run, by name; the spawned process imports the function by
    its module and name (bench/run.py as __main__ is re-imported there as __mp_main__, bench/ is on its sys.path).
    """
    ctx = multiprocessing.get_context("spawn")
    turns, results = TakeTurns(ctx, list(sides), timeout), ctx.Queue()
    procs = {side: ctx.Process(target=side_main, args=(turns, side, registry[kind], kwargs, results),
                               name=f"bench-{side}")
             for side, (kind, kwargs) in sides.items()}
    for proc in procs.values():
        proc.start()
    out, failures, deadline, silent = {}, {}, time.monotonic() + timeout, set()
    while len(out) + len(failures) < len(procs):
        try:
            side, status, payload = results.get(timeout=5)
        except queue.Empty:
            # A process that died without a word (killed, out of memory) for two polls in a row has failed.
            dead = {s for s, p in procs.items() if not p.is_alive() and s not in out and s not in failures}
            for s in dead & silent:
                failures[s] = f"process exited with code {procs[s].exitcode} and no report"
                turns.finish(s)
            silent = dead
            if time.monotonic() > deadline:
                for proc in procs.values():
                    proc.terminate()  # only the processes this bench started
                raise RuntimeError(f"sides still running after {timeout:.0f}s")
            continue
        (out if status == "ok" else failures)[side] = payload
    for proc in procs.values():
        proc.join(timeout=60)
    if failures:
        raise RuntimeError("\n".join(f"the {s} side failed:\n{tb}" for s, tb in failures.items()))
    return out


@contextlib.contextmanager
def patched(owner, name: str, value):
    """Temporarily replace owner.name (the bench instruments xrun without editing it)."""
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield original
    finally:
        setattr(owner, name, original)


@contextlib.contextmanager
def instrumented_xrun(clock, log: str = "all"):
    """Put `clock` first in xrun's callback list, and time its per-epoch MLflow logging.

    log: "all" logs every epoch as xrun does; "alternate" logs epochs 1, 3, 5, ... (0-based 0, 2, 4) and skips the
    others, for the on/off comparison. Yields the list of (epoch, seconds in TrackEpochs.on_epoch_end, logged).
    """
    from runner.training import callbacks

    log_seconds: list[tuple[int, float, bool]] = []

    class ClockedEpochMetrics(callbacks.EpochMetrics):
        # xrun puts EpochMetrics first in its callbacks; riding on it, the clock waits for its turn before xrun's
        # own epoch timer starts (run_experiment's extra_callbacks come later in the list).
        def on_epoch_begin(self, epoch, logs=None):
            clock.train_examples = self.train_examples
            clock.on_epoch_begin(epoch, logs)
            super().on_epoch_begin(epoch, logs)

        def on_train_batch_begin(self, batch, logs=None):
            clock.on_train_batch_begin(batch, logs)

        def on_train_batch_end(self, batch, logs=None):
            clock.on_train_batch_end(batch, logs)

        def on_test_begin(self, logs=None):
            clock.on_test_begin(logs)

        def on_test_end(self, logs=None):
            clock.on_test_end(logs)

        def on_train_end(self, logs=None):
            clock.on_train_end(logs)

    class TimedTrackEpochs(callbacks.TrackEpochs):
        def on_epoch_end(self, epoch, logs=None):
            started, logged = time.perf_counter(), log == "all" or epoch % 2 == 0
            if logged:
                super().on_epoch_end(epoch, logs)
            else:
                self.epochs_done = epoch + 1
            log_seconds.append((epoch, time.perf_counter() - started, logged))

    with patched(callbacks, "EpochMetrics", ClockedEpochMetrics), \
            patched(callbacks, "TrackEpochs", TimedTrackEpochs):
        yield log_seconds


@contextlib.contextmanager
def with_settings(changes: dict | None):
    """What-if: xrun's machine settings (runner.training.settings.Settings) with `changes` made, e.g.
    {"deterministic": False} or {"precision": "float32"}; nothing changes for None or {}."""
    if not changes:
        yield
        return
    import dataclasses

    from runner.running import run as train

    original = train.settings_for
    with patched(train, "settings_for", lambda training: dataclasses.replace(original(training), **changes)):
        yield


# --- report ----------------------------------------------------------------------------------------------------

def fmt(value: float) -> str:
    if value != value:  # NaN
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def without_nan(value):
    """NaN is not JSON: write null for the numbers a row does not have."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nan(v) for v in value]
    return value


def table(rows: list[Measurement]) -> str:
    header = ("item", "xrun", "baseline", "unit", "ratio", "target", "result", "spread")
    lines = [header]
    for m in rows:
        ratio = "-" if m.ratio != m.ratio else (f"{m.ratio:+.2f}%" if m.ratio_label == "overhead %"
                                                 else f"{m.ratio:.3g}")
        result = "info" if m.passed is None else ("PASS" if m.passed else "FAIL")
        lines.append((m.name, fmt(m.xrun), fmt(m.baseline), m.unit, ratio, m.target, result, m.spread))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)
