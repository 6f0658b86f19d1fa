"""What the CLI's commands do, end to end: a search run, and redrawing a run's report."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from autodistill import search
from autodistill.cache import TeacherViews, cache_key, compute_views, load_views
from autodistill.candidate import Limits, TrialContext
from autodistill.config import (
    CONFIG_FILE,
    STUDENTS_DIR,
    SearchConfig,
    check_resumable,
    load_config,
    save_config,
)
from autodistill.data.augment import Augmentation, default_augmentation
from autodistill.data.sources import load_dataset
from autodistill.data.splits import DatasetSplits
from autodistill.errors import UserError
from autodistill.page import write_page
from autodistill.report import plot_3d, plot_hypervolume, plot_importances, write_outputs
from autodistill.spaces import load_space
from autodistill.teacher import TeacherInfo, TeacherRecipe, dataset_fingerprint, prepare_teacher

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


@dataclass(frozen=True)
class Prepared:
    """Data, augmentation, teacher description and cached teacher views for a configuration."""

    data: DatasetSplits
    aug: Augmentation
    teacher: TeacherInfo
    views: TeacherViews
    threads: int

    def cache_summary(self) -> str:
        kinds = ["logits"] + [
            k
            for k, t in (("features", self.views.features), ("attention", self.views.maps))
            if t is not None
        ]
        return f"{'/'.join(kinds)} for {self.views.count} views, {self.views.nbytes() / 1e6:.1f} MB"


def prepare(config: SearchConfig, kinds: tuple[str, ...], *, progress: bool = True) -> Prepared:
    """Load the data, then the teacher and its cached outputs (training or computing them once)."""
    threads = config.resolved_threads
    torch.set_num_threads(threads)
    data = load_dataset(
        config.data, data_dir=config.data_dir, download=config.download, seed=config.seed
    )
    aug = default_augmentation(data.name, data.image_size)
    cache_dir = config.resolved_cache_dir
    info, load_teacher = prepare_teacher(
        config.teacher, data, aug, cache_dir=cache_dir, threads=threads,
        checkpoint=Path(config.teacher_checkpoint) if config.teacher_checkpoint else None,
        recipe=TeacherRecipe(epochs=config.teacher_epochs, seed=config.seed), progress=progress,
    )  # fmt: skip
    key = cache_key(
        info.weights_sha256, data.name, dataset_fingerprint(data), "train", aug, config.views
    )
    views = load_views(cache_dir, key, kinds) or compute_views(
        load_teacher(), data.train, aug, data.stats, key=key, views=config.views,
        cache_dir=cache_dir, kinds=kinds, progress=progress,
    )  # fmt: skip
    log.info("teacher cache: %s, %.1f MB on disk", "/".join(kinds), views.nbytes() / 1e6)
    return Prepared(data, aug, info, views, threads)


def run_search(config: SearchConfig, *, progress: bool = True) -> SearchOutcome:
    """Prepare data, teacher and cache, run (or resume) the study, and write the result files."""
    start = time.perf_counter()
    run_dir = config.run_dir
    # Every check a user's input can fail comes before anything is written to the run dir.
    _check_run_dir(config)
    space = load_space(config.space)
    search.make_sampler(config.sampler, seed=config.seed, budget=config.budget)
    if config.storage is not None and "://" in config.storage:
        search.open_storage(config.storage, run_dir)  # a database is checked before the teacher
    prep = prepare(config, space.teacher_outputs(), progress=progress)
    data, aug, info, views, threads = prep.data, prep.aug, prep.teacher, prep.views, prep.threads
    _make_run_dir(config)
    storage = search.open_storage(config.storage, run_dir)
    save_config(config, run_dir)

    study = search.open_study(
        storage, config.name, sampler_name=config.sampler, seed=config.seed, budget=config.budget
    )
    ctx = TrialContext(
        data=data, aug=aug, views=views, epochs=config.epochs, threads=threads,
        limits=Limits(config.max_params, config.max_latency_ms), seed=config.seed,
    )  # fmt: skip
    bar = tqdm(total=config.budget, initial=search.finished_count(study), desc="trials",
               unit="trial", disable=not progress)  # fmt: skip

    def on_trial(study, trial) -> None:
        bar.update(1)
        bar.set_postfix_str(search.front_summary(study))

    try:
        ran = search.run(study, space, ctx, budget=config.budget, on_trial=on_trial)
    finally:
        bar.close()
        trials = search.trials_frame(study)
        teacher = info.to_dict()
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
