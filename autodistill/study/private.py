"""The one module that reaches into Optuna's private API: a study's storage and id, a trial's
id, the storage under Optuna's cache, a journal's file, Optuna's own non-dominated filter and
its exact hypervolume.

Checked against Optuna 5.1.0 (``CHECKED_WITH``); a test fails when any of these is gone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import optuna
from optuna.storages import BaseStorage, JournalStorage, _CachedStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, Trial

CHECKED_WITH = "5.1.0"


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes through."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    return study._study_id


def trial_id(trial: Trial | FrozenTrial) -> int:
    """The storage's id of a trial (not its number in the study)."""
    return trial._trial_id


def backend(storage: BaseStorage) -> BaseStorage:
    """The storage under Optuna's in-process cache (which wraps a database storage)."""
    return storage._backend if isinstance(storage, _CachedStorage) else storage


def journal_file(storage: JournalStorage) -> str | None:
    """The file a journal storage writes, where it is a file."""
    return getattr(storage._backend, "_file_path", None)


def pareto_front(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> list:
    """Optuna's non-dominated filter over ``trials`` (complete ones, constraints not
    considered), as ``Study.best_trials`` applies it to all of a study's trials."""
    from optuna.study._multi_objective import _get_pareto_front_trials_by_trials

    return _get_pareto_front_trials_by_trials(list(trials), list(directions))


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Optuna's exact (WFG) hypervolume of ``points`` (rows, to minimise) up to
    ``reference``."""
    from optuna._hypervolume import compute_hypervolume

    return float(compute_hypervolume(points, reference))
