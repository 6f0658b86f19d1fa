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

Noise: when no promotion is due, a promoted trial on the front is trained again with a second
seed (from the start, to its rung's epochs), so that the front can say how far apart two
seeds of one candidate land. A second seed counts against the same budget as a promotion; it
never enters the front or a rung's ranking itself.
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
REPLICATE_ATTR = "replicate"  # system attribute: {"of", "lineage", "epochs", "seed"}
SECOND_SEED = 1  # a replicate trains with the search's seed plus this


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


def replicate_of(t: FrozenTrial) -> dict | None:
    """Which trial ``t`` trains again with another seed (its rung, its seed offset), if any."""
    return t.system_attrs.get(REPLICATE_ATTR)


def epochs_of(t: FrozenTrial, first: int) -> int:
    """The epochs behind ``t``'s score."""
    extra = promotion_of(t) or replicate_of(t)
    return int(extra["epochs"]) if extra else first


def superseded(trials: Iterable[FrozenTrial]) -> dict[int, int]:
    """Trial number -> the promotion of it that finished (whose score replaces its own)."""
    return {promo["from"]: t.number for t in trials
            if t.state == TrialState.COMPLETE and (promo := promotion_of(t))}  # fmt: skip


def claimed(trials: Iterable[FrozenTrial]) -> set[int]:
    """Trials already promoted (whatever became of the promotion, even if it is queued again)."""
    return {promo["from"] for t in trials if (promo := promotion_of(t))}


def replicated(trials: Iterable[FrozenTrial]) -> set[int]:
    """Trials already given a second seed (whatever became of it)."""
    return {rep["of"] for t in trials if (rep := replicate_of(t))}


def spent(trials: list[FrozenTrial]) -> int:
    """Promotions and second seeds taken from the budget."""
    return len(claimed(trials)) + len(replicated(trials))


def feasible(t: FrozenTrial) -> bool:
    return all(v <= 0 for v in t.constraints.values())


def current(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The results that compete: trained, feasible, not superseded by a finished promotion,
    and not a second seed (which measures noise, not another candidate)."""
    replaced = superseded(trials)
    return [t for t in trials if t.state == TrialState.COMPLETE and feasible(t)
            and t.number not in replaced and replicate_of(t) is None]  # fmt: skip


def due(trials: list[FrozenTrial], plan: Plan, *, budget: int, finished: int) -> tuple[
    FrozenTrial, int, int] | None:  # fmt: skip
    """The trial to promote now, its rung's epochs and those it goes on to, or None: the
    deepest rung first,
    each trial among the best ``1/ETA`` of its rung's results and not promoted yet, while the
    promotions spent stay within the paced budget (``finished`` of ``budget`` trials done)."""
    if plan.promotions <= 0 or len(plan.rungs) < 2:
        return None
    if not _within_pace(trials, plan, budget=budget, finished=finished):
        return None
    taken = claimed(trials)
    first = plan.rungs[0]
    for k in reversed(range(len(plan.rungs) - 1)):
        results = [
            t
            for t in trials
            if t.state == TrialState.COMPLETE
            and feasible(t)
            and replicate_of(t) is None
            and epochs_of(t, first) == plan.rungs[k]
        ]
        for t in ranked(results, plan.objectives)[: len(results) // ETA]:
            if t.number not in taken:
                return t, plan.rungs[k], plan.rungs[k + 1]
    return None


def _within_pace(trials: list[FrozenTrial], plan: Plan, *, budget: int, finished: int) -> bool:
    allowed = min(plan.promotions, math.ceil(plan.promotions * finished / budget))
    return spent(trials) < allowed


def due_replicate(
    trials: list[FrozenTrial], plan: Plan, *, budget: int, finished: int
) -> FrozenTrial | None:
    """The promoted trial on the current front to train again with a second seed now, or None:
    the deepest rung first, then the most accurate; within the same paced budget as promotions
    (the caller asks ``due`` first: a promotion goes before a second seed)."""
    if plan.promotions <= 0 or len(plan.rungs) < 2:
        return None
    if not _within_pace(trials, plan, budget=budget, finished=finished):
        return None
    done = replicated(trials)
    results = current(trials)
    front = layers(results, plan.objectives)[0] if results else []
    waiting = [t for t in front if promotion_of(t) and t.number not in done]
    waiting.sort(key=lambda t: -epochs_of(t, plan.rungs[0]))  # stable: accuracy next
    return waiting[0] if waiting else None


def ranked(trials: list[FrozenTrial], objectives: tuple[str, ...]) -> list[FrozenTrial]:
    """Best first: by non-dominated layer over ``objectives``, then by accuracy in a layer."""
    return [t for layer in layers(trials, objectives) for t in layer]


def layers(trials: list[FrozenTrial], objectives: tuple[str, ...]) -> list[list[FrozenTrial]]:
    """Non-dominated layers over ``objectives`` (the first is the front), each sorted by
    accuracy, best first (then by trial number)."""
    signs = [-1.0 if get_objective(n).maximize else 1.0 for n in objectives]
    losses = {t.number: [s * v for s, v in zip(signs, t.values, strict=True)] for t in trials}
    acc = objectives.index("val_accuracy") if "val_accuracy" in objectives else 0

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x <= y for x, y in zip(a, b, strict=True)) and a != b

    left, out = list(trials), []
    while left:
        layer = [t for t in left if not any(dominates(losses[o.number], losses[t.number])
                                            for o in left)]  # fmt: skip
        out.append(sorted(layer, key=lambda t: (losses[t.number][acc], t.number)))
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


def enqueue_replicate(study: optuna.Study, of: FrozenTrial, first: int) -> None:
    """Queue a trial of ``of``'s candidate that trains from the start, with the second seed,
    for as many epochs as ``of`` did; the caller holds the claim lock and asks next."""
    mine = promotion_of(of)
    lineage = mine["lineage"] if mine else of.number
    rep = {"of": of.number, "lineage": lineage, "epochs": epochs_of(of, first),
           "seed": SECOND_SEED}  # fmt: skip
    study.add_trial(optuna.create_trial(
        state=TrialState.WAITING, params=of.params, distributions=of.distributions,
        system_attrs={REPLICATE_ATTR: rep},
    ))  # fmt: skip
