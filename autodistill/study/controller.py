"""The controller: takes trials and runs them through the objective, as one of many workers.

Each worker loops: under the study's claim lock it fails trials of dead workers (queueing them
again), counts the trials that use the budget, and creates one more if the budget allows; then
it runs that trial with a heartbeat. So any number of workers on any number of machines run
exactly ``budget`` trials between them, and a killed worker's trial is run again by another.
In a multi-fidelity search the same lock hands out the promotions and second seeds that are due.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, Trial, TrialState

from autodistill.signals import deferred
from autodistill.spaces import SearchSpace
from autodistill.study import private, promotion
from autodistill.study.candidate import TrialContext
from autodistill.study.objective import make_objective
from autodistill.study.record import WORKER, put, worker
from autodistill.study.storage import (
    beat_once,
    claim,
    heartbeat,
    liveness_known,
    recover_stale,
    retries,
    retry,
    worker_id,
)

log = logging.getLogger(__name__)
FINISHED = promotion.FINISHED
POLL_S = 2.0  # how often an idle worker looks for trials to retry while others finish
WAIT_NOTE_S = 60.0  # how often a waiting worker says again that it waits, and for how long


def budget_used(trials: list[FrozenTrial], *, running: bool = True) -> int:
    """Trials that count against the budget: finished or running, but not a failed attempt
    that was queued again (its retry counts instead), nor a promotion (it has its own)."""
    retried = retries(trials)
    states = FINISHED + ((TrialState.RUNNING,) if running else ())
    return sum(
        t.state in states and t.number not in retried and promotion.extra_of(t) is None
        for t in trials
    )


def finished_count(study: optuna.Study) -> int:
    """Trials with a result (trained, infeasible or failed), not counting retried attempts
    nor promotions and second seeds."""
    return budget_used(study.get_trials(deepcopy=False), running=False)


def promotions_done(study: optuna.Study) -> int:
    """Promotions and second seeds finished (trained or failed), not counting retried
    attempts."""
    trials = study.get_trials(deepcopy=False)
    retried = retries(trials)
    return sum(
        t.state in FINISHED and t.number not in retried and promotion.extra_of(t) is not None
        for t in trials
    )


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
    storage = private.storage_of(study)
    objective = make_objective(space, ctx)
    multi = ctx is not None and ctx.rungs  # (a worker with nothing to run may pass no ctx)
    plan = promotion.Plan(ctx.rungs, promotions, ctx.objectives, promotion_time) if multi else None
    ran = 0
    waiting_since, noted = None, 0.0
    while True:
        trial, trials = _claim(study, budget, plan)
        if trial is None:
            others = [
                t for t in trials if t.state == TrialState.RUNNING and liveness_known(storage, t)
            ]
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
            on_trial(study, storage.get_trial(private.trial_id(trial)))


def _say_waiting(others: list[FrozenTrial], waited_s: float) -> None:
    workers = sorted({str(worker(t) or "?") for t in others})
    log.warning(
        "budget taken: waiting (%.0f s so far) for %d trial(s) still running in %s; "
        "a trial whose worker dies is run again here",
        waited_s,
        len(others),
        ", ".join(workers),
    )


def _claim(
    study: optuna.Study, budget: int, plan: promotion.Plan | None = None
) -> tuple[Trial | None, list[FrozenTrial]]:
    """Under the claim lock: recover dead workers' trials, then take a queued one, or a
    promotion that is due, or create a trial if the budget allows. A signal meanwhile is held
    back until the bookkeeping is done."""
    storage = private.storage_of(study)
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
                elif (
                    again := promotion.due_replicate(trials, plan, budget=budget, finished=done)
                ) is not None:
                    promotion.enqueue_replicate(study, again, plan.rungs[0])
                    found = again
            promoting = found is not None or any(promotion.extra_of(t) for t in queued)
            if promoting or budget_used(trials) < budget:
                trial = study.ask()
                put(trial, {WORKER: worker_id()})
                beat_once(storage, private.trial_id(trial))
    except KeyboardInterrupt as exc:  # held back until the claim was done: undo the claim
        if trial is not None:
            with deferred(), claim(storage, study.study_name):
                retry(
                    study, trial.number, f"interrupted by {getattr(exc, 'signal_name', 'SIGINT')}"
                )
        raise
    return trial, trials


def _run_trial(
    study: optuna.Study, trial: Trial, objective: Callable[[Trial], list[float]]
) -> None:
    """Run one trial and record how it ended; an interruption queues it again, then re-raises."""
    try:
        with heartbeat(private.storage_of(study), private.trial_id(trial)):
            values = objective(trial)
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
    except KeyboardInterrupt as exc:
        with deferred(), claim(private.storage_of(study), study.study_name):
            retry(study, trial.number, f"interrupted by {getattr(exc, 'signal_name', 'SIGINT')}")
        raise
    except UpdateFinishedTrialError:
        log.warning(
            "trial %d was failed by another worker (its heartbeat looked stale) and "
            "queued again there; this attempt is dropped",
            trial.number,
        )
    except Exception:  # noqa: BLE001 - recorded with its reason by the objective; search goes on
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    else:
        study.tell(trial, list(values), skip_if_finished=True)
