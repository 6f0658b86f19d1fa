"""A run directory opened once: its config, its storage and study, what the study recorded
about itself, and the data and teacher prepared as the study recorded them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage

from autodistill.config import SearchConfig
from autodistill.errors import UserError
from autodistill.identity import TEACHER_ATTR
from autodistill.prepare import Prepared, prepare
from autodistill.progress import Progress, silent
from autodistill.rundir import load_config
from autodistill.spaces import load_space
from autodistill.study.opening import load_study, recorded_identity
from autodistill.study.storage import DEFAULT_STORAGE_FILE, open_storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """A search run: its config and directory; its storage and study are opened when first
    used, once. ``Run.open`` reads a run directory; a search makes one from its config."""

    config: SearchConfig
    run_dir: Path  # where it is now (a moved run is read from where it is)

    @classmethod
    def open(cls, run_dir: str | Path) -> Run:
        """The run in ``run_dir``; one line if it is not a run directory."""
        return cls(load_config(Path(run_dir)), Path(run_dir))

    @classmethod
    def of(cls, config: SearchConfig) -> Run:
        """The run a search with ``config`` makes or resumes."""
        return cls(config, config.run_dir)

    def on(self, device: str | None) -> Run:
        """The same run, training on ``device`` (None: the run's own)."""
        return self if device is None else replace(self, config=self.config.with_device(device))

    @cached_property
    def storage(self) -> BaseStorage:
        """The run's Optuna storage (the journal in the run dir by default)."""
        return open_storage(self.config.storage, self.run_dir, heartbeat_s=self.config.heartbeat)

    @cached_property
    def study(self) -> optuna.Study:
        """The run's study, which must exist (a clear line if it does not)."""
        return load_study(self.storage, self.config.name)

    def identity(self) -> dict[str, Any]:
        """What the study recorded about itself (teacher, input, space, settings); empty
        before it exists. Nothing is created to read it."""
        journal = self.run_dir / DEFAULT_STORAGE_FILE
        if self.config.storage is None and not journal.is_file():
            return {}
        return recorded_identity(self.storage, self.config.name)

    @property
    def recorded_teacher(self) -> str | None:
        """The teacher weights' hash the study recorded; None before the study exists."""
        return self.identity().get(TEACHER_ATTR)

    def prepare(self, *, other_teacher: bool = False, progress: Progress = silent) -> Prepared:
        """The run's data, teacher and cached views. The teacher must be the one the study
        distilled from (a teacher trained again on another machine has other weights, and
        students would learn from another teacher than their trials did). With
        ``other_teacher`` a different one is used, with a warning; what it is stays recorded
        with every student (``teacher.weights_sha256``)."""
        config, expected = self.config, self.recorded_teacher
        prep = prepare(
            config,
            load_space(config.space).teacher_outputs(),
            progress=progress,
            teacher_sha256=None if other_teacher else expected,
        )
        got = prep.teacher.weights_sha256
        if expected is None or got == expected:
            return prep
        if not other_teacher and ":" in config.teacher:  # a teacher the user gave: its file
            raise UserError(
                f"the teacher {config.teacher} ({got[:12]}) is not the one the study distilled "
                f"from ({expected[:12]}): its file (or --teacher-weights) changed since; give "
                "the study's teacher back, or add --other-teacher to distil from this one "
                "(recorded with the student)"
            )
        if not other_teacher:
            raise UserError(
                f"the teacher in {config.resolved_cache_dir} ({got[:12]}) is not the one the "
                f"study distilled from ({expected[:12]}): it was trained again elsewhere; point "
                "--cache-dir (or $AUTODISTILL_CACHE) at the study's cache, or add "
                "--other-teacher to distil from this one (recorded with the student)"
            )
        log.warning(
            "distilling from teacher %s, not the study's %s (--other-teacher)",
            got[:12],
            expected[:12],
        )
        return prep
