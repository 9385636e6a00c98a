"""The tables of samplers and pruners (runner/sweep/study.py) name exactly the schema's methods and pruner types,
and every entry builds its Optuna object with the arguments the schema allows."""

import inspect

import optuna
import pytest

from runner.language import schema
from runner.sweep import study as st
from runner.sweep.space import Space

SWEEP = schema.schema()["properties"]["sweep"]["properties"]
PRUNER_BRANCHES = {b["if"]["properties"]["type"]["const"]: b["then"]["properties"]
                   for b in SWEEP["pruner"]["else"]["allOf"]}


def space(method: str, seed: int = 7, pruner: dict | None = None) -> Space:
    return Space({"training.batch_size": [32, 64]}, {}, method, 4, "val_accuracy", "maximize",
                 pruner or {"type": "none"}, seed)


@pytest.mark.parametrize("table, enum", [
    (st.SAMPLERS, SWEEP["method"]["enum"]),
    (st.PRUNERS, SWEEP["pruner"]["then"]["enum"]),
    (st.PRUNERS, SWEEP["pruner"]["else"]["properties"]["type"]["enum"]),
    (st.PRUNERS, list(PRUNER_BRANCHES)),
], ids=["samplers: method", "pruners: a name", "pruners: a mapping's type", "pruners: argument branches"])
def test_each_table_has_exactly_the_schema_s_names(table, enum):
    assert sorted(table) == sorted(enum)
    assert all(entry.name == name for name, entry in table.items())


@pytest.mark.parametrize("name, cls", [("grid", optuna.samplers.GridSampler),
                                       ("random", optuna.samplers.RandomSampler),
                                       ("tpe", optuna.samplers.TPESampler),
                                       ("cmaes", optuna.samplers.CmaEsSampler)])
def test_each_method_makes_its_optuna_sampler(name, cls):
    assert type(st.sampler(space(name), 3)) is cls


def test_only_the_grid_keeps_the_sweep_s_seed_on_every_trial(monkeypatch):
    assert [name for name, entry in st.SAMPLERS.items() if not entry.seeded_per_trial] == ["grid"]
    seen = []
    for name in ("grid", "random"):
        monkeypatch.setitem(st.SAMPLERS, name, st.Sampler(name, lambda s, seed: seen.append(seed),
                                                          st.SAMPLERS[name].seeded_per_trial))
        st.sampler(space(name, seed=2), 5)
    assert seen == [2, 2 * 1_000_003 + 5]


@pytest.mark.parametrize("name", sorted(PRUNER_BRANCHES))
def test_each_pruner_takes_the_arguments_its_schema_branch_allows(name):
    allowed = set(PRUNER_BRANCHES[name]) - {"type"}
    assert allowed <= set(inspect.signature(st.PRUNERS[name].make).parameters)


@pytest.mark.parametrize("name, cls", [("none", optuna.pruners.NopPruner), ("median", optuna.pruners.MedianPruner),
                                       ("hyperband", optuna.pruners.HyperbandPruner),
                                       ("successive_halving", optuna.pruners.SuccessiveHalvingPruner)])
def test_each_pruner_type_makes_its_optuna_pruner(name, cls):
    assert type(st.pruner(space("random", pruner={"type": name}))) is cls


def test_a_pruner_gets_the_yaml_s_arguments():
    made = st.pruner(space("random", pruner={"type": "median", "n_startup_trials": 2, "n_warmup_steps": 3}))
    assert (made._n_startup_trials, made._n_warmup_steps) == (2, 3)
