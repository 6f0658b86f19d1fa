"""Everything trials share, made once: the data, the teacher and its cached outputs.

Workers that start together (``--jobs``, or several machines on one cache folder) take a lock
in the cache folder first: one builds the teacher and its cache, the others wait and load them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from torch import nn

from autodistill.cache import TeacherViews, cache_key, compute_views, load_views
from autodistill.config import SearchConfig
from autodistill.data.augment import Augmentation, default_augmentation
from autodistill.data.sources import load_dataset
from autodistill.data.splits import DatasetSplits
from autodistill.errors import UserError
from autodistill.latency import LatencyTarget, measure_on_target
from autodistill.progress import Progress, silent
from autodistill.teacher import TeacherInfo, TeacherRecipe, TransferRecipe
from autodistill.teacher_sources import TeacherSpec, parse_spec
from autodistill.teacher_store import dataset_fingerprint, prepare_given, prepare_teacher

log = logging.getLogger(__name__)
BUILD_LOCK = "build.lock"


@dataclass(frozen=True)
class Prepared:
    """Data, augmentation, teacher description and cached teacher views for a configuration."""

    data: DatasetSplits
    aug: Augmentation
    teacher: TeacherInfo
    views: TeacherViews
    device: torch.device
    load_teacher: Callable[[], nn.Module] | None = None  # the teacher model, loaded when asked
    precision: str = "fp32"  # students train in it (device.resolve_precision)
    # Outputs the space's losses read that a given teacher does not give (its trials with
    # such a loss are ruled out before training).
    lacking: tuple[str, ...] = ()

    def lacking_line(self) -> str | None:
        """One line saying which outputs the teacher lacks, or None."""
        if not self.lacking:
            return None
        return (
            f"the teacher {self.teacher.name} gives no {'/'.join(self.lacking)}: trials of the "
            "losses that read them are ruled out before training"
        )

    @property
    def identity(self) -> dict[str, str]:
        """What every worker of one study must share: the teacher and its cached outputs."""
        return {"teacher_sha256": self.teacher.weights_sha256, "teacher_cache_key": self.views.key}

    def teacher_on_target(self, target: LatencyTarget) -> dict[str, Any]:
        """The teacher's description with its latency on ``target`` (what its students are
        compared with); its eager PyTorch latency stays as ``torch_latency_ms``."""
        if self.load_teacher is None:
            raise ValueError("this preparation cannot load its teacher")
        shape = (self.data.in_chans, self.data.image_size, self.data.image_size)
        calibration = None
        if target.precision == "int8":
            calibration = self.data.calibration()
        measured = measure_on_target(self.load_teacher(), shape, target, calibration=calibration)
        info = self.teacher.to_dict()
        return {
            **info,
            "torch_latency_ms": info["latency_ms"],
            "latency_ms": measured.median_ms,
            "latency_target": target.describe(),
        }

    def cache_summary(self) -> str:
        kinds = "/".join(self.views.outputs)
        return f"{kinds} for {self.views.count} views, {self.views.nbytes() / 1e6:.1f} MB"


def prepare(
    config: SearchConfig,
    kinds: tuple[str, ...],
    *,
    progress: Progress = silent,
    teacher_sha256: str | None = None,
) -> Prepared:
    """Load the data, then the teacher and its cached outputs (training or computing them once,
    on the run's device). ``teacher_sha256``, the teacher a study recorded, decides whether a
    teacher trained again (its cache damaged or not here) is the study's."""
    threads = config.resolved_threads
    device = config.resolved_device
    data = load_dataset(
        config.data,
        data_dir=config.data_dir,
        download=config.download,
        image_size=config.image_size,
        seed=config.seed,
        group_by=config.group_by,
        progress=progress,
    )
    aug = default_augmentation(data.name, data.image_size)
    cache_dir = config.resolved_cache_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(cache_dir / BUILD_LOCK))
    try:
        lock.acquire(timeout=5)  # another worker reading the cache holds it for a moment
    except Timeout:
        log.warning("another worker is building the teacher cache in %s; waiting", cache_dir)
        lock.acquire()
    spec = teacher_spec(config)
    lacking: tuple[str, ...] = ()
    try:
        if spec.given:
            info, load_teacher = prepare_given(
                spec,
                data,
                aug,
                cache_dir=cache_dir,
                threads=threads,
                device=device,
                recipe=TransferRecipe(epochs=config.teacher_epochs, seed=config.seed),
                precision=config.resolved_precision,
                progress=progress,
                expected_sha256=teacher_sha256,
            )
            lacking = tuple(k for k in kinds if k not in info.outputs)
            kinds = tuple(k for k in kinds if k in info.outputs)
        else:
            info, load_teacher = prepare_teacher(
                config.teacher,
                data,
                aug,
                cache_dir=cache_dir,
                threads=threads,
                device=device,
                checkpoint=Path(config.teacher_checkpoint) if config.teacher_checkpoint else None,
                recipe=TeacherRecipe(epochs=config.teacher_epochs, seed=config.seed),
                precision=config.resolved_precision,
                progress=progress,
                expected_sha256=teacher_sha256,
            )
        key = cache_key(
            info.weights_sha256,
            data.name,
            dataset_fingerprint(data),
            "train",
            aug,
            config.views,
            info.input,
        )
        views = load_views(cache_dir, key, kinds) or compute_views(
            load_teacher(),
            data.train,
            aug,
            data.stats,
            key=key,
            views=config.views,
            cache_dir=cache_dir,
            kinds=kinds,
            device=device,
            progress=progress,
        )
    finally:
        lock.release()
    log.info("teacher cache: %s, %.1f MB on disk", "/".join(kinds), views.nbytes() / 1e6)
    prep = Prepared(data, aug, info, views, device, load_teacher, config.resolved_precision)
    prep = replace(prep, lacking=lacking)
    if lacking:
        log.info(prep.lacking_line())
    return prep


def teacher_spec(config: SearchConfig) -> TeacherSpec:
    """``--teacher`` with its options; a teacher given as a module (the Python API's) is kept
    as a program in the cache folder."""
    spec = parse_spec(
        config.teacher,
        weights=config.teacher_weights,
        size=config.teacher_size,
        mean=config.teacher_mean,
        std=config.teacher_std,
        home=str(config.resolved_cache_dir / "teachers"),
    )
    if spec.given and config.teacher_checkpoint:
        raise UserError(
            f"--teacher-checkpoint goes with a bare timm name trained here; --teacher "
            f"{spec.text} takes its weights from --teacher-weights (timm:, torchvision:) or "
            "from its own file"
        )
    return spec
