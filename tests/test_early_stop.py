"""Early stopping over the study's objectives: dominated at a rung means stopped; small-but-weak
lives."""

from __future__ import annotations

import dataclasses

import optuna
import pytest

from autodistill import study as search
from autodistill.study.early_stop import MIN_SEEN, Point, should_stop
from autodistill.study.record import RUNGS as RUNGS_ATTR


def P(accuracy: float, params: float, latency_ms: float) -> Point:  # noqa: N802
    return Point(accuracy, {"params": params, "latency_ms": latency_ms})


BIG_AND_GOOD = [P(0.95 + i / 100, 1e6, 2.0) for i in range(MIN_SEEN)]


def test_a_larger_slower_less_accurate_trial_is_stopped():
    stop, dominators = should_stop(P(0.80, 2e6, 3.0), BIG_AND_GOOD)
    assert stop and dominators == MIN_SEEN


def test_a_small_but_weaker_trial_survives():
    assert should_stop(P(0.60, 1e4, 0.2), BIG_AND_GOOD) == (False, 0)


def test_nothing_is_stopped_before_enough_trials_were_seen():
    assert should_stop(P(0.01, 1e9, 99.0), BIG_AND_GOOD[: MIN_SEEN - 1]) == (False, 0)


def test_the_same_size_within_the_slack_counts_but_a_tie_in_accuracy_does_not():
    assert P(0.90, 1.0e6, 2.0).dominated_by(P(0.91, 1.04e6, 2.08))
    assert not P(0.90, 1.0e6, 2.0).dominated_by(P(0.91, 1.10e6, 2.0))
    assert not P(0.90, 1.0e6, 2.0).dominated_by(P(0.90, 1.0e6, 2.0))


def test_only_the_studys_objectives_count():
    """Searching (accuracy, params): a slower but smaller and more accurate trial dominates."""
    mine = Point(0.90, {"params": 1e6})
    assert mine.dominated_by(Point(0.95, {"params": 5e5}))
    assert not P(0.90, 1e6, 1.0).dominated_by(P(0.95, 5e5, 9.0))


def _seed_rung_trials(study: optuna.Study) -> None:
    """MIN_SEEN finished trials that were perfect at epoch 1 and tiny and fast."""
    for _ in range(MIN_SEEN):
        study.add_trial(
            optuna.create_trial(
                values=[1.0, 10.0, 0.001],
                user_attrs={
                    RUNGS_ATTR: {"1": 1.0},
                    "val_accuracy": 1.0,
                    "params": 10,
                    "latency_ms": 0.001,
                },
            )
        )


@pytest.mark.parametrize("early_stop", [True, False])
def test_a_dominated_trial_stops_after_its_first_epoch_only_when_asked(
    tmp_path, make_ctx, early_stop
):
    space = search_space()
    study = search.open_study(
        search.open_storage(None, tmp_path), "t", sampler_name="random", seed=0, budget=MIN_SEEN + 1
    )
    _seed_rung_trials(study)
    ctx = dataclasses.replace(make_ctx(), epochs=2, early_stop=early_stop)
    search.run(study, space, ctx, budget=MIN_SEEN + 1)
    row = search.trials_frame(study).iloc[-1]
    assert row["state"] == ("STOPPED" if early_stop else "COMPLETE")
    trial = study.trials[-1]
    assert set(trial.user_attrs[RUNGS_ATTR]) == {"1"}  # accuracy recorded at the rung either way
    if early_stop:
        assert row["failure_reason"].startswith(f"stopped after epoch 1 of 2: {MIN_SEEN} of")
        assert "history" not in trial.user_attrs  # the second epoch never ran
        assert trial.number not in {t.number for t in study.best_trials}


def search_space():
    from autodistill.spaces import parse_space

    return parse_space(
        {
            "families": {"resnet": {"stem_stride": 1, "depths": 1, "width": 8}},
            "distill": {"kd": {"temperature": 4.0, "alpha": 0.5}},
            "train": {"lr": {"low": 2e-3, "high": 1e-2, "log": True}},
        }
    )
