"""A study's identity: what every trial of it shares (teacher, input, space, settings), the
names it is recorded under, and the one line that refuses a change to it."""

from __future__ import annotations

import json
from typing import Any

from autodistill.config import SearchConfig

# Study user attributes: the objectives' names in order, the teacher weights' hash, the input
# spec students are built for, the search space's fingerprint, and the settings below (JSON).
OBJECTIVES_ATTR = "objectives"
TEACHER_ATTR = "teacher_sha256"
INPUT_ATTR = "input"
SPACE_ATTR = "space_sha256"
SETTINGS_ATTR = "settings"

# Settings that studies made before them did not record: left out while at these defaults, so
# such a study still resumes.
LATER_DEFINING = {
    "min_accuracy": None,
    "fidelity": "brief",
    "group_by": None,
    "search_subset": None,
    "teacher_weights": None,
    "teacher_size": None,
    "teacher_mean": None,
    "teacher_std": None,
}


def settings(config: SearchConfig) -> dict[str, Any]:
    """Every setting that changes how a trial trains or is timed, by the names studies have
    recorded them under since the first (a study made by an older autodistill still resumes).

    Changing any of these after a study has started would mix incomparable trials."""
    latency = config.latency
    out = {
        "data": config.data,
        "space": config.space,
        "teacher": config.teacher,
        "teacher_checkpoint": config.teacher_checkpoint,
        "teacher_weights": config.teacher_weights,
        "teacher_size": config.teacher_size,
        "teacher_mean": config.teacher_mean,
        "teacher_std": config.teacher_std,
        "teacher_epochs": config.teacher_epochs,
        "views": config.views,
        "epochs": config.epochs,
        "objectives": config.objectives,
        "limits": config.limits,
        "seed": config.seed,
        # As it resolves: a CPU worker (fp32) and a GPU worker (bf16) of one "auto" train unlike.
        "precision": config.resolved_precision,
        "latency_runtime": latency.runtime,
        "latency_device": latency.device,
        "latency_precision": latency.precision,
        "target_threads": config.target_threads,
        "latency_batch": latency.batch,
        "min_accuracy": config.min_accuracy,
        "fidelity": config.fidelity.kind,
        "group_by": config.group_by,
        "search_subset": config.search_subset,
        "early_stop": config.early_stop,
        "heartbeat_s": config.heartbeat,
    }
    return {k: v for k, v in out.items() if k not in LATER_DEFINING or v != LATER_DEFINING[k]}


def recorded_settings(config: SearchConfig) -> str:
    """``settings`` as the study records them (JSON: lists for tuples, sorted keys)."""
    return json.dumps(settings(config), sort_keys=True)


def changed_settings(where: str, old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The one line that refuses to add trials made with ``new`` settings to a study made with
    ``old`` ones; None when they agree."""
    old, new = json.loads(json.dumps(old)), json.loads(json.dumps(new))  # tuples as lists
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if not keys:
        return None
    diffs = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)
    hint = (
        " (--latency-threads, or else --threads, sets the threads latency is timed with)"
        if "target_threads" in keys
        else ""
    )
    return (
        f"{where} was made with other settings ({diffs}); give the study's settings, or start "
        f"another study with another --study-name or --out{hint}"
    )
