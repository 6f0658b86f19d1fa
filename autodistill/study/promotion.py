"""Multi-fidelity promotion: asynchronous successive halving over the study's objectives.

Every trial first trains for the first rung's epochs (3). A trial whose result is among the best
1/ETA of all results at its rung (by non-dominated sorting over the study's objectives, then
accuracy) is promoted: a new trial of the same candidate continues from its stable state to the
next rung (9, then 27 epochs). A worker with nothing due samples a new candidate instead, so
workers never wait for a rung to fill. Promotions have their own budget, paced over the search
(by the time a fraction f of the trials has finished, at most f of the promotions are spent), so
early promotions do not go to the sampler's random start alone.

A promoted candidate's earlier trials stay in the study, as their results rank later ones, but
they are superseded: the front compares every candidate at the highest rung it reached. All of
this is decided under the study's claim lock, so no candidate is promoted twice, and a killed
promotion is queued again like any trial, carrying what it promotes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from autodistill.objectives import get_objective

ETA = 3  # a third of each rung goes on: 3 -> 9 -> 27 epochs
RUNG_COUNT = 3
PROMOTION_ATTR = "promotion"  # system attribute: {"from", "lineage", "epochs", "parent_epochs"}


@dataclass(frozen=True)
class Plan:
    """A multi-fidelity search's rungs (epochs), its budget of promotions, and its objectives."""

    rungs: tuple[int, ...]
    promotions: int
    objectives: tuple[str, ...]


def rungs_for(first: int) -> tuple[int, ...]:
    """The rungs' epochs from the first: 3 -> (3, 9, 27)."""
    return tuple(first * ETA**k for k in range(RUNG_COUNT))


def promotion_of(t: FrozenTrial) -> dict | None:
    """What ``t`` promotes (its parent, its candidate's first trial, its rung), if anything."""
    return t.system_attrs.get(PROMOTION_ATTR)


def epochs_of(t: FrozenTrial, first: int) -> int:
    """The epochs behind ``t``'s score."""
    promo = promotion_of(t)
    return int(promo["epochs"]) if promo else first


def superseded(trials: Iterable[FrozenTrial]) -> dict[int, int]:
    """Trial number -> the promotion of it that finished (whose score replaces its own)."""
    return {promo["from"]: t.number for t in trials
            if t.state == TrialState.COMPLETE and (promo := promotion_of(t))}  # fmt: skip


def claimed(trials: Iterable[FrozenTrial]) -> set[int]:
    """Trials already promoted (whatever became of the promotion, even if it is queued again)."""
    return {promo["from"] for t in trials if (promo := promotion_of(t))}


def feasible(t: FrozenTrial) -> bool:
    return all(v <= 0 for v in t.constraints.values())


def due(trials: list[FrozenTrial], plan: Plan, *, budget: int, finished: int) -> tuple[
    FrozenTrial, int, int] | None:  # fmt: skip
    """The trial to promote now, its rung's epochs and those it goes on to, or None: the
    deepest rung first,
    each trial among the best ``1/ETA`` of its rung's results and not promoted yet, while the
    promotions spent stay within the paced budget (``finished`` of ``budget`` trials done)."""
    if plan.promotions <= 0 or len(plan.rungs) < 2:
        return None
    taken = claimed(trials)
    allowed = min(plan.promotions, math.ceil(plan.promotions * finished / budget))
    if len(taken) >= allowed:
        return None
    first = plan.rungs[0]
    for k in reversed(range(len(plan.rungs) - 1)):
        results = [t for t in trials if t.state == TrialState.COMPLETE and feasible(t)
                   and epochs_of(t, first) == plan.rungs[k]]  # fmt: skip
        for t in ranked(results, plan.objectives)[: len(results) // ETA]:
            if t.number not in taken:
                return t, plan.rungs[k], plan.rungs[k + 1]
    return None


def ranked(trials: list[FrozenTrial], objectives: tuple[str, ...]) -> list[FrozenTrial]:
    """Best first: by non-dominated layer over ``objectives``, then by accuracy in a layer."""
    signs = [-1.0 if get_objective(n).maximize else 1.0 for n in objectives]
    losses = {t.number: [s * v for s, v in zip(signs, t.values, strict=True)] for t in trials}
    acc = objectives.index("val_accuracy") if "val_accuracy" in objectives else 0

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x <= y for x, y in zip(a, b, strict=True)) and a != b

    left, out = list(trials), []
    while left:
        layer = [t for t in left if not any(dominates(losses[o.number], losses[t.number])
                                            for o in left)]  # fmt: skip
        out += sorted(layer, key=lambda t: (losses[t.number][acc], t.number))
        left = [t for t in left if t not in layer]
    return out


def enqueue(study: optuna.Study, parent: FrozenTrial, since: int, epochs: int) -> None:
    """Queue a trial of ``parent``'s candidate that trains on from its stable state at the
    rung of ``since`` epochs to ``epochs``; the caller holds the claim lock and asks next."""
    mine = promotion_of(parent)
    lineage = mine["lineage"] if mine else parent.number
    promo = {"from": parent.number, "lineage": lineage, "epochs": epochs, "parent_epochs": since}
    study.add_trial(optuna.create_trial(
        state=TrialState.WAITING, params=parent.params, distributions=parent.distributions,
        system_attrs={PROMOTION_ATTR: promo},
    ))  # fmt: skip
