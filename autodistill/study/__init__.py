"""The study: the only package that knows Optuna. Storage and workers, opening a study, the
controller, the trial objective and evaluation, early stopping, promotion and what a study
holds."""

from __future__ import annotations

from optuna import Study

from autodistill.study.controller import budget_used, finished_count, promotions_done, run
from autodistill.study.dashboard import dashboard_app, is_loopback, serve_dashboard
from autodistill.study.handle import Run
from autodistill.study.objective import make_objective, sample_candidates
from autodistill.study.opening import (
    SAMPLERS,
    check_sampler,
    front_retimed,
    latency_reference,
    load_study,
    make_sampler,
    open_study,
    record_front_retimed,
    record_latency_reference,
    study_objectives,
)
from autodistill.study.record import RUNS_ON_INPUT, TEACHER_GIVES, TrialRecord, limit_key
from autodistill.study.results import (
    front_summary,
    hypervolume,
    hypervolume_history,
    importances,
    normalized_objectives,
    trial_candidate,
    trials_frame,
)
from autodistill.study.storage import (
    DEFAULT_STORAGE_FILE,
    HEARTBEAT_S,
    open_storage,
    quiet_optuna_logs,
    worker_id,
)

__all__ = [
    "DEFAULT_STORAGE_FILE",
    "HEARTBEAT_S",
    "RUNS_ON_INPUT",
    "TEACHER_GIVES",
    "Run",
    "SAMPLERS",
    "TrialRecord",
    "Study",
    "budget_used",
    "dashboard_app",
    "check_sampler",
    "finished_count",
    "front_retimed",
    "latency_reference",
    "front_summary",
    "hypervolume",
    "hypervolume_history",
    "importances",
    "is_loopback",
    "load_study",
    "limit_key",
    "make_objective",
    "make_sampler",
    "normalized_objectives",
    "open_storage",
    "open_study",
    "promotions_done",
    "record_front_retimed",
    "record_latency_reference",
    "quiet_optuna_logs",
    "run",
    "sample_candidates",
    "serve_dashboard",
    "study_objectives",
    "trial_candidate",
    "trials_frame",
    "worker_id",
]
