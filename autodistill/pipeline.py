"""What the CLI's commands do, end to end: a search run, and redrawing a run's report."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from autodistill import search
from autodistill.config import (
    CONFIG_FILE,
    STUDENTS_DIR,
    SearchConfig,
    check_resumable,
    load_config,
    save_config,
)
from autodistill.errors import UserError
from autodistill.page import write_page
from autodistill.prepare import prepare
from autodistill.report import plot_3d, plot_hypervolume, plot_importances, write_outputs
from autodistill.signals import interrupts_as_exceptions
from autodistill.spaces import load_space
from autodistill.workers import join_study, run_local_workers, work

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchOutcome:
    """What a finished search run leaves behind."""

    run_dir: Path
    files: dict[str, Path | str]
    trials: pd.DataFrame
    teacher: dict
    ran_now: int
    seconds: float
    cache: str  # what the teacher cache holds and its size on disk


def run_search(config: SearchConfig, *, progress: bool = True) -> SearchOutcome:
    """Prepare data, teacher and cache, run (or resume) the study, and write the result files."""
    start = time.perf_counter()
    run_dir = config.run_dir
    # Every check a user's input can fail comes before anything is written to the run dir.
    _check_run_dir(config)
    space = load_space(config.space)
    search.make_sampler(config.sampler, seed=config.seed, budget=config.budget)
    if config.storage is not None:
        search.open_storage(config.storage, run_dir)  # checked before the teacher is built
    # One worker builds the teacher and its cache (under a lock); the others load them.
    prep = prepare(config, space.teacher_outputs(), progress=progress)
    _make_run_dir(config)
    study = join_study(config, prep)
    save_config(config, run_dir)  # once the study is joined: a refused run changes nothing
    before = search.finished_count(study)
    bar = tqdm(total=config.budget, initial=before, desc="trials", unit="trial",
               disable=not progress)  # fmt: skip

    def on_trial(study, trial) -> None:
        bar.update(1)
        bar.set_postfix_str(search.front_summary(study))

    def on_progress(finished: int) -> None:
        bar.update(finished - bar.n)

    try:
        with interrupts_as_exceptions():
            if config.jobs == 1:
                ran = work(config, study, space, prep, on_trial=on_trial)
            else:
                run_local_workers(config, study, on_progress=on_progress)
                ran = search.finished_count(study) - before
    finally:
        bar.close()
        trials = search.trials_frame(study)
        teacher = prep.teacher.to_dict()
        files = write_outputs(trials, run_dir, teacher=teacher, limits=_limits(config))
    if not trials.empty and (trials["state"] == "INFEASIBLE").all():
        raise UserError(_nothing_feasible(trials, config))  # after the files: nothing is lost
    files["config"] = run_dir / CONFIG_FILE
    # A database URL is shown as given; Path() would fold its "//".
    files["storage"] = config.storage or run_dir / search.DEFAULT_STORAGE_FILE
    return SearchOutcome(run_dir, files, trials, teacher, ran, time.perf_counter() - start,
                         prep.cache_summary())  # fmt: skip


def _nothing_feasible(trials: pd.DataFrame, config: SearchConfig) -> str:
    """Why no candidate could be trained, and what to change."""
    reasons = trials["failure_reason"].fillna("")
    parts = []
    over_params = trials[reasons.str.contains("max_params")]
    if len(over_params):
        parts.append(f"{len(over_params)} over --max-params {config.max_params:,} (the smallest "
                     f"has {int(over_params['params'].min()):,})")  # fmt: skip
    over_latency = trials[reasons.str.contains("max_latency_ms")]
    if len(over_latency):
        parts.append(f"{len(over_latency)} over --max-latency-ms {config.max_latency_ms:g} (the "
                     f"fastest takes {over_latency['latency_ms'].min():.3f} ms)")  # fmt: skip
    shapes = int((~reasons.str.contains("max_params|max_latency_ms")).sum())
    if shapes:
        parts.append(f"{shapes} cannot run on the input size")
    return (
        f"all {len(trials)} trials were infeasible, none was trained: {'; '.join(parts)}; "
        f"loosen the limits or choose another --space (results kept in {config.run_dir})"
    )


def _check_run_dir(config: SearchConfig) -> None:
    """Refuse an unwritable output or a changed resumed study, before anything is written."""
    run_dir = config.run_dir
    if (run_dir / CONFIG_FILE).is_file():
        check_resumable(load_config(run_dir), config)
    existing = next(p for p in (run_dir, *run_dir.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to output directory {run_dir} ({existing} is not a "
                        "writable folder); choose another with --out")  # fmt: skip


def _make_run_dir(config: SearchConfig) -> None:
    try:
        config.run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write to output directory {config.run_dir}: {exc.strerror}; "
                        "choose another with --out") from None  # fmt: skip


def _limits(config: SearchConfig) -> dict[str, float | None]:
    return {"max_params": config.max_params, "max_latency_ms": config.max_latency_ms}


def redraw_report(run_dir: Path) -> dict[str, Path]:
    """Rewrite a run's CSVs and plots from its storage, and its report.html / report.md."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    storage = search.open_storage(config.storage, run_dir)
    study = search.load_study(storage, config.name)
    teacher_file = run_dir / "teacher.json"
    teacher = json.loads(teacher_file.read_text()) if teacher_file.is_file() else None
    trials = search.trials_frame(study)
    files = write_outputs(trials, run_dir, teacher=teacher, limits=_limits(config))
    images = {
        "pareto": files["plot"],
        "pareto3d": run_dir / "pareto3d.png",
        "hypervolume": run_dir / "hypervolume.png",
        "importances": run_dir / "importances.png",
    }
    plot_3d(trials, images["pareto3d"], teacher=teacher)
    plot_hypervolume(search.hypervolume_history(study), images["hypervolume"])
    plot_importances(search.importances(study), images["importances"])
    files.update({k: v for k, v in images.items() if k != "pareto"})
    files.update(
        write_page(
            run_dir,
            title=f"autodistill: {config.name}",
            trials=trials,
            teacher=teacher,
            students=_students(run_dir),
            images=images,
        )
    )
    return files


def _students(run_dir: Path) -> list[tuple[dict, dict | None]]:
    """Fully trained students of the run, with their export figures where they were exported."""
    out = []
    for metrics in sorted((run_dir / STUDENTS_DIR).glob("trial-*/metrics.json")):
        export = metrics.with_name("export.json")
        out.append((json.loads(metrics.read_text()),
                    json.loads(export.read_text()) if export.is_file() else None))  # fmt: skip
    return out
