"""What a study holds, as users read it: the trials table, the front, hypervolume, importances."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from autodistill.errors import UserError
from autodistill.objectives import OBJECTIVES, get_objective, minimised, nondominated_layers
from autodistill.spaces import Candidate
from autodistill.study import private, record
from autodistill.study.opening import front_retimed, study_objectives
from autodistill.study.promotion import current, promotion_of, replicate_of, superseded
from autodistill.study.record import TrialRecord
from autodistill.study.storage import retries

log = logging.getLogger(__name__)
TARGET_COLUMNS = ("runtime", "precision", "recipe", "device", "hardware", "threads", "batch")
RELATIVE_COLUMNS = ("raw_ms", "window", "reference_ms", "retimed")


def front_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front: the non-dominated feasible trials, each candidate at the highest
    rung it reached (a trial whose promotion finished is replaced by it)."""
    trials = study.get_trials(deepcopy=False)
    if not any(promotion_of(t) or replicate_of(t) for t in trials):
        return study.best_trials
    return private.pareto_front(current(trials), study.directions)


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial, with the columns of ``trials.csv``."""
    front = {t.number for t in front_trials(study)}
    trials = study.get_trials(deepcopy=False)
    retried = retries(trials)
    replaced = superseded(trials)
    seconds = second_seeds(trials)
    rows = [
        _row(
            t,
            t.number in front,
            retried.get(t.number),
            replaced.get(t.number),
            seconds.get(t.number),
        )
        for t in trials
    ]
    frame = pd.DataFrame(rows)
    counts = [n for n, o in OBJECTIVES.items() if o.decimals == 0]
    # Counts stay integers even where a trial has none (pandas would make the column float).
    for column in (
        *counts,
        "latency_threads",
        "latency_batch",
        "latency_of",
        "retry_of",
        "epochs_trained",
        "promoted_from",
        "replicate_of",
    ):
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    frame.attrs["objectives"] = study_objectives(study)
    _side_by_side(frame, (front_retimed(study) or {}).get("trials", {}))
    return frame


def _side_by_side(frame: pd.DataFrame, retimed: dict[str, dict[str, Any]]) -> None:
    """The front's latencies as timed side by side at the end of the search (``latency_ms``;
    the trial's own first figure stays as ``latency_ms_first``), and the front among them: a
    front point another one now dominates leaves it."""
    if not retimed or "latency_ms" not in frame:
        return
    frame["latency_ms_first"] = frame["latency_ms"]
    numbers = {int(n): float(r["latency_ms"]) for n, r in retimed.items()}
    mask = frame["number"].isin(list(numbers))
    frame.loc[mask, "latency_ms"] = frame.loc[mask, "number"].map(numbers)
    if "latency_disturbed" in frame:  # the figure shown is the side-by-side one: so its flag
        flags = {int(n): bool(r.get("disturbed", False)) for n, r in retimed.items()}
        frame["latency_disturbed"] = frame["latency_disturbed"].astype(object)
        frame.loc[mask, "latency_disturbed"] = frame.loc[mask, "number"].map(flags)
    frame["latency_side_by_side"] = mask
    front = frame.index[frame["pareto"].astype(bool)]
    names = [n for n in frame.attrs["objectives"] if n in frame]
    kept = nondominated_layers(minimised(frame.loc[front, names], names))[:1]
    for j, i in enumerate(front):
        if not kept or j not in kept[0]:
            frame.loc[i, "pareto"] = False


def second_seeds(trials: list[FrozenTrial]) -> dict[int, float]:
    """Trial number -> the validation accuracy its second seed reached (finished ones)."""
    return {
        rep["of"]: float(record.value(t, record.ACCURACY))
        for t in trials
        if t.state == TrialState.COMPLETE
        and (rep := replicate_of(t))
        and record.value(t, record.ACCURACY) is not None
    }


def _row(
    t: FrozenTrial,
    on_front: bool,
    retried_as: int | None,
    promoted_as: int | None,
    second_seed: float | None = None,
) -> dict[str, Any]:
    rec = TrialRecord.of(
        t, promoted_as=promoted_as, retried_as=retried_as, replicate=replicate_of(t)
    )
    a, cand = rec.attrs, rec.candidate
    row: dict[str, Any] = {
        "number": t.number,
        "state": rec.state,
        "family": cand.family if cand else None,
        "arch": a.get(record.ARCH),
        "loss": cand.loss if cand else None,
        **{name: a.get(name) for name in OBJECTIVES},
        "latency_iqr_ms": a.get("latency_iqr_ms"),
        "latency_spread": a.get("latency_spread"),
        "latency_disturbed": a.get("latency_disturbed"),
        "duration_s": a.get(record.DURATION),
        # The epochs behind the score: the rung reached (at the rung stopped, for STOPPED).
        "epochs_trained": a.get(record.EPOCHS)
        or (rec.stopped_at() if t.state == TrialState.PRUNED else None),
        "promoted_from": (promotion_of(t) or {}).get("from"),
        # Noise: what a second seed of the same candidate reached, and how far apart they are.
        "replicate_of": (replicate_of(t) or {}).get("of"),
        "val_accuracy_second_seed": second_seed,
        "seed_spread": (
            abs(second_seed - a["val_accuracy"])
            if second_seed is not None and a.get("val_accuracy") is not None
            else None
        ),
        "pareto": on_front,
        "failure_reason": rec.reason,
        "crashed": a.get(record.CRASHED),  # the signal that killed its worker (supervisor)
        # The target every latency was measured on, and the trial whose measurement of the
        # same architecture it reuses.
        **{f"latency_{k}": a.get(f"latency_{k}") for k in TARGET_COLUMNS},
        # Relative timing (autodistill.reference): the candidate's own figure in its window,
        # the reference there over its quiet figure, that figure, and whether it was timed twice.
        **{f"latency_{k}": a.get(f"latency_{k}") for k in RELATIVE_COLUMNS},
        "latency_of": a.get("latency_of"),
        "worker": a.get(record.WORKER),
        "retry_of": t.system_attrs.get("retry_history", [None])[-1],
    }
    for name, value in sorted(t.params.items()):
        row[f"param.{name}"] = value
    # By how much it broke each constraint (a limit, a floor, the input size).
    for name, amount in sorted(rec.violations.items()):
        row[f"violation.{name}"] = amount
    return row


def front_summary(study: optuna.Study) -> str:
    """A few words for the progress bar: the size and ends of the running front."""
    front = front_trials(study)
    if not front:
        return "front: none yet"
    names = study_objectives(study)
    # Accuracy first, whatever the order of --objectives; then the first of the others.
    acc = names.index("val_accuracy")
    other = next(i for i in range(len(names)) if i != acc)
    first, second = get_objective(names[acc]), get_objective(names[other])
    best = max(front, key=lambda t: t.values[acc])
    end = max(front, key=lambda t: t.values[other] * (1 if second.maximize else -1))
    return (
        f"front {len(front)} | best {first.text(best.values[acc])} | at the other end "
        f"{second.text(end.values[other])} {names[other]} @ "
        f"{first.text(end.values[acc])}"
    )


def trial_candidate(
    study: optuna.Study, number: int, *, trained: bool = True
) -> tuple[Candidate, dict[str, Any]]:
    """The candidate trial ``number`` sampled, and what it recorded (params, latency, ...):
    a trial that trained to the end, or with ``trained=False`` any trial whose architecture was
    recorded (one stopped early, infeasible or failed: its student can still be built)."""
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise UserError(f"no trial {number} in this run; it has trials 0..{len(trials) - 1}")
    t = trials[number]
    if trained and t.state != TrialState.COMPLETE:
        raise UserError(
            f"trial {number} {_what_happened(t)}, not a trained student; "
            "pick a completed one (see trials.csv)"
        )
    if not record.get(t, record.CANDIDATE):
        raise UserError(
            f"trial {number} {_what_happened(t)} before its architecture was "
            "recorded: there is no student to build"
        )
    return Candidate.from_dict(record.get(t, record.CANDIDATE)), dict(TrialRecord.of(t).attrs)


def _what_happened(t: FrozenTrial) -> str:
    """A trial's state in autodistill's words (Optuna's "pruned" is a trial stopped early or
    never trained here; pruning is of channels)."""
    if t.state == TrialState.PRUNED:
        if record.get(t, record.INFEASIBLE) is not None:
            return "was infeasible (never trained)"
        if record.get(t, record.BELOW_FLOOR) is not None:
            return "stayed below the accuracy floor"
        return "was stopped early (dominated at an epoch rung)"
    return {
        TrialState.FAIL: "failed",
        TrialState.RUNNING: "is still running",
        TrialState.WAITING: "is waiting to run",
    }.get(t.state, "is complete")


def normalized_objectives(values: np.ndarray, objectives: tuple[str, ...]) -> np.ndarray:
    """Rows of objective values (in the order of ``objectives``) as losses in 0..1, each within
    the objective's fixed bounds (so hypervolumes of runs and samplers compare)."""
    v = np.asarray(values, dtype=float).reshape(-1, len(objectives))
    return np.stack([get_objective(n).loss(v[:, i]) for i, n in enumerate(objectives)], axis=1)


def hypervolume(values: np.ndarray, objectives: tuple[str, ...]) -> float:
    """Hypervolume of rows of objective values, normalised as above (0..1); the reference
    point is the worst corner (1, ..., 1)."""
    if len(values) == 0:
        return 0.0
    ref = np.ones(len(objectives))
    return private.hypervolume(normalized_objectives(values, objectives), ref)


def hypervolume_history(study: optuna.Study) -> list[tuple[int, float]]:
    """(trial number, hypervolume of all completed trials up to it), in trial order.

    Read from the recorded objective values, in their units (accuracy 0..1)."""
    names = study_objectives(study)
    seen: list[list[float]] = []
    out = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if t.state == TrialState.COMPLETE and replicate_of(t) is None:
            seen.append([float(record.value(t, n)) for n in names])
        out.append((t.number, hypervolume(np.array(seen), names)))
    return out


def importances(study: optuna.Study, top: int = 12) -> dict[str, float]:
    """Importance for validation accuracy of the ``top`` hyperparameters (Optuna's default
    evaluator), among those sampled with two values or more in at least half the completed
    trials: a conditional parameter seen a handful of times would otherwise rank on noise.
    Parameters of no measurable importance are left out, not drawn as empty bars."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 3:
        return {}
    values: dict[str, list[Any]] = {}
    for t in done:
        for name, value in t.params.items():
            values.setdefault(name, []).append(value)
    common = [
        name for name, seen in values.items() if len(seen) >= len(done) / 2 and len(set(seen)) > 1
    ]
    if not common:
        return {}
    try:
        with warnings.catch_warnings():  # "some regimes have < 2 trials": expected at this size
            warnings.simplefilter("ignore", UserWarning)
            ranked = optuna.importance.get_param_importances(
                study, params=common, target=lambda t: record.value(t, record.ACCURACY)
            )
        return {k: v for k, v in list(ranked.items())[:top] if v > 0}
    except (RuntimeError, ValueError) as exc:  # too few distinct values to tell
        log.warning("hyperparameter importances unavailable: %s", exc)
        return {}
