"""One sampled candidate, cheap first: build, measure, check limits, then train (the trial's
work; a student's accuracy is ``trainer.evaluate``).

Knows the objectives registry and the recipe, not Optuna: the controller records what this
returns.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autodistill.cache import TeacherViews
from autodistill.data.augment import Augmentation
from autodistill.data.splits import DatasetSplits, ImageSet
from autodistill.families import InfeasibleArchitecture, InputSpec
from autodistill.latency import LatencyTarget
from autodistill.objectives import DEFAULT, OBJECTIVES, Objective, Probe
from autodistill.recipe import (
    build,
    describe,
    distil,
    recipe_for,
    recipe_record,
    rung_recipe,
    student_size,
    student_spec,
)
from autodistill.spaces import Candidate
from autodistill.study.record import floor_key, limit_key

RungCallback = Callable[[int, float], None]


class DidNotLearn(RuntimeError):
    """Validation accuracy stayed at chance although the loss stayed finite (a learning rate
    far too high, say): the trial failed, it did not find a poor student."""


@dataclass(frozen=True)
class Limits:
    """The user's hard constraints: objective name -> the most it may be (a candidate over any
    is never trained), and -> the least it may be (the accuracy floor, known after training)."""

    max: dict[str, float] = field(default_factory=dict)
    min: dict[str, float] = field(default_factory=dict)

    def violations(self, values: dict[str, float]) -> dict[str, float]:
        """Positive amounts by which each set limit is broken, among the ``values`` measured
        so far (empty when feasible): ``max_<name>`` over, ``min_<name>`` under."""
        over = {
            limit_key(name): float(values[name] - most)
            for name, most in self.max.items()
            if name in values and values[name] > most
        }
        under = {
            floor_key(name): float(least - values[name])
            for name, least in self.min.items()
            if name in values and values[name] < least
        }
        return {**over, **under}


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs that is the same for every trial of a search."""

    data: DatasetSplits
    aug: Augmentation
    views: TeacherViews
    epochs: int
    limits: Limits = field(default_factory=Limits)
    seed: int = 0
    early_stop: bool = False  # stop trials others dominate at an epoch rung (search decides)
    objectives: tuple[str, ...] = DEFAULT
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    target: LatencyTarget = field(default_factory=LatencyTarget)  # where latency is timed
    precision: str = "fp32"  # students train in it: fp32, or bf16 autocast
    # Multi-fidelity: the epochs of each rung (3, 9, 27); empty for brief trials only. A rung's
    # stable state is kept in ``checkpoints`` for the next rung to continue from.
    rungs: tuple[int, ...] = ()
    checkpoints: Path | None = None
    # Latency relative to the study's reference (objectives.Probe.relative); None: absolute.
    relative: Callable[..., Any] | None = None
    # Loads the teacher, which students of a derived family (from_teacher) are cut from.
    teacher: Callable[[], nn.Module] | None = None

    @property
    def spec(self) -> InputSpec:
        return InputSpec(self.data.in_chans, self.data.image_size, self.data.num_classes)

    def seen(self, candidate: Candidate) -> DatasetSplits:
        """The data as the candidate's student sees it: at its own input size, if it has one."""
        size = student_size(candidate)
        return self.data if size is None else self.data.at_size(size)

    def input_shape(self, candidate: Candidate) -> tuple[int, int, int]:
        return student_spec(candidate, self.spec).shape

    def before_training(self) -> list[Objective]:
        """What is measured before training, cheapest first: the free ones always, a timed one
        only when it is an objective or limited."""
        wanted = set(self.objectives) | set(self.limits.max)
        chosen = [
            o
            for o in OBJECTIVES.values()
            if not o.after_training and (o.always or o.name in wanted)
        ]
        return sorted(chosen, key=lambda o: not o.always)


@dataclass(frozen=True)
class Cost:
    """What the candidate costs to run, known before training."""

    arch: str
    values: dict[str, float]  # objective name -> value, as recorded
    details: dict[str, Any]  # recorded beside them (latency spread, device, threads)


# Measured before: objective name -> the value and details an earlier trial of the same
# architecture recorded.
Known = dict[str, tuple[float, dict[str, Any]]]


def measure_candidate(
    candidate: Candidate, ctx: TrialContext, known: Known | None = None
) -> tuple[nn.Module, Cost]:
    """Build the student and measure what needs no training. Once a limit is broken, nothing
    more costly is measured. A timed objective in ``known`` is taken from there, not timed
    again: one architecture has one latency in a study, not two that differ by noise.

    Raises:
        InfeasibleArchitecture: it cannot run on this input.
    """
    size = student_size(candidate)
    if size is not None and size > ctx.data.image_size:  # upsampling shows it nothing new
        raise InfeasibleArchitecture(
            f"image_size {size} is larger than the images as read ({ctx.data.image_size} px; "
            "--image-size reads them larger)"
        )
    model = build(candidate, ctx.spec, seed=ctx.seed, teacher=ctx.teacher).to(ctx.device)
    calibration = None
    if ctx.target.precision == "int8":  # int8 ranges calibrated on training images
        calibration = ctx.seen(candidate).calibration(64)
    probe = Probe(
        model,
        ctx.input_shape(candidate),
        ctx.device,
        ctx.target,
        calibration=calibration,
        relative=ctx.relative,
    )
    values, details = _measure(ctx.before_training(), probe, ctx.limits, known or {})
    return model, Cost(describe(candidate), values, details)


def _measure(
    objectives: Iterable[Objective], probe: Probe, limits: Limits, known: Known
) -> tuple[dict[str, float], dict[str, Any]]:
    values: dict[str, float] = {}
    details: dict[str, Any] = {}
    for objective in objectives:
        if not objective.always and limits.violations(values):
            break  # counting is free; timing takes a second: skip it once a limit failed
        if not objective.always and objective.name in known:
            values[objective.name], extra = known[objective.name]
        else:
            values[objective.name], extra = objective.record(probe)
        details.update(extra)
    return values, details


@dataclass(frozen=True)
class Rung:
    """How far a multi-fidelity trial trains, and which candidate's line of trials it extends."""

    epochs: int
    lineage: int  # the number of the candidate's first trial: it names the checkpoints
    parent_epochs: int | None = None  # the rung it continues from; None for a first rung
    seed: int = 0  # added to the search's seed: a second seed trains the candidate again

    def files(self, home: Path | None, last: int) -> tuple[Path | None, Path | None, Path | None]:
        """(per-epoch checkpoint, stable state to keep, stable state to continue from); the
        per-epoch one only for a continuation or a second seed, which are long enough to be
        worth resuming, and no stable state at the last rung ``last``, nor for a second seed,
        which nothing continues."""
        if home is None:
            return None, None, None
        name = f"trial-{self.lineage}-" + (f"s{self.seed}-" if self.seed else "") + "e"
        resumable = self.parent_epochs or self.seed
        checkpoint = home / f"{name}{self.epochs}.pt" if resumable else None
        keep = self.epochs < last and not self.seed
        branch = home / f"{name}{self.epochs}-stable.pt" if keep else None
        start = home / f"{name}{self.parent_epochs}-stable.pt" if self.parent_epochs else None
        return checkpoint, branch, start


@dataclass(frozen=True)
class Trained:
    """The result of briefly training a feasible candidate."""

    values: dict[str, float]  # the objectives measured after training
    history: list[dict[str, float]]
    seconds: float
    recipe: dict[str, Any]
    # Where training began: "start", "stable state of rung N" (a promotion), or "checkpoint"
    # (an attempt that was killed or interrupted, resumed after its last finished epoch).
    began: str = "start"


def train_candidate(
    model: nn.Module,
    candidate: Candidate,
    ctx: TrialContext,
    on_rung: RungCallback | None = None,
    rung: Rung | None = None,
) -> Trained:
    """Distil the student against the cached teacher views and score it on validation.

    ``on_rung(epoch, val_accuracy)`` is called after every epoch but the last; it may raise to
    stop the training there. In a multi-fidelity search ``rung`` says how far it trains, and
    from which earlier rung's stable state it continues.
    """
    start = time.perf_counter()
    epochs = rung.epochs if rung is not None else ctx.epochs
    checkpoint = branch = start_from = None
    if ctx.rungs:
        cfg = rung_recipe(
            candidate,
            epochs=epochs,
            first_rung=ctx.rungs[0],
            seed=ctx.seed,
            device=ctx.device,
            precision=ctx.precision,
        )
        if rung is not None:
            checkpoint, branch, start_from = rung.files(ctx.checkpoints, ctx.rungs[-1])
    else:
        cfg = recipe_for(
            candidate, epochs=epochs, seed=ctx.seed, device=ctx.device, precision=ctx.precision
        )
    began = "start"
    if checkpoint is not None and checkpoint.is_file():
        began = "checkpoint"
    elif start_from is not None and start_from.is_file():
        began = f"stable state of rung {rung.parent_epochs}"
    data = ctx.data
    seen = ctx.seen(candidate)  # validation at the student's own size
    probe = Probe(model, ctx.input_shape(candidate), ctx.device, ctx.target, seen.val, seen.stats)
    accuracy = OBJECTIVES["val_accuracy"]

    def on_epoch(epoch: int, _: dict[str, float]) -> None:
        if on_rung is not None and epoch + 1 < epochs:
            on_rung(epoch + 1, accuracy.rounded(accuracy.measure(probe)))

    history = distil(
        model,
        candidate,
        cfg,
        data=data,
        aug=ctx.aug,
        views=ctx.views,
        on_epoch=on_epoch,
        checkpoint=checkpoint,
        branch=branch,
        start_from=start_from,
    )
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)  # finished: its score is recorded
    after = [
        o
        for o in OBJECTIVES.values()
        if o.after_training and (o.always or o.name in ctx.objectives)
    ]
    values, _ = _measure(after, probe, Limits(), {})
    if "val_accuracy" in values:
        per_epoch = math.ceil(len(data.train) / cfg.batch_size)
        check_learned(values["val_accuracy"], seen.val, steps=(per_epoch, cfg.epochs))
    return Trained(values, history, time.perf_counter() - start, recipe_record(cfg), began)


FEW_STEPS = 100  # optimizer steps in all below which a student may not learn at any rate


def check_learned(accuracy: float, val: ImageSet, *, steps: tuple[int, int] | None = None) -> None:
    """Raise DidNotLearn unless ``accuracy`` is above chance by more than two standard errors
    of a guesser's accuracy on this many images (0.13 for 10 balanced classes and 360 images).
    ``steps`` (optimizer steps an epoch, epochs) says whether training was too short to blame
    the learning rate.

    Raises:
        DidNotLearn: it is not.
    """
    chance = val.chance_accuracy()
    margin = 2 * math.sqrt(chance * (1 - chance) / max(len(val), 1))
    if accuracy > chance + margin:
        return
    at_chance = (
        f"validation accuracy {accuracy:.3f} is at chance ({chance:.3f} for always "
        "answering the most frequent class)"
    )
    if steps is not None and steps[0] * steps[1] < FEW_STEPS:
        per_epoch, epochs = steps
        raise DidNotLearn(
            f"{at_chance} after only {per_epoch * epochs} optimizer steps ({per_epoch} an "
            f"epoch x {epochs} epoch{'s' * (epochs != 1)}): too few to learn; give more "
            "--epochs (or more training images)"
        )
    raise DidNotLearn(f"{at_chance}; the learning rate or a loss weight is likely far too high")


__all__ = [
    "Cost",
    "DidNotLearn",
    "InfeasibleArchitecture",
    "Known",
    "Limits",
    "Rung",
    "Trained",
    "TrialContext",
    "measure_candidate",
    "train_candidate",
]
