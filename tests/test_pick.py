"""Choosing students: each rule picks the point it promises, limits are honoured."""

from __future__ import annotations

import pandas as pd
import pytest

from autodistill.errors import UserError
from autodistill.pick import pick, pick_within, top_front

TRIALS = pd.DataFrame([
    # number, state, pareto, acc, params, latency
    (0, "COMPLETE", True, 0.99, 1_000_000, 5.0),   # best, big and slow
    (1, "COMPLETE", True, 0.97, 50_000, 1.0),      # the knee: little lost anywhere
    (2, "COMPLETE", True, 0.80, 5_000, 0.9),       # smallest
    (3, "COMPLETE", True, 0.90, 400_000, 0.5),     # fastest
    (4, "COMPLETE", False, 0.96, 60_000, 1.2),     # dominated by 1
    (5, "INFEASIBLE", False, None, 10, 0.1),       # never trained
], columns=["number", "state", "pareto", "val_accuracy", "params", "latency_ms"])  # fmt: skip


@pytest.mark.parametrize(("rule", "number"),
                         [("best", 0), ("smallest", 2), ("fastest", 3), ("knee", 1)])  # fmt: skip
def test_each_rule_picks_its_point_of_the_front(rule, number):
    assert pick(TRIALS, rule) == number


def test_limits_pick_the_most_accurate_trial_within_them_even_off_the_front():
    assert pick_within(TRIALS, max_params=100_000, max_latency_ms=None) == 1
    assert pick_within(TRIALS, max_params=None, max_latency_ms=0.95) == 3
    assert pick_within(TRIALS, max_params=70_000, max_latency_ms=1.5) == 1
    with pytest.raises(UserError, match="no completed trial fits those limits"):
        pick_within(TRIALS, max_params=1_000, max_latency_ms=None)


def test_top_k_takes_the_most_accurate_front_points():
    assert top_front(TRIALS, 3) == [0, 1, 3]
    with pytest.raises(UserError, match="at least 2"):
        top_front(TRIALS, 1)


def test_an_empty_run_and_an_unknown_rule_are_user_errors():
    with pytest.raises(UserError, match="no completed trials"):
        pick(TRIALS[TRIALS["state"] != "COMPLETE"], "best")
    with pytest.raises(UserError, match="unknown pick rule 'middle'"):
        pick(TRIALS, "middle")
