"""Early stopping for three objectives: stop a trial at an epoch rung when others dominate it.

Optuna's pruners compare one intermediate value and refuse multi-objective studies. Here a
trial that reaches a rung (the end of any epoch but the last) records its validation accuracy
there; it is stopped when at least ``MIN_DOMINATORS`` of the trials already seen at that rung
are more accurate there *and* no larger *and* no slower (within ``SLACK``). Size and
latency are known before training, so a small or fast student is compared only with students
as small and as fast: small-but-weaker students survive, which a pruner on accuracy alone
would stop first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

MIN_SEEN = 5  # trials seen at a rung before it stops anything: the first ones set the bar
MIN_DOMINATORS = 1
SLACK = 0.05  # a dominator may be up to 5% larger or slower: the same size, for the front
RUNGS_ATTR = "rungs"  # user attribute: {epoch: validation accuracy % at the end of it}


@dataclass(frozen=True)
class Point:
    """A trial at a rung: accuracy there (%), parameters, latency (ms)."""

    accuracy: float
    params: float
    latency_ms: float

    def dominated_by(self, other: Point) -> bool:
        return (
            other.accuracy > self.accuracy
            and other.params <= self.params * (1 + SLACK)
            and other.latency_ms <= self.latency_ms * (1 + SLACK)
        )


def seen_at(trials: Iterable[FrozenTrial], rung: int, *, exclude: set[int]) -> list[Point]:
    """Every other trial's point at ``rung``: finished, stopped there or later, or running."""
    out = []
    for t in trials:
        if t.number in exclude or t.state == TrialState.WAITING:
            continue
        acc = (t.user_attrs.get(RUNGS_ATTR) or {}).get(str(rung))
        if acc is not None and t.user_attrs.get("latency_ms") is not None:
            out.append(Point(acc, t.user_attrs["params"], t.user_attrs["latency_ms"]))
    return out


def should_stop(point: Point, seen: list[Point]) -> tuple[bool, int]:
    """(stop?, how many seen points dominate ``point``)."""
    if len(seen) < MIN_SEEN:
        return False, 0
    dominators = sum(point.dominated_by(o) for o in seen)
    return dominators >= MIN_DOMINATORS, dominators
