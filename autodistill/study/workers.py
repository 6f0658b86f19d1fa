"""Workers: the loop one process runs over a study's trials, and ``--jobs N`` of them here.

Every worker, local or on another machine, is the same loop (``work``); the budget, the claims
and the recovery of dead workers' trials live in the study's storage, not in any process.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import optuna
import torch

from autodistill.config import SearchConfig
from autodistill.errors import UserError
from autodistill.families import InputSpec
from autodistill.identity import (
    INPUT_ATTR,
    SETTINGS_ATTR,
    SPACE_ATTR,
    recorded_settings,
)
from autodistill.prepare import Prepared
from autodistill.processes import adopt, inherited, process_context
from autodistill.processes import start as start_process
from autodistill.recipe import build, student_spec
from autodistill.reference import PASSES, Reference, ReferenceRecord
from autodistill.rundir import CHECKPOINTS_DIR
from autodistill.signals import interrupts_as_exceptions
from autodistill.spaces import Candidate, SearchSpace, load_space
from autodistill.study.candidate import Limits, TrialContext
from autodistill.study.controller import run
from autodistill.study.handle import Run
from autodistill.study.opening import (
    front_retimed,
    latency_reference,
    open_study,
    record_front_retimed,
    record_latency_reference,
)
from autodistill.study.promotion import rungs_for
from autodistill.study.record import CANDIDATE, LATENCY, get, value
from autodistill.study.results import front_trials
from autodistill.study.storage import quiet_optuna_logs
from autodistill.study.supervisor import supervise

log = logging.getLogger(__name__)


def join_study(
    run: Run, prep: Prepared, space: SearchSpace, *, samples: bool = True
) -> optuna.Study:
    """Create or join the run's study, refusing a different teacher, space or settings
    (``samples``: as ``open_study``)."""
    config = run.config
    # Every worker of a study, on any machine, must train and time trials the same way.
    data = prep.data
    spec = {
        "in_chans": data.in_chans,
        "image_size": data.image_size,
        "num_classes": data.num_classes,
    }
    identity = {
        **prep.identity,
        SPACE_ATTR: space.fingerprint(),
        SETTINGS_ATTR: recorded_settings(config),
        INPUT_ATTR: json.dumps(spec, sort_keys=True),
    }
    return open_study(
        run.storage,
        config.name,
        objectives=config.objectives,
        sampler_name=config.sampler,
        seed=config.seed,
        budget=config.budget,
        identity=identity,
        space=space,
        samples=samples,
    )


def work(
    config: SearchConfig,
    study: optuna.Study,
    space: SearchSpace,
    prep: Prepared,
    *,
    on_trial: Callable[[optuna.Study, Any], None] | None = None,
) -> int:
    """One worker: take trials until the study's budget is used; returns how many it ran."""
    # The training images and cached views where this worker trains, moved once (not in every
    # trial's fit; a parent of --jobs workers never does it).
    device = prep.device
    prep = replace(prep, views=prep.views.to(device), data=prep.data.with_train_on(device))
    if config.search_subset is not None:  # trials see a stratified subset, and its views
        index = prep.data.subset_index(config.search_subset, config.seed)
        prep = replace(prep, data=prep.data.with_train_subset(index), views=prep.views.take(index))
    ctx = TrialContext(
        data=prep.data,
        aug=prep.aug,
        views=prep.views,
        epochs=config.epochs,
        limits=_limits(config, prep),
        seed=config.seed,
        early_stop=config.early_stop,
        objectives=config.objectives,
        device=prep.device,
        target=config.latency_target,
        precision=prep.precision,
        rungs=rungs_for(config.epochs) if config.fidelity.kind == "multi" else (),
        checkpoints=config.run_dir / CHECKPOINTS_DIR,
        relative=relative_timing(config, study, prep),
        teacher=prep.load_teacher,
    )
    return run(
        study,
        space,
        ctx,
        budget=config.budget,
        promotions=config.resolved_promotions,
        promotion_time=config.fidelity.promotion_time,
        on_trial=on_trial,
    )


def latency_timed(config: SearchConfig) -> bool:
    """Whether candidates are timed: latency is an objective or limited."""
    return "latency_ms" in config.objectives or "latency_ms" in config.limits


def _reference(config: SearchConfig, prep: Prepared) -> Reference:
    data = prep.data
    return Reference(
        config.latency_target, InputSpec(data.in_chans, data.image_size, data.num_classes)
    )


def start_reference(config: SearchConfig, study: optuna.Study, prep: Prepared) -> None:
    """A new study whose candidates are timed records its reference's quiet figure before its
    first trial, once (a study resumed, or made before references, keeps what it has: its
    latencies stay comparable with one another)."""
    if not latency_timed(config) or latency_reference(study) is not None:
        return
    if study.get_trials(deepcopy=False):
        return
    record = _reference(config, prep).quiet(config.resolved_cache_dir)
    record_latency_reference(study, record.to_dict())
    log.info(
        "latency reference %s: quiet %.4f ms (timed %s), now %.4f ms (%s)",
        record.arch,
        record.quiet_ms,
        record.measured_at,
        record.now_ms,
        record.target,
    )


def relative_timing(
    config: SearchConfig, study: optuna.Study, prep: Prepared
) -> Callable[..., Any] | None:
    """The study's reference, made in this worker and bound to the study's quiet figure: how
    each candidate's latency is timed (``Reference.around``); None where it has none."""
    doc = latency_reference(study)
    if doc is None or not latency_timed(config):
        return None
    quiet_ms = ReferenceRecord.from_dict(doc).quiet_ms
    return partial(_reference(config, prep).around, quiet_ms=quiet_ms)


def retime_front(config: SearchConfig, study: optuna.Study, prep: Prepared) -> None:
    """The front's students timed again side by side with the reference (``Reference.
    side_by_side``) and recorded in the study: what the front, its table, plots and knee
    report, beside each trial's first figure. Timed again only when the front changed; not for
    an int8 target (its shipped recipe is chosen per candidate) nor a study without a
    reference."""
    doc = latency_reference(study)
    if doc is None or not latency_timed(config) or config.latency_target.precision != "fp32":
        return
    front = {t.number: t for t in front_trials(study) if get(t, CANDIDATE)}
    before = (front_retimed(study) or {}).get("trials", {})
    if not front or {int(n) for n in before} == set(front):
        return
    spec = InputSpec(prep.data.in_chans, prep.data.image_size, prep.data.num_classes)
    candidates = {n: Candidate.from_dict(get(t, CANDIDATE)) for n, t in front.items()}
    models = {
        n: build(c, spec, seed=config.seed, teacher=prep.load_teacher)
        for n, c in candidates.items()
    }
    shapes = {n: student_spec(c, spec).shape for n, c in candidates.items()}
    quiet = ReferenceRecord.from_dict(doc).quiet_ms
    timed = _reference(config, prep).side_by_side(models, quiet, shapes)
    for n, figures in timed.items():
        figures["first_ms"] = value(front[n], LATENCY)
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    record = {"trials": {str(n): f for n, f in timed.items()}, "passes": PASSES, "at": when}
    record_front_retimed(study, record)


def _limits(config: SearchConfig, prep: Prepared) -> Limits:
    floor = config.accuracy_floor(prep.teacher.val_accuracy)
    return Limits(dict(config.limits), {} if floor is None else {"val_accuracy": floor})


def run_local_workers(
    config: SearchConfig, study: optuna.Study, *, on_progress: Callable[[], None]
) -> int:
    """Run ``config.jobs`` supervised worker processes on this machine until the budget is used
    (see ``supervisor``); returns how many trials crashed their worker.

    ``on_progress`` is called about once a second. Ctrl-C or SIGTERM stops the workers the same
    way (each records and queues its running trial) and re-raises.
    """
    ctx = process_context()
    inheritance = inherited()

    def start(index: int) -> multiprocessing.process.BaseProcess:
        p = ctx.Process(
            target=_worker_main, args=(config, index, inheritance), name=f"worker-{index}"
        )
        start_process(p)
        return p

    return supervise(study, config.jobs, start, on_progress=on_progress)


def spread_over_gpus(config: SearchConfig, index: int) -> SearchConfig:
    """Local worker ``index`` of a run on ``auto`` or ``cuda`` trains on GPU ``index`` modulo
    the GPUs here, so ``--jobs N`` on a machine with G GPUs uses all of them."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count > 1 and str(config.device).lower() in ("auto", "cuda"):
        return config.with_device(f"cuda:{index % count}")
    return config


def latency_gpu_shared(latency_device: str, train_device: str, jobs: int, gpus: int) -> bool:
    """Whether candidates timed on ``latency_device`` would share a GPU with another local
    worker's training: ``jobs`` workers that train on this machine's ``gpus`` GPUs (an
    ``auto`` or ``cuda`` device, spread as ``spread_over_gpus`` does) leave no GPU idle for
    timing once there are two of them, whatever the number of GPUs."""
    if not latency_device.lower().startswith("cuda") or jobs < 2 or gpus < 1:
        return False
    return train_device.lower() == "auto" or train_device.lower().startswith("cuda")


def _worker_main(config: SearchConfig, index: int, inheritance: dict[str, Any]) -> None:
    """A local worker process: load what the parent prepared, join the study, work.

    A process of its own, so it sets its own environment (the parent's), logging and threads,
    as the CLI does for its one.
    """
    adopt(inheritance, f"%(levelname)s worker-{index} %(name)s: %(message)s")
    quiet_optuna_logs()
    config = spread_over_gpus(config, index)
    torch.set_num_threads(config.resolved_threads)
    try:
        with interrupts_as_exceptions():
            space = load_space(config.space)
            run = Run.of(config)
            prep = run.prepare()
            work(config, join_study(run, prep, space), space, prep)
    except KeyboardInterrupt:
        sys.exit(130)
    except UserError as exc:
        print(f"autodistill: worker-{index}: error: {exc}", file=sys.stderr)
        sys.exit(2)
