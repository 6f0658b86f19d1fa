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

from autodistill.objectives import minimised, nondominated_layers
from autodistill.study.record import DURATION, TRAIN_S, get

ETA = 3  # a third of each rung goes on: 3 -> 9 -> 27 epochs
RUNG_COUNT = 3
# System attributes: {"from", "lineage", "epochs", "parent_epochs", "estimate_s"} and
# {"of", "lineage", "epochs", "seed", "estimate_s"} (estimate_s: the seconds it was expected to
# take, counted against the time share until it has its own).
PROMOTION_ATTR = "promotion"
REPLICATE_ATTR = "replicate"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
SECOND_SEED = 1  # a replicate trains with the search's seed plus this


@dataclass(frozen=True)
class Plan:
    """A multi-fidelity search's rungs (epochs), its budget of promotions, and its objectives.

    ``time_share`` bounds their time too: promotions and second seeds together may take at most
    this share of the seconds the first-rung trials have taken so far (0: no bound), so the
    search costs at most ``1 + time_share`` times its first-rung trials."""

    rungs: tuple[int, ...]
    promotions: int
    objectives: tuple[str, ...]
    time_share: float = 0.0


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
    return {
        promo["from"]: t.number
        for t in trials
        if t.state == TrialState.COMPLETE and (promo := promotion_of(t))
    }


def claimed(trials: Iterable[FrozenTrial]) -> set[int]:
    """Trials already promoted (whatever became of the promotion, even if it is queued again)."""
    return {promo["from"] for t in trials if (promo := promotion_of(t))}


def replicated(trials: Iterable[FrozenTrial]) -> set[int]:
    """Trials already given a second seed (whatever became of it)."""
    return {rep["of"] for t in trials if (rep := replicate_of(t))}


def spent(trials: list[FrozenTrial]) -> int:
    """Promotions and second seeds taken from the budget."""
    return len(claimed(trials)) + len(replicated(trials))


def extra_of(t: FrozenTrial) -> dict | None:
    """What a trial beyond the budget of candidates does: a promotion or a second seed."""
    return promotion_of(t) or replicate_of(t)


def _seconds(t: FrozenTrial) -> float:
    return float(get(t, DURATION) or 0.0)


def _trained_epochs(t: FrozenTrial, first: int) -> int:
    """The epochs ``t`` itself trained (a promotion only those past its parent's rung)."""
    promo = promotion_of(t)
    return epochs_of(t, first) - (int(promo["parent_epochs"]) if promo else 0)


def estimate_s(t: FrozenTrial, epochs: int, first: int) -> float:
    """Seconds a trial of ``t``'s candidate that trains ``epochs`` epochs will take: ``t``'s
    time per epoch, plus what ``t`` spent besides training (building, measuring)."""
    train = float(get(t, TRAIN_S) or 0.0)
    per_epoch = train / max(_trained_epochs(t, first), 1)
    return per_epoch * epochs + max(_seconds(t) - train, 0.0)


def extra_seconds(trials: list[FrozenTrial]) -> float:
    """Seconds promotions and second seeds took (every attempt), or will take if not done."""
    return sum(
        _seconds(t) if t.state in FINISHED else float(extra.get("estimate_s", 0.0))
        for t in trials
        if (extra := extra_of(t))
    )


def first_seconds(trials: list[FrozenTrial]) -> float:
    """Seconds the finished first-rung trials took."""
    return sum(_seconds(t) for t in trials if t.state in FINISHED and extra_of(t) is None)


def feasible(t: FrozenTrial) -> bool:
    return all(v <= 0 for v in t.constraints.values())


def current(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The results that compete: trained, feasible, not superseded by a finished promotion,
    and not a second seed (which measures noise, not another candidate)."""
    replaced = superseded(trials)
    return [
        t
        for t in trials
        if t.state == TrialState.COMPLETE
        and feasible(t)
        and t.number not in replaced
        and replicate_of(t) is None
    ]


def due(
    trials: list[FrozenTrial], plan: Plan, *, budget: int, finished: int
) -> tuple[FrozenTrial, int, int] | None:
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
    room = _time_left(trials, plan)
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
            if t.number not in taken:  # the best goes first, or waits until it fits
                cost = estimate_s(t, plan.rungs[k + 1] - plan.rungs[k], first)
                return (t, plan.rungs[k], plan.rungs[k + 1]) if cost <= room else None
    return None


def _within_pace(trials: list[FrozenTrial], plan: Plan, *, budget: int, finished: int) -> bool:
    allowed = min(plan.promotions, math.ceil(plan.promotions * finished / budget))
    return spent(trials) < allowed


def _time_left(trials: list[FrozenTrial], plan: Plan) -> float:
    """Seconds the time share still allows (infinite without one)."""
    if plan.time_share <= 0:
        return math.inf
    return plan.time_share * first_seconds(trials) - extra_seconds(trials)


def due_replicate(
    trials: list[FrozenTrial], plan: Plan, *, budget: int, finished: int
) -> FrozenTrial | None:
    """The promoted trial on the current front to train again with a second seed now, or None:
    the deepest rung first, then the most accurate, among those whose time fits; within the
    same paced budget as promotions (the caller asks ``due`` first: a promotion goes before a
    second seed)."""
    if plan.promotions <= 0 or len(plan.rungs) < 2:
        return None
    if not _within_pace(trials, plan, budget=budget, finished=finished):
        return None
    done = replicated(trials)
    results = current(trials)
    front = layers(results, plan.objectives)[0] if results else []
    first, room = plan.rungs[0], _time_left(trials, plan)
    waiting = [
        t
        for t in front
        if promotion_of(t)
        and t.number not in done
        and estimate_s(t, epochs_of(t, first), first) <= room
    ]
    waiting.sort(key=lambda t: -epochs_of(t, first))  # stable: accuracy next
    return waiting[0] if waiting else None


def ranked(trials: list[FrozenTrial], objectives: tuple[str, ...]) -> list[FrozenTrial]:
    """Best first: by non-dominated layer over ``objectives``, then by accuracy in a layer."""
    return [t for layer in layers(trials, objectives) for t in layer]


def layers(trials: list[FrozenTrial], objectives: tuple[str, ...]) -> list[list[FrozenTrial]]:
    """Non-dominated layers over ``objectives`` (the first is the front), each sorted by
    accuracy, best first (then by trial number)."""
    points = minimised([t.values for t in trials], objectives)
    acc = objectives.index("val_accuracy") if "val_accuracy" in objectives else 0
    return [
        sorted((trials[i] for i in layer), key=lambda t: (points[trials.index(t)][acc], t.number))
        for layer in nondominated_layers(points)
    ]


def enqueue(study: optuna.Study, parent: FrozenTrial, since: int, epochs: int) -> None:
    """Queue a trial of ``parent``'s candidate that trains on from its stable state at the
    rung of ``since`` epochs to ``epochs``; the caller holds the claim lock and asks next."""
    mine = promotion_of(parent)
    lineage = mine["lineage"] if mine else parent.number
    # ``parent`` scored at ``since`` epochs, whatever the first rung: all the estimate needs.
    cost = estimate_s(parent, epochs - since, first=since)
    promo = {
        "from": parent.number,
        "lineage": lineage,
        "epochs": epochs,
        "parent_epochs": since,
        "estimate_s": round(cost, 2),
    }
    study.add_trial(
        optuna.create_trial(
            state=TrialState.WAITING,
            params=parent.params,
            distributions=parent.distributions,
            system_attrs={PROMOTION_ATTR: promo},
        )
    )


def enqueue_replicate(study: optuna.Study, of: FrozenTrial, first: int) -> None:
    """Queue a trial of ``of``'s candidate that trains from the start, with the second seed,
    for as many epochs as ``of`` did; the caller holds the claim lock and asks next."""
    mine = promotion_of(of)
    lineage = mine["lineage"] if mine else of.number
    epochs = epochs_of(of, first)
    rep = {
        "of": of.number,
        "lineage": lineage,
        "epochs": epochs,
        "seed": SECOND_SEED,
        "estimate_s": round(estimate_s(of, epochs, first), 2),
    }
    study.add_trial(
        optuna.create_trial(
            state=TrialState.WAITING,
            params=of.params,
            distributions=of.distributions,
            system_attrs={REPLICATE_ATTR: rep},
        )
    )
