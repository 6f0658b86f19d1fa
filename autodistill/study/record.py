"""A trial's record: the names of everything a trial records about itself, the functions that
write them, and the one reading of a finished trial (its state, why it ended so, and by how
much it broke each constraint)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from autodistill.spaces import Candidate

# Trial user attributes.
CANDIDATE = "candidate"  # Candidate.to_dict(): what the trial sampled, enough to rebuild it
ARCH = "arch"  # its architecture in a few words
WORKER = "worker"  # host:pid:id of the worker that ran it
DURATION = "duration_s"  # the whole trial, measuring included
TRAIN_S = "train_s"  # its training alone
EPOCHS = "epochs_trained"
BEGAN = "began"  # a promotion: the epoch it continued from
HISTORY = "history"
RECIPE = "recipe"
RUNGS = "rung_accuracy"  # {epoch: validation accuracy (0..1) at its end}
PROMOTED_FROM = "promoted_from"
REPLICATE_OF = "replicate_of"
SEED = "seed"
CRASHED = "crashed"  # the signal that killed the trial's worker (the supervisor's)
# Why a trial ended without a score on the front: one of these holds the line that says so.
INFEASIBLE = "infeasible"  # broke a limit, or cannot run on the input: never trained
STOPPED = "stopped"  # stopped early at an epoch rung, others dominating it there
BELOW_FLOOR = "below_floor"  # under --min-accuracy, trained or stopped
FAILURE = "failure_reason"  # an exception
# A constraint an untrained candidate broke because it cannot run on the input size.
RUNS_ON_INPUT = "runs_on_input"
# A constraint broken by a candidate whose loss reads an output the given teacher lacks.
TEACHER_GIVES = "teacher_gives"
# Each measured or trained objective is recorded under its own name (``val_accuracy``,
# ``params``, ``latency_ms``, ...); a latency's details under ``latency_*`` beside it.
ACCURACY = "val_accuracy"  # also the accuracy at the rung a stopped trial reached
LATENCY = "latency_ms"
LATENCY_DETAILS = "latency_"


def put(trial: Trial, values: Mapping[str, Any]) -> None:
    """Record ``values`` on a running trial, each under one of the names above (or an
    objective's, or a latency detail's): the one writer of a trial's attributes."""
    for key, value in values.items():
        trial.set_user_attr(key, value)


def put_stored(study: optuna.Study, t: FrozenTrial, values: Mapping[str, Any]) -> None:
    """``put`` for a trial another process ran (the supervisor's record of a crash, the
    clearing of a queued copy's inherited attributes)."""
    from autodistill.study import private

    for key, value in values.items():
        private.storage_of(study).set_trial_user_attr(private.trial_id(t), key, value)


def get(t: FrozenTrial, key: str, default: Any = None) -> Any:
    """What trial ``t`` recorded under ``key``: the one reader of a trial's attributes."""
    return t.user_attrs.get(key, default)


measured = put  # objective values and a latency's details, under their names


def value(t: FrozenTrial, name: str) -> Any:
    """The value trial ``t`` recorded for objective ``name``; None if it has none."""
    return get(t, name)


def latency_details(t: FrozenTrial) -> dict[str, Any]:
    """What was recorded beside a trial's latency: its target, spread, window, and so on."""
    return {k: v for k, v in t.user_attrs.items() if k.startswith(LATENCY_DETAILS) and k != LATENCY}


def worker(t: FrozenTrial) -> str | None:
    """The worker that ran trial ``t`` (host:pid:start), if recorded."""
    return t.user_attrs.get(WORKER)


def rung_accuracy(t: FrozenTrial, rung: int) -> float | None:
    """The validation accuracy trial ``t`` had at the end of epoch ``rung``."""
    return (t.user_attrs.get(RUNGS) or {}).get(str(rung))


def limit_key(objective: str) -> str:
    """The constraint a ``--max-<objective>`` limit is recorded under."""
    return f"max_{objective}"


def floor_key(objective: str) -> str:
    """The constraint a floor (``--min-accuracy``) is recorded under."""
    return f"min_{objective}"


def reject(trial: Trial, violations: dict[str, float], reason: str) -> NoReturn:
    """Record an untrained, infeasible candidate and end the trial; TPE learns the region from
    the violations (constraint -> by how much it was broken)."""
    for key, amount in violations.items():
        trial.set_constraint(key, amount)
    trial.set_user_attr(INFEASIBLE, reason)
    raise optuna.TrialPruned(reason)


def stop(trial: Trial, reason: str, accuracy: float) -> NoReturn:
    """End a trial early at a rung where others dominate it, with the accuracy it had there."""
    trial.set_user_attr(STOPPED, reason)
    trial.set_user_attr(ACCURACY, accuracy)
    raise optuna.TrialPruned(reason)


def below_floor(trial: Trial, key: str, missed_by: float, reason: str) -> None:
    """Record by how much a student misses a floor; it is off the front."""
    trial.set_constraint(key, missed_by)
    trial.set_user_attr(BELOW_FLOOR, reason)


@dataclass(frozen=True)
class TrialRecord:
    """A trial as users read it: what it sampled, how it ended, and why."""

    number: int
    state: str  # trials.csv's state (COMPLETE, STOPPED, INFEASIBLE, ...)
    candidate: Candidate | None
    reason: str | None  # the line that says why it ended as it did
    # Constraint -> by how much the trial broke it (positive); kept ones are left out.
    violations: dict[str, float] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)  # everything else it recorded

    @classmethod
    def of(
        cls,
        t: FrozenTrial,
        *,
        promoted_as: int | None = None,
        retried_as: int | None = None,
        replicate: dict[str, Any] | None = None,
    ) -> TrialRecord:
        """Read trial ``t``: ``promoted_as`` the trial it was trained on as, ``retried_as``
        the one it was run again as, ``replicate`` its second-seed record."""
        a = t.user_attrs
        state = t.state.name
        if replicate is not None and t.state == TrialState.COMPLETE:
            state = "SECOND_SEED"  # the same candidate again, another seed: noise
        elif promoted_as is not None:
            state = "PROMOTED"  # trained on as trial ``promoted_as``, whose score replaces it
        elif t.state in (TrialState.COMPLETE, TrialState.PRUNED) and BELOW_FLOOR in a:
            state = "BELOW_FLOOR"
        elif t.state == TrialState.PRUNED and INFEASIBLE in a:
            state = "INFEASIBLE"
        elif t.state == TrialState.PRUNED and STOPPED in a:
            state = "STOPPED"  # early: dominated at an epoch rung; val_accuracy is the rung's
        elif t.state == TrialState.FAIL and a.get(CRASHED):
            state = "CRASHED"  # its worker died from a signal, again: not tried a third time
        reason = a.get(INFEASIBLE) or a.get(STOPPED) or a.get(BELOW_FLOOR) or a.get(FAILURE)
        if t.state == TrialState.FAIL and reason is None and a.get(WORKER):
            reason = (
                f"its worker {a[WORKER]} stopped sending heartbeats (this candidate was "
                "already retried the most times allowed)"
            )
        if promoted_as is not None:
            reason = f"promoted: trained on for more epochs as trial {promoted_as}"
        if state == "SECOND_SEED":
            reason = f"trial {replicate['of']} again with seed {a.get(SEED)}"  # type: ignore[index]
        if retried_as is not None:
            state = "RETRIED"  # killed or interrupted; run again as trial ``retried_as``
            why = reason or f"its worker {a.get(WORKER) or '?'} stopped sending heartbeats"
            reason = f"{why}; retried as trial {retried_as}"
        violations = {k: float(v) for k, v in (t.constraints or {}).items() if v > 0}
        cand = Candidate.from_dict(a[CANDIDATE]) if a.get(CANDIDATE) else None
        return cls(t.number, state, cand, reason, violations, dict(a))

    def stopped_at(self) -> int | None:
        """The last rung a stopped trial reached."""
        rungs = self.attrs.get(RUNGS) or {}
        return max((int(k) for k in rungs), default=None) if ACCURACY in self.attrs else None
