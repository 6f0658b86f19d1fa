"""The controller: the only module that knows Optuna. Samples, checks limits, trains, records."""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import optuna
import pandas as pd
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, Trial, TrialState

from autodistill.candidate import (
    InfeasibleArchitecture,
    TrialContext,
    measure_candidate,
    train_candidate,
)
from autodistill.errors import UserError
from autodistill.spaces import Candidate, Param, SearchSpace

log = logging.getLogger(__name__)
OBJECTIVES = ("val_accuracy", "params", "latency_ms")
DIRECTIONS = ("maximize", "minimize", "minimize")
SAMPLERS = ("tpe", "random", "nsga2", "gp")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
DEFAULT_STORAGE_FILE = "study.journal"

# Failures are logged once by this module, with their reason; Optuna's own tracebacks are noise.
optuna.logging.set_verbosity(optuna.logging.ERROR)


@contextmanager
def _quiet_experimental() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def open_storage(url: str | None, run_dir: Path) -> BaseStorage:
    """The run's embedded journal file by default; a database URL or journal path otherwise."""
    if url is None:
        return JournalStorage(JournalFileBackend(str(run_dir / DEFAULT_STORAGE_FILE)))
    if "://" not in url:
        path = Path(url)
        if not path.parent.is_dir():
            raise UserError(f"storage {url!r}: folder {path.parent} does not exist")
        return JournalStorage(JournalFileBackend(str(path)))
    try:
        with _quiet_experimental():
            return RDBStorage(url, heartbeat_interval=60, grace_period=180)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises many types for a bad URL
        first = str(exc).strip().splitlines()[0]
        raise UserError(
            f"cannot open storage {url!r}: {first}; check the URL, that the "
            "database server is running, and that its driver is installed"
        ) from None


def make_sampler(name: str, *, seed: int, budget: int) -> optuna.samplers.BaseSampler:
    """The sampler for ``name``; TPE by default, as it handles conditional spaces in tens of trials.

    Multivariate TPE with ``group`` models each family's parameters jointly, and
    ``constant_liar`` keeps parallel workers from proposing the same point.
    """
    if name == "tpe":
        with _quiet_experimental():  # ``group`` is stable in practice, labelled experimental
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


def open_study(
    storage: BaseStorage, name: str, *, sampler_name: str, seed: int, budget: int
) -> optuna.Study:
    """Create the study, or load it to resume.

    Trials left running by a process that died are marked failed first, and the sampler's seed
    moves on by the number of trials already in the study so a resumed search does not replay
    its first proposals.
    """
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=list(DIRECTIONS),
        sampler=make_sampler(sampler_name, seed=seed, budget=budget),
        load_if_exists=True,
    )
    with _quiet_experimental():
        study.set_metric_names(list(OBJECTIVES))
    interrupted = fail_interrupted(study)
    if interrupted:
        log.warning("%d trial(s) left running by an earlier process marked failed", interrupted)
    if study.trials:
        study.sampler = make_sampler(sampler_name, seed=seed + len(study.trials), budget=budget)
    return study


def load_study(storage: BaseStorage, name: str) -> optuna.Study:
    """An existing study, read-only use (reports)."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise UserError(f"no study {name!r} in this storage; found: {names or 'none'}") from None


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def fail_interrupted(study: optuna.Study) -> int:
    """Mark trials left RUNNING by a process that died as failed (single-host storages only)."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study._storage.set_trial_user_attr(
            t._trial_id, "failure_reason", "interrupted: the process running it ended"
        )
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
    return len(stale)


def _suggest(trial: Trial) -> Callable[[str, Param], Any]:
    def suggest(name: str, p: Param) -> Any:
        if p.kind == "categorical":
            return trial.suggest_categorical(name, list(p.choices))
        if p.kind == "int":
            return trial.suggest_int(
                name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log
            )
        return trial.suggest_float(name, float(p.low), float(p.high), step=p.step, log=p.log)

    return suggest


def make_objective(
    space: SearchSpace, ctx: TrialContext
) -> Callable[[Trial], tuple[float, float, float]]:
    """The Optuna objective: measure first, refuse what breaks a limit, then train."""

    def objective(trial: Trial) -> tuple[float, float, float]:
        start = time.perf_counter()
        try:
            return _evaluate(trial, space, ctx)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("failure_reason", "interrupted by the user")
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
            trial.set_user_attr("failure_reason", reason)
            log.warning("trial %d failed: %s", trial.number, reason)
            raise
        finally:
            trial.set_user_attr("duration_s", round(time.perf_counter() - start, 2))

    return objective


def _evaluate(trial: Trial, space: SearchSpace, ctx: TrialContext) -> tuple[float, float, float]:
    candidate = space.sample(_suggest(trial))
    trial.set_user_attr("candidate", candidate.to_dict())
    try:
        model, cost = measure_candidate(candidate, ctx)
    except InfeasibleArchitecture as exc:
        _reject(trial, {"runs_on_input": 1.0}, str(exc))
    trial.set_user_attr("arch", cost.arch)
    trial.set_user_attr("params", cost.params)
    trial.set_user_attr("flops", cost.flops)
    if cost.latency is not None:
        trial.set_user_attr("latency_ms", cost.latency.median_ms)
        trial.set_user_attr("latency_iqr_ms", cost.latency.iqr_ms)
        trial.set_user_attr("latency_device", cost.latency.device)
        trial.set_user_attr("latency_threads", cost.latency.threads)
    over = ctx.limits.violations(
        cost.params, cost.latency.median_ms if cost.latency is not None else None
    )
    if over:
        _reject(trial, over, "; ".join(f"{k} exceeded by {v:g}" for k, v in over.items()))
    trained = train_candidate(model, candidate, ctx)
    trial.set_user_attr("val_accuracy", trained.val_accuracy)
    trial.set_user_attr("train_s", round(trained.seconds, 2))
    trial.set_user_attr("history", trained.history)
    # Latency is rounded to its measurement resolution so noise does not reorder the front.
    return (
        round(100.0 * trained.val_accuracy, 2),
        float(cost.params),
        round(cost.latency.median_ms, 3),
    )


def _reject(trial: Trial, violations: dict[str, float], reason: str) -> NoReturn:
    """Record an untrained, infeasible candidate; TPE learns the region from the violations."""
    for key, amount in violations.items():
        trial.set_constraint(key, amount)
    trial.set_user_attr("infeasible", reason)
    raise optuna.TrialPruned(reason)


def run(
    study: optuna.Study,
    space: SearchSpace,
    ctx: TrialContext,
    *,
    budget: int,
    on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
) -> int:
    """Run trials until ``budget`` trials have finished in the study; returns how many ran now."""
    remaining = budget - finished_count(study)
    if remaining <= 0:
        return 0
    callbacks = [optuna.study.MaxTrialsCallback(budget, states=FINISHED)]
    if on_trial is not None:
        callbacks.append(on_trial)
    study.optimize(
        make_objective(space, ctx),
        n_trials=remaining,
        catch=(Exception,),
        callbacks=callbacks,
        gc_after_trial=False,
    )
    return remaining


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial, with the columns of ``trials.csv``."""
    front = {t.number for t in study.best_trials}
    rows = [_row(t, t.number in front) for t in study.get_trials(deepcopy=False)]
    frame = pd.DataFrame(rows)
    # Counts stay integers even where a trial has none (pandas would make the column float).
    for column in ("params", "flops", "latency_threads"):
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame


def _row(t: FrozenTrial, on_front: bool) -> dict[str, Any]:
    a = t.user_attrs
    cand = Candidate.from_dict(a["candidate"]) if "candidate" in a else None
    state = t.state.name
    if t.state == TrialState.PRUNED and "infeasible" in a:
        state = "INFEASIBLE"
    row: dict[str, Any] = {
        "number": t.number,
        "state": state,
        "family": cand.family if cand else None,
        "arch": a.get("arch"),
        "loss": cand.loss if cand else None,
        "params": a.get("params"),
        "flops": a.get("flops"),
        "latency_ms": a.get("latency_ms"),
        "latency_iqr_ms": a.get("latency_iqr_ms"),
        "val_accuracy": a.get("val_accuracy"),
        "duration_s": a.get("duration_s"),
        "pareto": on_front,
        "failure_reason": a.get("infeasible") or a.get("failure_reason"),
        "latency_device": a.get("latency_device"),
        "latency_threads": a.get("latency_threads"),
    }
    for name, value in sorted(t.params.items()):
        row[f"param.{name}"] = value
    return row


def front_summary(study: optuna.Study) -> str:
    """A few words for the progress bar: the size and ends of the running front."""
    front = study.best_trials
    if not front:
        return "front: none yet"
    best = max(front, key=lambda t: t.values[0])
    small = min(front, key=lambda t: t.values[1])
    return (
        f"front {len(front)} | best {best.values[0]:.1f}% "
        f"| smallest {_human(small.values[1])} @ {small.values[0]:.1f}%"
    )


def _human(n: float) -> str:
    if math.isnan(n):
        return "?"
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def trial_candidate(study: optuna.Study, number: int) -> tuple[Candidate, dict[str, Any]]:
    """The candidate a finished trial trained, and what it recorded (params, latency, ...)."""
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise UserError(f"no trial {number} in this run; it has trials 0..{len(trials) - 1}")
    t = trials[number]
    if t.state != TrialState.COMPLETE:
        state = "infeasible" if "infeasible" in t.user_attrs else t.state.name.lower()
        raise UserError(f"trial {number} is {state}, not a trained student; "
                        "pick a completed one (see trials.csv)")  # fmt: skip
    return Candidate.from_dict(t.user_attrs["candidate"]), dict(t.user_attrs)


# Fixed bounds, so hypervolumes of different runs (and samplers) compare: error 0..1,
# parameters 1e3..1e8 and latency 0.01..1000 ms on log scales, each mapped to 0..1; the
# reference point is (1, 1, 1), the worst corner.
HV_PARAMS = (1e3, 1e8)
HV_LATENCY_MS = (1e-2, 1e3)


def normalized_objectives(values: np.ndarray) -> np.ndarray:
    """(accuracy %, params, latency ms) rows as losses in 0..1: error, log params, log latency."""
    v = np.asarray(values, dtype=float).reshape(-1, 3)
    error = 1.0 - v[:, 0] / 100.0
    params = (np.log10(v[:, 1]) - np.log10(HV_PARAMS[0])) / np.log10(HV_PARAMS[1] / HV_PARAMS[0])
    lat = (np.log10(v[:, 2]) - np.log10(HV_LATENCY_MS[0])) / np.log10(
        HV_LATENCY_MS[1] / HV_LATENCY_MS[0]
    )
    return np.clip(np.stack([error, params, lat], axis=1), 0.0, 1.0)


def hypervolume(values: np.ndarray) -> float:
    """Hypervolume of (accuracy %, params, latency ms) rows, normalised as above (0..1)."""
    if len(values) == 0:
        return 0.0
    # Optuna's exact WFG implementation; private, so it is reached from this one place only.
    from optuna._hypervolume import compute_hypervolume

    return float(compute_hypervolume(normalized_objectives(values), np.ones(3)))


def hypervolume_history(study: optuna.Study) -> list[tuple[int, float]]:
    """(trial number, hypervolume of all completed trials up to it), in trial order."""
    seen: list[list[float]] = []
    out = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if t.state == TrialState.COMPLETE:
            seen.append(list(t.values))
        out.append((t.number, hypervolume(np.array(seen))))
    return out


def importances(study: optuna.Study, top: int = 12) -> dict[str, float]:
    """Importance for validation accuracy of the ``top`` hyperparameters (Optuna's default
    evaluator), among those sampled in at least half the completed trials: a conditional
    parameter seen a handful of times would otherwise rank on noise."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 3:
        return {}
    counts: dict[str, int] = {}
    for t in done:
        for name in t.params:
            counts[name] = counts.get(name, 0) + 1
    common = [name for name, n in counts.items() if n >= len(done) / 2]
    if not common:
        return {}
    try:
        with warnings.catch_warnings():  # "some regimes have < 2 trials": expected at this size
            warnings.simplefilter("ignore", UserWarning)
            ranked = optuna.importance.get_param_importances(
                study, params=common, target=lambda t: t.values[0])  # fmt: skip
        return dict(list(ranked.items())[:top])
    except (RuntimeError, ValueError) as exc:  # too few distinct values to tell
        log.warning("hyperparameter importances unavailable: %s", exc)
        return {}


def serve_dashboard(storage: BaseStorage, *, host: str, port: int) -> None:
    """Serve optuna-dashboard on this storage until interrupted (blocks)."""
    import optuna_dashboard

    optuna_dashboard.run_server(storage, host=host, port=port)
