"""The search: the only package that knows Optuna. Storage and workers, the controller, results."""

from __future__ import annotations

from optuna import Study

from autodistill.search.results import (
    front_summary,
    hypervolume,
    hypervolume_history,
    importances,
    normalized_objectives,
    serve_dashboard,
    trial_candidate,
    trials_frame,
)
from autodistill.search.storage import DEFAULT_STORAGE_FILE, HEARTBEAT_S, open_storage, worker_id
from autodistill.search.study import (
    DIRECTIONS,
    OBJECTIVES,
    SAMPLERS,
    budget_used,
    finished_count,
    load_study,
    make_objective,
    make_sampler,
    open_study,
    run,
    sample_candidates,
)

__all__ = [
    "DEFAULT_STORAGE_FILE",
    "DIRECTIONS",
    "HEARTBEAT_S",
    "OBJECTIVES",
    "SAMPLERS",
    "Study",
    "finished_count",
    "front_summary",
    "hypervolume",
    "hypervolume_history",
    "importances",
    "load_study",
    "make_objective",
    "make_sampler",
    "normalized_objectives",
    "open_storage",
    "open_study",
    "run",
    "sample_candidates",
    "serve_dashboard",
    "trial_candidate",
    "trials_frame",
    "budget_used",
    "worker_id",
]
