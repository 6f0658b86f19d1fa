"""Early stopping over any objectives: stop a trial at an epoch rung when others dominate it.

Optuna's pruners compare one intermediate value and refuse multi-objective studies. Here a
trial that reaches a rung (the end of any epoch but the last) records its validation accuracy
there; it is stopped when at least ``MIN_DOMINATORS`` of the trials already seen at that rung
are more accurate there *and* no worse (within ``SLACK``) on every other objective of the
study. Those are known before training, so a small or fast student is compared only with
students as small and as fast: small-but-weaker students survive, which a pruner on accuracy
alone would stop first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

from autodistill.objectives import get_objective
from autodistill.study.record import rung_accuracy, value

MIN_SEEN = 5  # trials seen at a rung before it stops anything: the first ones set the bar
MIN_DOMINATORS = 1
SLACK = 0.05  # a dominator may be up to 5% worse on the others: the same size, for the front
RUNG_OBJECTIVE = "val_accuracy"


@dataclass(frozen=True)
class Point:
    """A trial at a rung: its accuracy there, and its other objectives' values."""

    accuracy: float
    others: dict[str, float]

    def dominated_by(self, other: Point) -> bool:
        if not other.accuracy > self.accuracy:
            return False
        for name, mine in self.others.items():
            theirs = other.others.get(name)
            if theirs is None:
                return False
            if get_objective(name).maximize:
                if theirs < mine * (1 - SLACK):
                    return False
            elif theirs > mine * (1 + SLACK):
                return False
        return True


def point(accuracy: float, values: dict[str, float], objectives: Iterable[str]) -> Point:
    """The point of a trial with accuracy ``accuracy`` at a rung and ``values`` measured before
    training, over the study's ``objectives``."""
    return Point(accuracy, {n: values[n] for n in objectives if n != RUNG_OBJECTIVE})


def seen_at(
    trials: Iterable[FrozenTrial], rung: int, objectives: Iterable[str], *, exclude: set[int]
) -> list[Point]:
    """Every other trial's point at ``rung``: finished, stopped there or later, or running."""
    names = [n for n in objectives if n != RUNG_OBJECTIVE]
    out = []
    for t in trials:
        if t.number in exclude or t.state == TrialState.WAITING:
            continue
        acc = rung_accuracy(t, rung)
        if acc is not None and all(value(t, n) is not None for n in names):
            out.append(Point(acc, {n: value(t, n) for n in names}))
    return out


def most_gained(trials: Iterable[FrozenTrial], rung: int, *, exclude: set[int]) -> float | None:
    """The most validation accuracy any trained trial gained from ``rung`` to its end; None
    until ``MIN_SEEN`` of them are known (too few to say what cannot be reached)."""
    gains = []
    for t in trials:
        acc = rung_accuracy(t, rung)
        final = value(t, RUNG_OBJECTIVE)
        if t.number not in exclude and t.state == TrialState.COMPLETE and None not in (acc, final):
            gains.append(final - acc)
    return max(gains) if len(gains) >= MIN_SEEN else None


def should_stop(p: Point, seen: list[Point]) -> tuple[bool, int]:
    """(stop?, how many seen points dominate ``p``)."""
    if len(seen) < MIN_SEEN:
        return False, 0
    dominators = sum(p.dominated_by(o) for o in seen)
    return dominators >= MIN_DOMINATORS, dominators
