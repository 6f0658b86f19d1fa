"""Choosing students: each rule picks the point it promises, limits are honoured."""

from __future__ import annotations

import pandas as pd
import pytest

from autodistill.errors import UserError
from autodistill.ship.pick import pick, pick_within, top_front

TRIALS = pd.DataFrame(
    [
        # number, state, pareto, acc, params, latency
        (0, "COMPLETE", True, 0.99, 1_000_000, 5.0),  # best, big and slow
        (1, "COMPLETE", True, 0.97, 50_000, 1.0),  # the knee: little lost anywhere
        (2, "COMPLETE", True, 0.80, 5_000, 0.9),  # smallest
        (3, "COMPLETE", True, 0.90, 400_000, 0.5),  # fastest
        (4, "COMPLETE", False, 0.96, 60_000, 1.2),  # dominated by 1
        (5, "INFEASIBLE", False, None, 10, 0.1),  # never trained
    ],
    columns=["number", "state", "pareto", "val_accuracy", "params", "latency_ms"],
)
OBJECTIVES = ("val_accuracy", "params", "latency_ms")


@pytest.mark.parametrize(
    ("rule", "number"), [("best", 0), ("smallest", 2), ("fastest", 3), ("knee", 1)]
)
def test_each_rule_picks_its_point_of_the_front(rule, number):
    assert pick(TRIALS, rule, OBJECTIVES) == number


def test_limits_pick_the_most_accurate_trial_within_them_even_off_the_front():
    assert pick_within(TRIALS, {"params": 100_000}) == 1
    assert pick_within(TRIALS, {"latency_ms": 0.95}) == 3
    assert pick_within(TRIALS, {"params": 70_000, "latency_ms": 1.5}) == 1
    with pytest.raises(UserError, match="no completed trial fits those limits"):
        pick_within(TRIALS, {"params": 1_000})


def test_top_k_takes_the_most_accurate_front_points():
    assert top_front(TRIALS, 3) == [0, 1, 3]
    with pytest.raises(UserError, match="at least 2"):
        top_front(TRIALS, 1)


def test_an_empty_run_and_an_unknown_rule_are_user_errors():
    with pytest.raises(UserError, match="no completed trials"):
        pick(TRIALS[TRIALS["state"] != "COMPLETE"], "best", OBJECTIVES)
    with pytest.raises(UserError, match="unknown pick rule 'middle'"):
        pick(TRIALS, "middle", OBJECTIVES)


def test_the_knee_weighs_only_the_studys_objectives():
    """On (accuracy, params) alone, latency does not count: trial 2's size wins the knee."""
    two = ("val_accuracy", "params")
    assert pick(TRIALS, "knee", two) == 1
    front = TRIALS[TRIALS["number"].isin([0, 2])].assign(pareto=True)
    assert pick(front, "knee", two) in (0, 2)


def test_fastest_needs_a_run_that_measured_latency():
    no_latency = TRIALS.drop(columns=["latency_ms"])
    with pytest.raises(UserError, match="--pick fastest needs latency_ms"):
        pick(no_latency, "fastest", ("val_accuracy", "params"))
