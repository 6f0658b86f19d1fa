"""A run's students on disk: where each fully trained one lives, and loading one as a module."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import nn

from autodistill.config import SearchConfig
from autodistill.data.sources import load_dataset
from autodistill.errors import UserError, first_line
from autodistill.families import InputSpec, get_family
from autodistill.identity import INPUT_ATTR
from autodistill.recipe import build
from autodistill.rundir import STUDENTS_DIR
from autodistill.study import Run, trial_candidate

log = logging.getLogger(__name__)

WEIGHTS = "student.safetensors"
METRICS = "metrics.json"  # written last: its presence means the student is fully trained


def student_dir(run_dir: Path, number: int) -> Path:
    return Path(run_dir) / STUDENTS_DIR / f"trial-{number}"


def trained_numbers(run_dir: Path) -> list[int]:
    """The trials of the run that have been fully trained."""
    found = (Path(run_dir) / STUDENTS_DIR).glob(f"trial-*/{METRICS}")
    return sorted(
        int(p.parent.name.split("-", 1)[1])
        for p in found
        if p.parent.name.split("-", 1)[1].isdigit()
    )


def trained_student(run_dir: Path, trial: int | None) -> tuple[int, dict[str, Any]]:
    """The metrics of a fully trained student of the run (the only one, or trial ``trial``)."""
    found = trained_numbers(run_dir)
    if not found:
        raise UserError(
            f"{run_dir} has no fully trained student; run 'autodistill train {run_dir}' first"
        )
    if trial is None:
        if len(found) > 1:
            raise UserError(
                f"{run_dir} has several trained students ({found}); choose one with --trial"
            )
        trial = found[0]
    if trial not in found:
        raise UserError(f"trial {trial} has not been fully trained; trained: {found}")
    return trial, json.loads((student_dir(run_dir, trial) / METRICS).read_text())


def input_spec(config: SearchConfig, study_attrs: dict[str, Any]) -> InputSpec:
    """What the run's students take and produce: recorded with the study, or (for runs made
    before it was) read off the dataset."""
    if INPUT_ATTR in study_attrs:
        return InputSpec(**json.loads(study_attrs[INPUT_ATTR]))
    data = load_dataset(
        config.data,
        data_dir=config.data_dir,
        image_size=config.image_size,
        seed=config.seed,
        group_by=config.group_by,
    )
    return InputSpec(data.in_chans, data.image_size, data.num_classes)


def load_student(run_dir: Path, trial: int) -> nn.Module:
    """Trial ``trial``'s student: with its fully trained weights when ``train`` has run for it,
    else freshly built with the weights the trial started from (also for a trial stopped early
    or infeasible: its architecture is recorded), in eval mode on the CPU."""
    run = Run.open(run_dir)
    run_dir, config, study = run.run_dir, run.config, run.study
    candidate, _ = trial_candidate(study, trial, trained=False)  # stopped early: built fresh
    # A student cut from the teacher (from_teacher) is rebuilt from it.
    teacher = run.prepare().load_teacher if get_family(candidate.family).derived else None
    model = build(
        candidate, input_spec(config, study.user_attrs), seed=config.seed, teacher=teacher
    )
    weights = student_dir(run_dir, trial) / WEIGHTS
    if (student_dir(run_dir, trial) / METRICS).is_file():
        try:
            model.load_state_dict(load_file(str(weights)))
        except (RuntimeError, OSError, ValueError) as exc:  # another build, or a damaged file
            first = first_line(exc)
            raise UserError(
                f"the trained weights {weights} do not fit trial {trial}'s student "
                f"as this autodistill builds it ({first[:160]}); train it again "
                "with 'autodistill train'"
            ) from None
    return model.eval()
