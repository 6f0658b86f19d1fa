"""The accuracy floor (``--min-accuracy``): a student under it is infeasible, by how much, and off
the front; a trial that cannot reach it is stopped at a rung."""

from __future__ import annotations

import dataclasses

import optuna
import pytest

from autodistill import study as search
from autodistill.config import SearchConfig, parse_floor
from autodistill.errors import UserError
from autodistill.study.candidate import Limits
from autodistill.study.early_stop import MIN_SEEN
from autodistill.study.record import RUNGS as RUNGS_ATTR


def search_space():
    from autodistill.spaces import parse_space

    return parse_space(
        {
            "families": {"resnet": {"stem_stride": 1, "depths": 1, "width": 16}},
            "distill": {"kd": {"temperature": 4.0, "alpha": 0.5}},
            "train": {"lr": {"low": 5e-3, "high": 1e-2, "log": True}},
        }
    )


def _study(tmp_path, budget: int) -> optuna.Study:
    storage = search.open_storage(None, tmp_path)
    return search.open_study(storage, "t", sampler_name="random", seed=0, budget=budget)


def test_a_floor_is_a_fraction_or_a_multiple_of_the_teachers_accuracy():
    assert parse_floor("0.9") == (0.9, False)
    assert parse_floor("0.95X") == (0.95, True)
    assert SearchConfig(min_accuracy=0.9).min_accuracy == "0.9"  # the API may give a number
    assert SearchConfig(min_accuracy="0.95x").accuracy_floor(0.98) == pytest.approx(0.931)
    assert SearchConfig().accuracy_floor(0.98) is None
    for bad in ("95%", "95", "1.2", "0x", "2x", "-0.5", "nan", ""):
        with pytest.raises(UserError, match="--min-accuracy"):
            parse_floor(bad)


def test_limits_report_a_floor_by_how_much_it_is_missed():
    limits = Limits({"params": 100.0}, {"val_accuracy": 0.9})
    assert limits.violations({"params": 50}) == {}  # accuracy is not known before training
    assert limits.violations({"params": 150, "val_accuracy": 0.85}) == pytest.approx(
        {"max_params": 50.0, "min_val_accuracy": 0.05}
    )


@pytest.mark.parametrize("floor", [0.05, 0.9999])
def test_a_student_below_the_floor_is_infeasible_by_how_much_and_off_the_front(
    tmp_path, make_ctx, floor
):
    study = _study(tmp_path, 3)
    ctx = dataclasses.replace(make_ctx(), limits=Limits({}, {"val_accuracy": floor}))
    search.run(study, search_space(), ctx, budget=3)
    frame = search.trials_frame(study)
    below = floor > 0.5
    assert list(frame["state"]) == ["BELOW_FLOOR" if below else "COMPLETE"] * 3
    for t in study.trials:  # trained either way; the sampler sees the margin, + under, - over
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert t.constraints["min_val_accuracy"] == pytest.approx(floor - t.values[0])
    assert len(study.best_trials) == (0 if below else len(frame[frame["pareto"]]))
    assert frame["pareto"].any() != below
    if below:
        assert frame["failure_reason"].str.startswith("val_accuracy ").all()
        assert frame["failure_reason"].str.contains("below the floor 99.99% by").all()


def _seed_finished(study: optuna.Study, *, at_rung: float, final: float) -> None:
    """MIN_SEEN finished trials that gained ``final - at_rung`` after epoch 1."""
    for _ in range(MIN_SEEN):
        study.add_trial(
            optuna.create_trial(
                values=[final, 10.0, 0.001],
                user_attrs={
                    RUNGS_ATTR: {"1": at_rung},
                    "val_accuracy": final,
                    "params": 10,
                    "latency_ms": 0.001,
                },
            )
        )


@pytest.mark.parametrize("reachable", [True, False])
def test_a_trial_that_cannot_reach_the_floor_stops_at_a_rung(tmp_path, make_ctx, reachable):
    """Earlier trials gained 0.01 or 0.99 after epoch 1: a 0.99 floor is out of reach from
    a digits student's first epoch after the first, and in reach after the second."""
    study = _study(tmp_path, MIN_SEEN + 1)
    _seed_finished(study, at_rung=0.0, final=0.99 if reachable else 0.01)
    ctx = dataclasses.replace(
        make_ctx(), epochs=2, early_stop=False, limits=Limits({}, {"val_accuracy": 0.99})
    )
    search.run(study, search_space(), ctx, budget=MIN_SEEN + 1)
    trial, row = study.trials[-1], search.trials_frame(study).iloc[-1]
    assert row["state"] == "BELOW_FLOOR"  # 2 epochs on digits never reach 99%
    assert trial.constraints["min_val_accuracy"] > 0
    if reachable:  # trained to the end, then found below
        assert trial.state == optuna.trial.TrialState.COMPLETE and "history" in trial.user_attrs
    else:
        assert trial.state == optuna.trial.TrialState.PRUNED
        assert "history" not in trial.user_attrs  # the second epoch never ran
        assert row["failure_reason"].startswith("stopped after epoch 1 of 2: ")
        assert "cannot reach the floor 99.00%" in row["failure_reason"]
        gained = 0.99 - (trial.user_attrs["val_accuracy"] + 0.01)
        assert trial.constraints["min_val_accuracy"] == pytest.approx(gained)
