"""Choosing students from a run's trials: by rule (knee, best, smallest, fastest) or by limits."""

from __future__ import annotations

import numpy as np
import pandas as pd

from autodistill.errors import UserError
from autodistill.noise import tied_with
from autodistill.objectives import get_objective

RULES = ("knee", "best", "smallest", "fastest")
ACCURACY = "val_accuracy"
# What "smallest" and "fastest" minimise; the rest of the front breaks ties by accuracy.
RULE_OBJECTIVE = {"best": ACCURACY, "smallest": "params", "fastest": "latency_ms"}


def _done(trials: pd.DataFrame) -> pd.DataFrame:
    done = trials[trials["state"] == "COMPLETE"] if not trials.empty else trials
    if done.empty:
        raise UserError("the run has no completed trials to choose from; run a search first")
    return done


def _front(trials: pd.DataFrame) -> pd.DataFrame:
    done = _done(trials)
    return done[done["pareto"].astype(bool)]


def _most_accurate(rows: pd.DataFrame) -> int:
    return int(rows.sort_values([ACCURACY, "params"], ascending=[False, True]).iloc[0]["number"])


def knee(front: pd.DataFrame, objectives: tuple[str, ...]) -> int:
    """The front point nearest the ideal corner once every objective is scaled to 0..1 across
    the front (log scales for sizes and times, the error for accuracy): the point that gives up
    least on every objective at once."""
    cols = np.stack([get_objective(n).scaled(front[n].astype(float)) for n in objectives], axis=1)
    span = cols.max(0) - cols.min(0)
    scaled = (cols - cols.min(0)) / np.where(span > 0, span, 1.0)
    return int(front.iloc[int(np.argmin(np.linalg.norm(scaled, axis=1)))]["number"])


def pick(trials: pd.DataFrame, rule: str, objectives: tuple[str, ...]) -> int:
    """The trial number a rule picks from the Pareto front of ``objectives``.

    ``best``: highest validation accuracy (where seeds were measured, the smallest of the
    points within the seed spread of the most accurate: none of them is better);
    ``smallest``: fewest parameters; ``fastest``: lowest latency (ties go to the more
    accurate); ``knee``: see ``knee``.
    """
    if rule not in RULES:
        raise UserError(f"unknown pick rule {rule!r}; known: {', '.join(RULES)}")
    front = _front(trials)
    if rule == "knee":
        return knee(front, objectives)
    if rule == "best":  # within the seed spread of the most accurate, the smallest
        tied = front[front["number"].isin(tied_with(trials, _most_accurate(front)))]
        return int(
            tied.sort_values(["params", ACCURACY], ascending=[True, False]).iloc[0]["number"]
        )
    name = RULE_OBJECTIVE[rule]
    if name not in front or front[name].isna().all():
        raise UserError(
            f"--pick {rule} needs {name}, which this run did not measure "
            f"(its objectives: {','.join(objectives)})"
        )
    order = front.sort_values([name, ACCURACY], ascending=[True, False])
    return int(order.iloc[0]["number"])


def pick_within(trials: pd.DataFrame, limits: dict[str, float]) -> int:
    """The most accurate completed trial within the limits (ties go to the smaller)."""
    done = _done(trials)
    ok = done
    for name, most in limits.items():
        objective = get_objective(name)
        if name not in done or done[name].isna().all():
            raise UserError(f"{objective.option}: this run did not measure {name}")
        ok = ok[ok[name] <= most]
    if ok.empty:
        best = ", ".join(
            f"the lowest {n} is {get_objective(n).text(done[n].min())}" for n in limits
        )
        raise UserError(f"no completed trial fits those limits ({best}); loosen them")
    return _most_accurate(ok)


def top_front(trials: pd.DataFrame, k: int) -> list[int]:
    """The ``k`` most accurate points of the front."""
    if k < 2:
        raise UserError(f"--top needs at least 2 students to rank, got {k}")
    ranked = _front(trials).sort_values([ACCURACY, "params"], ascending=[False, True])
    return [int(n) for n in ranked["number"].head(k)]
