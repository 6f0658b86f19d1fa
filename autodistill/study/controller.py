"""The controller: samples candidates, checks limits, trains, and records, as one of many workers.

Each worker loops: under the study's claim lock it fails trials of dead workers (queueing them
again), counts the trials that use the budget, and creates one more if the budget allows; then
it runs that trial with a heartbeat. So any number of workers on any number of machines run
exactly ``budget`` trials between them, and a killed worker's trial is run again by another.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace
from typing import Any, NoReturn

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, Trial, TrialState

from autodistill.errors import UserError
from autodistill.objectives import DEFAULT, get_objective
from autodistill.signals import deferred
from autodistill.spaces import Candidate, Param, SearchSpace
from autodistill.study import early_stop, promotion
from autodistill.study.evaluate import (
    Cost,
    InfeasibleArchitecture,
    Known,
    Rung,
    TrialContext,
    measure_candidate,
    train_candidate,
)
from autodistill.study.storage import (
    beat_once,
    claim,
    heartbeat,
    liveness_known,
    quiet_experimental,
    recover_stale,
    retries,
    retry,
    worker_id,
)

log = logging.getLogger(__name__)
SAMPLERS = ("tpe", "random", "nsga2", "gp")
FINISHED = promotion.FINISHED
POLL_S = 2.0  # how often an idle worker looks for trials to retry while others finish
WAIT_NOTE_S = 60.0  # how often a waiting worker says again that it waits, and for how long
OBJECTIVES_ATTR = "objectives"  # study user attribute: the objectives' names, in order
JOINED_ATTR = "workers_joined"  # study user attribute: how many workers have joined it
SPACE_ATTR = "space_sha256"  # study user attribute: what its search space samples, hashed


def make_sampler(name: str, *, seed: int, budget: int) -> optuna.samplers.BaseSampler:
    """The sampler for ``name``; TPE by default, as it handles conditional spaces in tens of trials.

    Multivariate TPE with ``group`` models each family's parameters jointly, and
    ``constant_liar`` keeps parallel workers from proposing the same point.
    """
    if name == "tpe":
        with quiet_experimental():  # ``group`` is stable in practice, labelled experimental
            return optuna.samplers.TPESampler(
                multivariate=True,
                group=True,
                constant_liar=True,
                n_startup_trials=max(5, min(10, budget // 4)),
                seed=seed,
            )
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(
            population_size=max(4, min(20, budget // 3)), seed=seed
        )
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    raise UserError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")


def check_sampler(name: str) -> None:
    if name not in SAMPLERS:
        raise UserError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")


def open_study(
    storage: BaseStorage,
    name: str,
    *,
    objectives: tuple[str, ...] = DEFAULT,
    sampler_name: str,
    seed: int,
    budget: int,
    identity: dict[str, str] | None = None,
    space: SearchSpace | None = None,
) -> optuna.Study:
    """Create the study, or join it to resume or to add a worker.

    The worker's one sampler is seeded from ``seed``, the trials the study already holds and
    the number of workers that joined before it: the same command proposes the same trials,
    a resumed study continues the same way every time, and workers that start together do not
    propose the same ones. ``identity`` (teacher weights, cache key, settings) is stored with
    the study by the first worker; a later worker with another one is refused before it
    changes anything, as its trials would not compare. A study made before objectives were
    recorded (accuracy in percent) is refused too.
    """
    check_sampler(sampler_name)
    directions = [get_objective(n).direction for n in objectives]
    with deferred(), claim(storage, name):
        # Look before creating: a journal records even a refused create_new_study, and a
        # refused worker must leave the study as it found it.
        study_id = _study_id(storage, name)
        if study_id is None:
            try:
                study_id = storage.create_new_study(
                    [optuna.study.StudyDirection[d.upper()] for d in directions], name
                )
                storage.set_study_user_attr(study_id, OBJECTIVES_ATTR, list(objectives))
            except optuna.exceptions.DuplicatedStudyError:  # another machine made it meanwhile
                study_id = storage.get_study_id_from_name(name)
        attrs = storage.get_study_user_attrs(study_id)
        if OBJECTIVES_ATTR not in attrs:
            raise UserError(f"study {name!r} was made by an older autodistill (accuracy in "
                            "percent, objectives not recorded); it can be reported but not "
                            "resumed: use another --study-name or --out")  # fmt: skip
        theirs = tuple(attrs[OBJECTIVES_ATTR])
        if theirs != tuple(objectives):
            raise UserError(f"study {name!r} trades off {','.join(theirs)}, not "
                            f"{','.join(objectives)}; give --objectives {','.join(theirs)} "
                            "or another --study-name")  # fmt: skip
        for key, value in (identity or {}).items():
            if key in attrs and attrs[key] != value:
                raise UserError(_identity_mismatch(name, key, attrs[key], value))
        conflicts = space_conflicts(storage, name, space) if space is not None else []
        if conflicts:  # also for studies made before spaces were fingerprinted
            raise UserError(f"study {name!r} sampled another search space ({conflicts[0]}"
                            f"{f', and {len(conflicts) - 1} more' if len(conflicts) > 1 else ''}"
                            "): the space was edited, or the study was made by an older "
                            "autodistill; restore the space, or start a new study with another "
                            "--study-name")  # fmt: skip
        for key, value in (identity or {}).items():
            if key not in attrs:
                storage.set_study_user_attr(study_id, key, value)
        joined = int(attrs.get(JOINED_ATTR, 0))
        held = len(storage.get_all_trials(study_id, deepcopy=False))
        storage.set_study_user_attr(study_id, JOINED_ATTR, joined + 1)
    state = np.random.SeedSequence([seed, held, joined]).generate_state(1)[0]
    sampler = make_sampler(sampler_name, seed=int(state), budget=budget)
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    with quiet_experimental():
        study.set_metric_names(list(objectives))
    return study


def recorded_identity(storage: BaseStorage, name: str) -> dict[str, Any]:
    """What the study ``name`` recorded about itself (its teacher, space, settings), read
    without changing anything; empty if there is no such study yet."""
    study_id = _study_id(storage, name)
    return {} if study_id is None else dict(storage.get_study_user_attrs(study_id))


def _study_id(storage: BaseStorage, name: str) -> int | None:
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        return None


def study_objectives(study: optuna.Study) -> tuple[str, ...]:
    """The objectives a study trades off (the three defaults for studies older than that)."""
    return tuple(study.user_attrs.get(OBJECTIVES_ATTR, DEFAULT))


def _identity_mismatch(name: str, key: str, theirs: str, mine: str) -> str:
    if key == SPACE_ATTR:
        return (f"study {name!r} was made with another search space: the space file was edited "
                "since (a study mixing trials of two spaces compares nothing); restore it, or "
                "start a new study with another --study-name")  # fmt: skip
    if key == "settings":
        old, new = json.loads(theirs), json.loads(mine)
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        diffs = ", ".join(f"{k}: {old.get(k)!r} here {new.get(k)!r}" for k in keys)
        return (f"study {name!r} was made with other settings ({diffs}); start this worker with "
                "the study's settings, or use another --study-name")  # fmt: skip
    return (f"study {name!r} was made with {key} {theirs[:12]}, this worker has {mine[:12]}: "
            "give every worker the same teacher (a shared --cache-dir or the same "
            "--teacher-checkpoint)")  # fmt: skip


def load_study(storage: BaseStorage, name: str) -> optuna.Study:
    """An existing study, read-only use (reports)."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise UserError(f"no study {name!r} in this storage; found: {names or 'none'}") from None


def budget_used(trials: list[FrozenTrial], *, running: bool = True) -> int:
    """Trials that count against the budget: finished or running, but not a failed attempt
    that was queued again (its retry counts instead), nor a promotion (it has its own)."""
    retried = retries(trials)
    states = FINISHED + ((TrialState.RUNNING,) if running else ())
    return sum(t.state in states and t.number not in retried and promotion.extra_of(t) is None
               for t in trials)  # fmt: skip


def finished_count(study: optuna.Study) -> int:
    """Trials with a result (trained, infeasible or failed), not counting retried attempts
    nor promotions and second seeds."""
    return budget_used(study.get_trials(deepcopy=False), running=False)


def promotions_done(study: optuna.Study) -> int:
    """Promotions and second seeds finished (trained or failed), not counting retried
    attempts."""
    trials = study.get_trials(deepcopy=False)
    retried = retries(trials)
    return sum(t.state in FINISHED and t.number not in retried and promotion.extra_of(t) is not None
               for t in trials)  # fmt: skip


def run(
    study: optuna.Study,
    space: SearchSpace,
    ctx: TrialContext,
    *,
    budget: int,
    promotions: int = 0,
    promotion_time: float = 0.0,
    on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
) -> int:
    """Take trials until the study holds ``budget`` of them (and, in a multi-fidelity search,
    ``promotions`` promotions, taking at most ``promotion_time`` of the first-rung trials'
    time); returns how many this worker ran.

    A worker with nothing left to start waits while other live workers still run trials,
    so a trial that one of them loses is run again rather than missing from the budget (and a
    promotion that one of them makes due is taken).
    """
    storage = study._storage
    objective = make_objective(space, ctx)
    multi = ctx is not None and ctx.rungs  # (a worker with nothing to run may pass no ctx)
    plan = promotion.Plan(ctx.rungs, promotions, ctx.objectives, promotion_time) if multi else None
    ran = 0
    waiting_since, noted = None, 0.0
    while True:
        trial, trials = _claim(study, budget, plan)
        if trial is None:
            others = [t for t in trials
                      if t.state == TrialState.RUNNING and liveness_known(storage, t)]  # fmt: skip
            if not others:
                return ran
            now = time.monotonic()
            waiting_since = waiting_since if waiting_since is not None else now
            if now - waiting_since >= noted:
                _say_waiting(others, now - waiting_since)
                noted += WAIT_NOTE_S
            time.sleep(POLL_S)
            continue
        waiting_since, noted = None, 0.0
        _run_trial(study, trial, objective)
        ran += 1
        if on_trial is not None:
            on_trial(study, storage.get_trial(trial._trial_id))


def _say_waiting(others: list[FrozenTrial], waited_s: float) -> None:
    workers = sorted({str(t.user_attrs.get("worker") or "?") for t in others})
    log.warning(
        "budget taken: waiting (%.0f s so far) for %d trial(s) still running in %s; "
        "a trial whose worker dies is run again here",
        waited_s, len(others), ", ".join(workers),
    )  # fmt: skip


def _claim(
    study: optuna.Study, budget: int, plan: promotion.Plan | None = None
) -> tuple[Trial | None, list[FrozenTrial]]:
    """Under the claim lock: recover dead workers' trials, then take a queued one, or a
    promotion that is due, or create a trial if the budget allows. A signal meanwhile is held
    back until the bookkeeping is done."""
    storage = study._storage
    trial = None
    try:
        with deferred(), claim(storage, study.study_name):
            recover_stale(study)
            trials = study.get_trials(deepcopy=False)
            queued = [t for t in trials if t.state == TrialState.WAITING]
            found = None
            if plan is not None and not queued:
                done = budget_used(trials, running=False)
                found = promotion.due(trials, plan, budget=budget, finished=done)
                if found is not None:
                    promotion.enqueue(study, *found)
                elif (again := promotion.due_replicate(trials, plan, budget=budget,
                                                       finished=done)) is not None:  # fmt: skip
                    promotion.enqueue_replicate(study, again, plan.rungs[0])
                    found = again
            promoting = found is not None or any(promotion.extra_of(t) for t in queued)
            if promoting or budget_used(trials) < budget:
                trial = study.ask()
                trial.set_user_attr("worker", worker_id())
                beat_once(storage, trial._trial_id)
    except KeyboardInterrupt as exc:  # held back until the claim was done: undo the claim
        if trial is not None:
            with deferred(), claim(storage, study.study_name):
                retry(study, trial.number,
                      f"interrupted by {getattr(exc, 'signal_name', 'SIGINT')}")  # fmt: skip
        raise
    return trial, trials


def _run_trial(
    study: optuna.Study, trial: Trial, objective: Callable[[Trial], list[float]]
) -> None:
    """Run one trial and record how it ended; an interruption queues it again, then re-raises."""
    try:
        with heartbeat(study._storage, trial._trial_id):
            values = objective(trial)
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
    except KeyboardInterrupt as exc:
        with deferred(), claim(study._storage, study.study_name):
            retry(study, trial.number, f"interrupted by {getattr(exc, 'signal_name', 'SIGINT')}")
        raise
    except UpdateFinishedTrialError:
        log.warning("trial %d was failed by another worker (its heartbeat looked stale) and "
                    "queued again there; this attempt is dropped", trial.number)  # fmt: skip
    except Exception:  # noqa: BLE001 - recorded with its reason by the objective; search goes on
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    else:
        study.tell(trial, list(values), skip_if_finished=True)


def distribution(p: Param) -> BaseDistribution:
    """The Optuna distribution a trial samples ``p`` from."""
    if p.kind == "categorical":
        return CategoricalDistribution(list(p.choices))
    if p.kind == "int":
        return IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
    return FloatDistribution(float(p.low), float(p.high), log=p.log, step=p.step)


def space_conflicts(storage: BaseStorage, name: str, space: SearchSpace) -> list[str]:
    """Parameters the study ``name`` sampled from another distribution than ``space`` gives
    them: resuming would fail every trial (Optuna refuses a changed distribution)."""
    study_id = _study_id(storage, name)
    if study_id is None:
        return []
    recorded: dict[str, BaseDistribution] = {}
    for t in storage.get_all_trials(study_id, deepcopy=False):
        for key, dist in t.distributions.items():
            recorded.setdefault(key, dist)
    mine = space.parameters()
    return [f"{key}: {recorded[key]} in the study, {distribution(mine[key])} now"
            for key in recorded if key in mine and mine[key].kind != "fixed"
            and distribution(mine[key]) != recorded[key]]  # fmt: skip


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
                trial.set_user_attr("failure_reason", reason)
            raise
        finally:
            with suppress(UpdateFinishedTrialError):
                trial.set_user_attr("duration_s", round(time.perf_counter() - start, 2))

    return objective


def _evaluate(trial: Trial, space: SearchSpace, ctx: TrialContext) -> list[float]:
    system = trial.study._storage.get_trial_system_attrs(trial._trial_id)
    promo, rep = system.get(promotion.PROMOTION_ATTR), system.get(promotion.REPLICATE_ATTR)
    rung = None
    if promo is not None:
        rung = Rung(promo["epochs"], promo["lineage"], promo["parent_epochs"])
        trial.set_user_attr("promoted_from", promo["from"])
    elif rep is not None:  # the same candidate from the start, with another seed
        rung = Rung(rep["epochs"], rep["lineage"], seed=rep["seed"])
        ctx = replace(ctx, seed=ctx.seed + rep["seed"])
        trial.set_user_attr("replicate_of", rep["of"])
        trial.set_user_attr("seed", ctx.seed)
        promo = rep  # chosen for its result, like a promotion: not stopped on the way
    elif ctx.rungs:
        rung = Rung(ctx.rungs[0], trial.number)
    candidate = space.sample(_suggest(trial))
    trial.set_user_attr("candidate", candidate.to_dict())
    try:
        model, cost = measure_candidate(candidate, ctx, known=_known(trial, candidate))
    except InfeasibleArchitecture as exc:
        _reject(trial, {"runs_on_input": 1.0}, str(exc))
    trial.set_user_attr("arch", cost.arch)
    for key, value in {**cost.values, **cost.details}.items():
        trial.set_user_attr(key, value)
    over = ctx.limits.violations(cost.values)
    if over:
        _reject(trial, over, "; ".join(f"{k} exceeded by {v:g}" for k, v in over.items()))
    # A promotion was chosen for its rung's result: it is not stopped on the way.
    on_rung = _rung_check(trial, cost, ctx) if promo is None else None
    trained = train_candidate(model, candidate, ctx, on_rung=on_rung, rung=rung)
    trial.set_user_attr("epochs_trained", rung.epochs if rung is not None else ctx.epochs)
    if promo is not None:
        trial.set_user_attr("began", trained.began)
    for key, value in trained.values.items():
        trial.set_user_attr(key, value)
    trial.set_user_attr("train_s", round(trained.seconds, 2))
    trial.set_user_attr("history", trained.history)
    trial.set_user_attr("recipe", trained.recipe)
    values = {**cost.values, **trained.values}
    _check_floor(trial, values, ctx)
    return [values[name] for name in ctx.objectives]


def _check_floor(trial: Trial, values: dict[str, float], ctx: TrialContext) -> None:
    """Record by how much a trained student clears or misses each floor (a constraint, so
    the sampler learns the region and the front leaves it out); one below is named so."""
    for name, least in ctx.limits.min.items():
        trial.set_constraint(f"min_{name}", least - values[name])
        if values[name] < least:
            objective = get_objective(name)
            trial.set_user_attr("below_floor", f"{name} {objective.text(values[name])} is "
                                f"below the floor {objective.text(least)} by "
                                f"{objective.text(least - values[name])}")  # fmt: skip


def _known(trial: Trial, candidate: Candidate) -> Known:
    """The timed objectives the study's first trial of the same architecture recorded."""
    d = candidate.to_dict()  # as recorded: JSON lists, not tuples
    mine, skip = (d["family"], d["arch"]), ("latency_ms", "latency_of")
    for t in sorted(trial.study.get_trials(deepcopy=False), key=lambda t: t.number):
        a, theirs = t.user_attrs, t.user_attrs.get("candidate") or {}
        # A disturbed measurement is not passed on: the next trial of it times again.
        if t.number == trial.number or "latency_ms" not in a or a.get("latency_disturbed") or (
                theirs.get("family"), theirs.get("arch")) != mine:  # fmt: skip
            continue
        details = {k: v for k, v in a.items() if k.startswith("latency_") and k not in skip}
        details["latency_of"] = a.get("latency_of", t.number)
        return {"latency_ms": (a["latency_ms"], details)}
    return {}


def _rung_check(trial: Trial, cost: Cost, ctx: TrialContext) -> Callable[[int, float], None]:
    """Record the accuracy at each rung; stop the trial there if others dominate it."""
    rungs: dict[str, float] = {}

    def at_rung(epoch: int, accuracy: float) -> None:
        rungs[str(epoch)] = accuracy
        trial.set_user_attr(early_stop.RUNGS_ATTR, dict(rungs))
        floor = ctx.limits.min.get(early_stop.RUNG_OBJECTIVE)
        if not ctx.early_stop and floor is None:
            return
        trials = trial.study.get_trials(deepcopy=False)
        # Not itself, nor an earlier attempt at it, nor any attempt that was run again.
        mine = set(trial.study._storage.get_trial(trial._trial_id).system_attrs.get(
            "retry_history", []))  # fmt: skip
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
            reason = (f"stopped after epoch {epoch} of {ctx.epochs}: {dominators} of "
                      f"{len(seen)} trials at that epoch were more accurate and no worse on "
                      f"{others}")  # fmt: skip
            trial.set_user_attr("stopped", reason)
            trial.set_user_attr("val_accuracy", accuracy)
            raise optuna.TrialPruned(reason)

    return at_rung


def _stop_below_floor(
    trial: Trial, epoch: int, accuracy: float, floor: float, trials: list[FrozenTrial],
    exclude: set[int], ctx: TrialContext,
) -> None:  # fmt: skip
    """Stop the trial as infeasible if, gaining as much as any finished trial gained from
    this rung to its end, it would still end below the floor."""
    gained = early_stop.most_gained(trials, epoch, exclude=exclude)
    if gained is None or accuracy + gained >= floor:
        return
    acc = get_objective(early_stop.RUNG_OBJECTIVE)
    # By how much it would miss at best: what the sampler learns the region from.
    trial.set_constraint(f"min_{early_stop.RUNG_OBJECTIVE}", floor - (accuracy + gained))
    trial.set_user_attr("val_accuracy", accuracy)
    reason = (f"stopped after epoch {epoch} of {ctx.epochs}: {acc.text(accuracy)} cannot reach "
              f"the floor {acc.text(floor)} (no trial gained more than {acc.text(gained)} from "
              "there)")  # fmt: skip
    trial.set_user_attr("below_floor", reason)
    raise optuna.TrialPruned(reason)


def _reject(trial: Trial, violations: dict[str, float], reason: str) -> NoReturn:
    """Record an untrained, infeasible candidate; TPE learns the region from the violations."""
    for key, amount in violations.items():
        trial.set_constraint(key, amount)
    trial.set_user_attr("infeasible", reason)
    raise optuna.TrialPruned(reason)


def sample_candidates(space: SearchSpace, n: int, *, seed: int) -> list[Candidate]:
    """``n`` candidates drawn uniformly from ``space`` (for benchmarks and baselines)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [space.sample(_suggest(study.ask())) for _ in range(n)]
