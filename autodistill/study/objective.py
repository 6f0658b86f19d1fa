"""The trial objective: sample a candidate, measure it, refuse what breaks a limit, train it
(at its rung, for a promotion or a second seed), stop it early where others dominate it or it
cannot reach a floor, and record all of it on the trial."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, Trial

from autodistill.losses import get_loss
from autodistill.objectives import get_objective
from autodistill.spaces import Candidate, Param, SearchSpace
from autodistill.study import early_stop, private, promotion, record
from autodistill.study.candidate import (
    Cost,
    InfeasibleArchitecture,
    Known,
    Rung,
    TrialContext,
    measure_candidate,
    train_candidate,
)
from autodistill.study.opening import distribution
from autodistill.study.storage import retries

log = logging.getLogger(__name__)


def _suggest(trial: Trial) -> Callable[[str, Param], Any]:
    def suggest(name: str, p: Param) -> Any:
        d = distribution(p)  # the one mapping from a Param, also used to compare with a study
        if isinstance(d, CategoricalDistribution):
            return trial.suggest_categorical(name, list(d.choices))
        if isinstance(d, IntDistribution):
            return trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
        return trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)

    return suggest


def make_objective(space: SearchSpace, ctx: TrialContext) -> Callable[[Trial], list[float]]:
    """The Optuna objective: measure first, refuse what breaks a limit, then train."""

    def objective(trial: Trial) -> list[float]:
        start = time.perf_counter()
        try:
            return _evaluate(trial, space, ctx)
        except (optuna.TrialPruned, KeyboardInterrupt, UpdateFinishedTrialError):
            raise
        except Exception as exc:
            lines = str(exc).strip().splitlines()
            reason = type(exc).__name__ + (f": {lines[0]}" if lines else "")
            log.warning("trial %d failed: %s", trial.number, reason)
            with suppress(UpdateFinishedTrialError):
                record.put(trial, {record.FAILURE: reason})
            raise
        finally:
            with suppress(UpdateFinishedTrialError):
                record.put(trial, {record.DURATION: round(time.perf_counter() - start, 2)})

    return objective


def _evaluate(trial: Trial, space: SearchSpace, ctx: TrialContext) -> list[float]:
    system = private.storage_of(trial.study).get_trial_system_attrs(private.trial_id(trial))
    promo, rep = system.get(promotion.PROMOTION_ATTR), system.get(promotion.REPLICATE_ATTR)
    rung = None
    if promo is not None:
        rung = Rung(promo["epochs"], promo["lineage"], promo["parent_epochs"])
        record.put(trial, {record.PROMOTED_FROM: promo["from"]})
    elif rep is not None:  # the same candidate from the start, with another seed
        rung = Rung(rep["epochs"], rep["lineage"], seed=rep["seed"])
        ctx = replace(ctx, seed=ctx.seed + rep["seed"])
        record.put(trial, {record.REPLICATE_OF: rep["of"]})
        record.put(trial, {record.SEED: ctx.seed})
        promo = rep  # chosen for its result, like a promotion: not stopped on the way
    elif ctx.rungs:
        rung = Rung(ctx.rungs[0], trial.number)
    candidate = space.sample(_suggest(trial))
    record.put(trial, {record.CANDIDATE: candidate.to_dict()})
    lacking = get_loss(candidate.loss).needs - ctx.views.kinds
    if lacking:  # a given teacher that shows no features or maps: nothing to distil them from
        record.reject(
            trial,
            {record.TEACHER_GIVES: 1.0},
            f"the loss {candidate.loss} reads the teacher's {'/'.join(sorted(lacking))}, "
            "which this teacher does not give",
        )
    try:
        model, cost = measure_candidate(candidate, ctx, known=_known(trial, candidate))
    except InfeasibleArchitecture as exc:
        record.reject(trial, {record.RUNS_ON_INPUT: 1.0}, str(exc))
    record.put(trial, {record.ARCH: cost.arch})
    record.measured(trial, {**cost.values, **cost.details})
    over = ctx.limits.violations(cost.values)
    if over:
        record.reject(trial, over, "; ".join(f"{k} exceeded by {v:g}" for k, v in over.items()))
    # A promotion was chosen for its rung's result: it is not stopped on the way.
    on_rung = _rung_check(trial, cost, ctx) if promo is None else None
    trained = train_candidate(model, candidate, ctx, on_rung=on_rung, rung=rung)
    record.put(trial, {record.EPOCHS: rung.epochs if rung is not None else ctx.epochs})
    if promo is not None:
        record.put(trial, {record.BEGAN: trained.began})
    record.measured(trial, trained.values)
    record.put(trial, {record.TRAIN_S: round(trained.seconds, 2)})
    record.put(trial, {record.HISTORY: trained.history})
    record.put(trial, {record.RECIPE: trained.recipe})
    values = {**cost.values, **trained.values}
    _check_floor(trial, values, ctx)
    return [values[name] for name in ctx.objectives]


def _check_floor(trial: Trial, values: dict[str, float], ctx: TrialContext) -> None:
    """Record by how much a trained student clears or misses each floor (a constraint, so
    the sampler learns the region and the front leaves it out); one below is named so."""
    for name, least in ctx.limits.min.items():
        if values[name] < least:
            objective = get_objective(name)
            record.below_floor(
                trial,
                record.floor_key(name),
                least - values[name],
                f"{name} {objective.text(values[name])} is below the floor "
                f"{objective.text(least)} by "
                f"{objective.text(least - values[name])}",
            )
        else:  # by how much it clears it: what the sampler learns the region from
            trial.set_constraint(record.floor_key(name), least - values[name])


def _known(trial: Trial, candidate: Candidate) -> Known:
    """The timed objectives the study's first trial of the same architecture recorded."""
    d = candidate.to_dict()  # as recorded: JSON lists, not tuples
    mine = (d["family"], d["arch"])
    for t in sorted(trial.study.get_trials(deepcopy=False), key=lambda t: t.number):
        theirs = record.get(t, record.CANDIDATE) or {}
        details = record.latency_details(t)
        # A disturbed measurement is not passed on: the next trial of it times again.
        if (
            t.number == trial.number
            or record.value(t, record.LATENCY) is None
            or details.get("latency_disturbed")
            or (theirs.get("family"), theirs.get("arch")) != mine
        ):
            continue
        details["latency_of"] = details.get("latency_of", t.number)
        return {record.LATENCY: (record.value(t, record.LATENCY), details)}
    return {}


def _rung_check(trial: Trial, cost: Cost, ctx: TrialContext) -> Callable[[int, float], None]:
    """Record the accuracy at each rung; stop the trial there if others dominate it."""
    rungs: dict[str, float] = {}

    def at_rung(epoch: int, accuracy: float) -> None:
        rungs[str(epoch)] = accuracy
        record.put(trial, {record.RUNGS: dict(rungs)})
        floor = ctx.limits.min.get(early_stop.RUNG_OBJECTIVE)
        if not ctx.early_stop and floor is None:
            return
        trials = trial.study.get_trials(deepcopy=False)
        # Not itself, nor an earlier attempt at it, nor any attempt that was run again.
        mine = set(
            private.storage_of(trial.study)
            .get_trial(private.trial_id(trial))
            .system_attrs.get("retry_history", [])
        )
        exclude = {trial.number} | mine | set(retries(trials))
        if floor is not None:
            _stop_below_floor(trial, epoch, accuracy, floor, trials, exclude, ctx)
        if not ctx.early_stop:
            return
        point = early_stop.point(accuracy, cost.values, ctx.objectives)
        seen = early_stop.seen_at(trials, epoch, ctx.objectives, exclude=exclude)
        stop, dominators = early_stop.should_stop(point, seen)
        if stop:
            others = ", ".join(n for n in ctx.objectives if n != early_stop.RUNG_OBJECTIVE)
            reason = (
                f"stopped after epoch {epoch} of {ctx.epochs}: {dominators} of "
                f"{len(seen)} trials at that epoch were more accurate and no worse on "
                f"{others}"
            )
            record.stop(trial, reason, accuracy)

    return at_rung


def _stop_below_floor(
    trial: Trial,
    epoch: int,
    accuracy: float,
    floor: float,
    trials: list[FrozenTrial],
    exclude: set[int],
    ctx: TrialContext,
) -> None:
    """Stop the trial as infeasible if, gaining as much as any finished trial gained from
    this rung to its end, it would still end below the floor."""
    gained = early_stop.most_gained(trials, epoch, exclude=exclude)
    if gained is None or accuracy + gained >= floor:
        return
    acc = get_objective(early_stop.RUNG_OBJECTIVE)
    # By how much it would miss at best: what the sampler learns the region from.
    record.measured(trial, {record.ACCURACY: accuracy})
    reason = (
        f"stopped after epoch {epoch} of {ctx.epochs}: {acc.text(accuracy)} cannot reach "
        f"the floor {acc.text(floor)} (no trial gained more than {acc.text(gained)} from "
        "there)"
    )
    record.below_floor(
        trial, record.floor_key(early_stop.RUNG_OBJECTIVE), floor - (accuracy + gained), reason
    )
    raise optuna.TrialPruned(reason)


def sample_candidates(space: SearchSpace, n: int, *, seed: int) -> list[Candidate]:
    """``n`` candidates drawn uniformly from ``space`` (for benchmarks and baselines)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [space.sample(_suggest(study.ask())) for _ in range(n)]
