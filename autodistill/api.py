"""The Python API: each command as one function, taking the CLI's options as keyword arguments.

The CLI parses, calls these and prints; a notebook calls them directly. Errors a user can cause
raise ``UserError`` with the one line the CLI prints. Progress is reported through a callback
(``progress``), never drawn here; threads are set for the call and restored after it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from autodistill import render, ship, spaces, study
from autodistill.config import SearchConfig, mask_url
from autodistill.contain import run_contained
from autodistill.errors import UserError
from autodistill.gap import gap_warning, split_gap
from autodistill.objectives import get_objective
from autodistill.options import build
from autodistill.prepare import Prepared
from autodistill.processes import warm_up
from autodistill.progress import Progress, silent
from autodistill.rundir import CONFIG_FILE, STUDENTS_DIR, check_resumable, save_config
from autodistill.ship.options import CompressOptions, ExportOptions, TrainOptions
from autodistill.signals import interrupts_as_exceptions
from autodistill.spaces import SearchSpace, load_space
from autodistill.study.workers import (
    join_study,
    latency_gpu_shared,
    retime_front,
    run_local_workers,
    start_reference,
    work,
)
from autodistill.teacher import better_teacher, undertrained, weak_teacher
from autodistill.teacher_graphs import module_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchResult:
    """What a search run leaves behind: its trials and front as tables, and its files."""

    run_dir: Path
    trials: pd.DataFrame  # one row per trial, the columns of trials.csv
    front: pd.DataFrame  # the non-dominated completed trials, most accurate first
    objectives: tuple[str, ...]
    teacher: dict[str, Any]
    files: dict[str, Path | str]
    ran_now: int
    seconds: float
    cache: str  # what the teacher cache holds and its size on disk
    warnings: tuple[str, ...] = ()  # one line each: e.g. a teacher too weak to teach
    # The reference the study's latencies are relative to (reference.ReferenceRecord), if any.
    latency_reference: dict[str, Any] | None = None


@contextmanager
def _threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` for the block, and restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def search(
    *, in_process: bool = False, progress: Progress = silent, **options: Any
) -> SearchResult:
    """Search students (``autodistill search``): prepare the data, the teacher and its cache,
    run or resume the study until it holds ``budget`` trials, and write the result files.

    ``options`` are ``SearchConfig``'s fields, the command line's options by the same names
    (``budget=50``, ``limits={"params": 100_000}``, ``latency={"threads": 1}``).

    Trials run in supervised worker processes (``jobs`` of them), so a trial that crashes its
    process is recorded and the search goes on; ``in_process`` runs them in this process
    instead (one worker), where a debugger can follow them and a native crash ends the search.
    """
    if isinstance(options.get("teacher"), nn.Module):  # kept as a program in the cache
        options = {**options, "teacher": module_key(options["teacher"])}
    config = build(SearchConfig, options)
    if in_process and config.jobs != 1:
        raise UserError(
            f"--in-process runs one worker, in this process; it cannot run --jobs {config.jobs}"
        )
    target = config.latency_target
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    # (was `jobs > 1 < gpus`: "and more than one GPU", so one GPU slipped through)
    if latency_gpu_shared(target.device, config.device, config.jobs, gpus):
        raise UserError(
            f"--latency-device {target.device} with --jobs {config.jobs}: the "
            "workers train on every GPU, so candidates would be timed on a GPU that "
            "another worker trains on; use --jobs 1, or time on the cpu"
        )
    cores = os.cpu_count() or 1
    for option, n in (("--threads", config.threads), ("--latency-threads", config.latency.threads)):
        if n * config.jobs > cores:
            raise UserError(
                f"{option} {n} x --jobs {config.jobs} is more than this machine's "
                f"{cores} cores: latency timed so would measure contention; use "
                f"{option} 0 (the cores shared out) or fewer"
            )
    with _threads(config.resolved_threads):
        return _search(config, progress, in_process=in_process)


def _search(config: SearchConfig, progress: Progress, *, in_process: bool) -> SearchResult:
    start = time.perf_counter()
    run_dir = config.run_dir
    # Every check a user's input can fail comes before anything is written to the run dir.
    _check_run_dir(config)
    config.check_present()  # a training device or latency target not on this machine
    space = load_space(config.space)
    study.check_sampler(config.sampler)
    if not in_process:
        warm_up()  # the workers' fork server imports while the data and teacher are prepared
    run = study.Run.of(config)
    # One worker builds the teacher and its cache (under a lock); the others load them. A
    # study being resumed names its teacher.
    prep = run.prepare(progress=progress)
    # Said the moment the teacher is ready, before trials rank students on validation (and
    # again with the other warnings at the end).
    early = gap_warning(_teacher_gap(prep), f"the teacher {prep.teacher.name}")
    if early:
        log.warning(early)
    _make_run_dir(config)
    the_study = join_study(run, prep, space, samples=in_process)
    start_reference(config, the_study, prep)  # a new study's latencies are relative to it
    save_config(config, run_dir)  # once the study is joined: a refused run changes nothing
    before = study.finished_count(the_study)
    progress("trials", before, config.budget, unit="trial")

    promotions = config.resolved_promotions
    shown = [before]

    def on_trial(s, _trial=None) -> None:
        done = study.finished_count(s)
        if _trial is None and done == shown[0]:
            return  # the supervisor asks every second; the front is read only when it grew
        shown[0] = done
        note = study.front_summary(s)
        if promotions:
            note += f" | promoted or reseeded {study.promotions_done(s)}/{promotions}"
        progress("trials", done, config.budget, unit="trial", note=note)

    try:
        with interrupts_as_exceptions():
            if in_process:
                ran = work(config, the_study, space, prep, on_trial=on_trial)
            else:
                run_local_workers(config, the_study, on_progress=lambda: on_trial(the_study))
                ran = study.finished_count(the_study) - before
            retime_front(config, the_study, prep)  # what the front reports, side by side
    finally:
        trials = study.trials_frame(the_study)
        teacher = {**prep.teacher.to_dict(), "validation_gap": _teacher_gap(prep)}
        files: dict[str, Path | str] = dict(
            render.write_results(
                trials, run_dir, objectives=config.objectives, teacher=teacher, limits=config.limits
            )
        )
    if not trials.empty and (trials["state"] == "INFEASIBLE").all():
        raise UserError(_nothing_feasible(trials, config))  # after the files: nothing is lost
    if not trials.empty and not trials["state"].isin(["COMPLETE", "STOPPED", "BELOW_FLOOR"]).any():
        raise UserError(_nothing_trained(trials, config))
    below = trials[trials["state"] == "BELOW_FLOOR"] if not trials.empty else trials
    if len(below) and not (trials["state"] == "COMPLETE").any():
        raise UserError(
            f"no student reached --min-accuracy {config.min_accuracy}: "
            f"{len(below)} trained below it, the best to "
            f"{100 * below['val_accuracy'].max():.1f}% on validation; lower the "
            f"floor or train trials longer (--epochs); results kept in "
            f"{config.run_dir}"
        )
    files["config"] = run_dir / CONFIG_FILE
    # A database URL is shown as given; Path() would fold its "//".
    files["storage"] = mask_url(config.storage) or run_dir / study.DEFAULT_STORAGE_FILE
    return SearchResult(
        run_dir,
        trials,
        render.pareto_frame(trials),
        config.objectives,
        teacher,
        files,
        ran,
        time.perf_counter() - start,
        prep.cache_summary(),
        _teacher_warnings(prep, trials, config.epochs),
        study.latency_reference(the_study),
    )


def _teacher_warnings(prep: Prepared, trials: pd.DataFrame, epochs: int) -> tuple[str, ...]:
    """A teacher that is weak, or that a briefly trained student already beats, teaches little:
    say so, and what to do."""
    teacher = prep.teacher
    gap = gap_warning(_teacher_gap(prep), f"the teacher {teacher.name}")
    still = undertrained(teacher, len(prep.data.val))
    out = [w for w in [weak_teacher(teacher, prep.data), still, gap, prep.lacking_line()] if w]
    trained = trials[trials["state"] == "COMPLETE"] if not trials.empty else trials
    if not trained.empty and trained["val_accuracy"].max() > teacher.val_accuracy:
        best = trained.loc[trained["val_accuracy"].idxmax()]
        if pd.notna(best.get("epochs_trained")):  # a promotion trained longer
            epochs = int(best["epochs_trained"])
        brief = f"{epochs} epoch{'s' if epochs != 1 else ''}"
        out.append(
            f"trial {int(best['number'])}, a student trained for {brief} (not fully), "
            f"beat the teacher on validation ({100 * best['val_accuracy']:.1f}% against "
            f"{100 * teacher.val_accuracy:.1f}%): the teacher teaches it little; "
            f"{better_teacher(teacher)}"
        )
    for line in out:
        log.info(line)
    return tuple(out)


def _teacher_gap(prep: Prepared) -> dict[str, Any]:
    data, teacher = prep.data, prep.teacher
    return split_gap(teacher.val_accuracy, len(data.val), teacher.test_accuracy, len(data.test))


def _nothing_trained(trials: pd.DataFrame, config: SearchConfig) -> str:
    """Every trial failed: the most common reason, so the user can fix what broke them."""
    failed = trials[trials["state"] == "FAIL"]["failure_reason"].fillna("unknown")
    reason, count = failed.value_counts().index[0], int(failed.value_counts().iloc[0])
    return (
        f"no trial trained: {len(failed)} of {len(trials)} failed, most often ({count}) "
        f"with {reason[:300]}; results kept in {config.run_dir}"
    )


def _nothing_feasible(trials: pd.DataFrame, config: SearchConfig) -> str:
    """Why no candidate could be trained, and what to change."""
    parts = []
    for name, most in config.limits.items():
        objective = get_objective(name)
        over = trials[_broke(trials, study.limit_key(name))]
        if len(over):
            parts.append(
                f"{len(over)} over {objective.option} {objective.text(most)} (the "
                f"lowest is {objective.text(over[name].min())})"
            )
    shapes = int(_broke(trials, study.RUNS_ON_INPUT).sum())
    if shapes:
        parts.append(f"{shapes} cannot run on the input size")
    lacking = int(_broke(trials, study.TEACHER_GIVES).sum())
    if lacking:
        parts.append(f"{lacking} sampled a loss that reads what the teacher does not give")
    return (
        f"all {len(trials)} trials were infeasible, none was trained: {'; '.join(parts)}; "
        f"loosen the limits or choose another --space (results kept in {config.run_dir})"
    )


def _broke(trials: pd.DataFrame, constraint: str) -> pd.Series:
    """Which trials broke ``constraint`` (their trials.csv ``violation.*`` column)."""
    column = f"violation.{constraint}"
    return trials[column].notna() if column in trials else pd.Series(False, index=trials.index)


def _check_run_dir(config: SearchConfig) -> None:
    """Refuse an unwritable output or a changed resumed study, before anything is written."""
    run_dir = config.run_dir
    if (run_dir / CONFIG_FILE).is_file():
        check_resumable(run_dir, config)
    existing = next(p for p in (run_dir, *run_dir.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"cannot write to output directory {run_dir} ({existing} is not a "
            "writable folder); choose another with --out"
        )


def _make_run_dir(config: SearchConfig) -> None:
    try:
        config.run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"cannot write to output directory {config.run_dir}: {exc.strerror}; "
            "choose another with --out"
        ) from None


def train(
    run_dir: str | Path, *, in_process: bool = False, progress: Progress = silent, **options: Any
) -> ship.FullTrainOutcome:
    """Fully train students of a run (``autodistill train``): one by ``trial``, by ``pick`` rule
    (default ``knee``), the most accurate within ``limits``, or the ``top`` K (``options``:
    ``TrainOptions``'s fields, the command line's options by the same names).

    The work runs in a child process (``in_process``: in this one, for a debugger), so that a
    native crash is one line naming the student and epoch (``Crashed``), not the end of
    this process."""
    how = build(TrainOptions, options)
    return _run(ship.train_students, Path(run_dir), how, "train", in_process, progress)


def export(run_dir: str | Path, **options: Any) -> ship.ExportOutcome:
    """Export a trained student to ONNX (and with ``int8``, the fastest measured int8 recipe
    within ``int8_tolerance`` of fp32's validation accuracy), check it and time it
    (``autodistill export``; ``options``: ``ExportOptions``'s fields); ``threads`` 0 times with
    the run's latency threads."""
    how = build(ExportOptions, options)
    with _threads(how.threads or study.Run.open(run_dir).config.target_threads):
        return ship.export_student(Path(run_dir), how)


def compress(
    run_dir: str | Path, *, in_process: bool = False, progress: Progress = silent, **options: Any
) -> ship.CompressOutcome:
    """Compress a fully trained student (``autodistill compress``; ``options``:
    ``CompressOptions``'s fields): prune it by each ratio of ``prune`` (fractions of channels)
    with distillation fine-tuning (``kd=False``: plain cross-entropy), int8 after training and,
    with ``qat``, quantization-aware distillation; every variant measured on the run's target,
    the fastest within ``tolerance`` of the student's validation accuracy chosen. ``seed`` (by
    default the run's) draws the fine-tuning's batches. Contained in a child process unless
    ``in_process``, as ``train``."""
    how = build(CompressOptions, options)
    return _run(ship.compress_student, Path(run_dir), how, "compress", in_process, progress)


def _run(
    fn: Callable[..., Any],
    run_dir: Path,
    options: Any,
    command: str,
    in_process: bool,
    progress: Progress,
) -> Any:
    """``fn`` of a run's students, with the run's threads, contained unless ``in_process``."""
    threads = study.Run.open(run_dir).config.resolved_threads
    kwargs = {"run_dir": run_dir, "options": options}
    if not in_process:
        return run_contained(
            fn, kwargs, command=f"autodistill {command}", threads=threads, progress=progress
        )
    with _threads(threads):
        return fn(**kwargs, progress=progress)


@dataclass(frozen=True)
class ReportResult:
    """What ``report`` found in a run, and the files it drew."""

    run_dir: Path
    name: str
    trials: pd.DataFrame
    front: pd.DataFrame
    objectives: tuple[str, ...]
    teacher: dict[str, Any] | None
    students: list[dict[str, Any]]  # the fully trained students' metrics
    files: dict[str, Path]


def report(run_dir: str | Path) -> ReportResult:
    """Redraw a run's CSVs and plots from its storage and write report.html / report.md."""
    run = study.Run.open(run_dir)
    run_dir, config, the_study = run.run_dir, run.config, run.study
    teacher_file = run_dir / "teacher.json"
    teacher = json.loads(teacher_file.read_text()) if teacher_file.is_file() else None
    trials = study.trials_frame(the_study)
    objectives = study.study_objectives(the_study)
    students = _students(run_dir)
    files = render.write_report(
        trials,
        run_dir,
        title=f"autodistill: {config.name}",
        objectives=objectives,
        teacher=teacher,
        limits=config.limits,
        hypervolume=study.hypervolume_history(the_study),
        importances=study.importances(the_study),
        students=students,
        brief_epochs=config.epochs,
        ranking=_ranking(run_dir),
        latency_reference=study.latency_reference(the_study),
    )
    return ReportResult(
        run_dir,
        config.name,
        trials,
        render.pareto_frame(trials),
        objectives,
        teacher,
        [m for m, _, _ in students],
        files,
    )


def _ranking(run_dir: Path) -> dict[str, Any] | None:
    """What ``train --top K`` measured of the brief ranking, if it ran."""
    path = run_dir / STUDENTS_DIR / "ranking.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _students(run_dir: Path) -> list[tuple[dict, dict | None, dict | None]]:
    """Fully trained students of the run, with their export and compression figures where
    they were exported and compressed."""
    out = []
    for number in ship.trained_numbers(run_dir):
        metrics = run_dir / STUDENTS_DIR / f"trial-{number}" / "metrics.json"
        extra = [metrics.with_name(n) for n in ("export.json", "compress.json")]
        exported, compressed = (json.loads(p.read_text()) if p.is_file() else None for p in extra)
        out.append((json.loads(metrics.read_text()), exported, compressed))
    return out


def load_student(run_dir: str | Path, trial: int) -> nn.Module:
    """Trial ``trial``'s student as an ``nn.Module`` (eval mode, CPU): its fully trained weights
    when ``train`` has run for it, else freshly built."""
    return ship.load_student(Path(run_dir), trial)


def list_spaces() -> list[SearchSpace]:
    """Every shipped search space, parsed (``autodistill spaces``)."""
    return [load_space(name) for name in spaces.list_spaces()]


def dashboard(
    run_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8080, allow_write: bool = False
) -> None:
    """Serve optuna-dashboard on a run's storage until interrupted (blocks); read-only unless
    ``allow_write``. A host other than loopback is served with a warning."""
    run = study.Run.open(run_dir)
    storage = run.storage
    _ = run.study  # no such study: one clear line before the server starts
    if not study.is_loopback(host):
        log.warning(
            "serving on %s: anyone who can reach this machine can read the study%s",
            host,
            " and change it (--allow-write)" if allow_write else "",
        )
    try:
        study.serve_dashboard(storage, host=host, port=port, allow_write=allow_write)
    except OSError as exc:  # the port is taken, or the host is not this machine's
        raise UserError(
            f"cannot serve the dashboard on {host}:{port}: {exc.strerror}; "
            "choose another --port or --host"
        ) from None
