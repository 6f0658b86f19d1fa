"""Objectives as a registry: every registered one drives a real study, its limits and its front."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest

from autodistill.cli import main
from autodistill.errors import UserError
from autodistill.objectives import DEFAULT, OBJECTIVES, limitable, parse_objectives
from autodistill.study import load_study, open_storage, study_objectives
from tests.conftest import FAST

OTHERS = [name for name in OBJECTIVES if name != "val_accuracy"]


def _search(tmp_path, cache, *args: str) -> int:
    return main(["search", *FAST, "--out", str(tmp_path), "--cache-dir", str(cache), *args])


def _non_dominated(rows: pd.DataFrame, objectives: tuple[str, ...]) -> set[int]:
    sign = np.array([-1.0 if OBJECTIVES[n].maximize else 1.0 for n in objectives])
    v = rows[list(objectives)].to_numpy(float) * sign
    keep = set()
    for i, row in enumerate(v):
        if not any((o <= row).all() and (o < row).any() for o in v):
            keep.add(int(rows.iloc[i]["number"]))
    return keep


@pytest.mark.parametrize("name", OTHERS)
def test_a_study_on_accuracy_and_each_objective(tmp_path, shared_cache, name):
    objectives = ("val_accuracy", name)
    assert _search(tmp_path, shared_cache, "--objectives", ",".join(objectives)) == 0
    run_dir = tmp_path / "digits-default"
    study = load_study(open_storage(None, run_dir), "digits-default")
    assert study_objectives(study) == objectives
    assert [d.name.lower() for d in study.directions] == [
        OBJECTIVES[n].direction for n in objectives
    ]
    trials = pd.read_csv(run_dir / "trials.csv")
    done = trials[trials["state"] == "COMPLETE"]
    assert len(done) >= 2 and done[name].notna().all()
    assert ((done["val_accuracy"] > 0) & (done["val_accuracy"] <= 1)).all()  # a fraction
    assert set(done.loc[done["pareto"], "number"]) == _non_dominated(done, objectives)
    # Latency is timed only when it counts: an objective or a limit.
    assert done["latency_ms"].notna().all() == (name == "latency_ms")
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "pareto.png").is_file() and not (run_dir / "pareto3d.png").exists()


def test_four_objectives_at_once(tmp_path, shared_cache):
    objectives = ("val_accuracy", "params", "latency_ms", "flops")
    assert _search(tmp_path, shared_cache, "--objectives", ",".join(objectives)) == 0
    run_dir = tmp_path / "digits-default"
    trials = pd.read_csv(run_dir / "trials.csv")
    done = trials[trials["state"] == "COMPLETE"]
    assert set(done.loc[done["pareto"], "number"]) == _non_dominated(done, objectives)
    study = load_study(open_storage(None, run_dir), "digits-default")
    assert study.metric_names == list(objectives)
    # a resumed run must keep them
    code = _search(tmp_path, shared_cache, "--objectives", "val_accuracy,params")
    assert code == 2


@pytest.mark.parametrize("objective", limitable(), ids=lambda o: o.name)
def test_every_limit_refuses_what_breaks_it_before_training(
    tmp_path, shared_cache, objective, capsys
):
    tiny = "1" if objective.decimals == 0 else "0.001"
    assert _search(tmp_path, shared_cache, objective.option, tiny) == 2
    err = capsys.readouterr().err
    assert f"over {objective.option}" in err and err.count("\n") == 1
    trials = pd.read_csv(tmp_path / "digits-default" / "trials.csv")
    assert (trials["state"] == "INFEASIBLE").all()
    assert trials["failure_reason"].str.contains(f"max_{objective.name} exceeded").all()
    assert "history" not in trials.columns or trials["history"].isna().all()


def test_objective_names_are_checked():
    assert parse_objectives("val_accuracy, size_kb") == ("val_accuracy", "size_kb")
    assert parse_objectives(list(DEFAULT)) == DEFAULT
    with pytest.raises(UserError, match="unknown objective 'speed'; known: val_accuracy"):
        parse_objectives("val_accuracy,speed")
    with pytest.raises(UserError, match="two or more"):
        parse_objectives("val_accuracy")
    with pytest.raises(UserError, match="names one twice"):
        parse_objectives("val_accuracy,params,params")
    with pytest.raises(UserError, match="must include one measured after training"):
        parse_objectives("params,latency_ms")


def test_hypervolume_bounds_map_every_objective_to_0_1_with_0_best():
    for objective in OBJECTIVES.values():
        lo, hi = objective.bounds
        best, worst = (hi, lo) if objective.maximize else (lo, hi)
        assert objective.loss([best])[0] == pytest.approx(0.0)
        assert objective.loss([worst])[0] == pytest.approx(1.0)


def test_the_default_hypervolume_is_the_old_one():
    """(accuracy, params, latency) normalise as before: error, log params 1e3..1e8, log ms."""
    from autodistill.study import hypervolume

    hv = hypervolume(np.array([[0.9, 1e4, 0.1]]), DEFAULT)
    expected = (1 - 0.1) * (1 - 1 / 5) * (1 - 1 / 5)
    assert hv == pytest.approx(expected)


def test_optuna_stays_in_the_study_package():
    assert optuna.__version__.split(".")[0] == "5"  # the version range pyproject allows
