"""Evaluate one sampled candidate, cheap first: build, count, time, check limits, then train."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from autodistill.cache import TeacherViews
from autodistill.data.augment import Augmentation
from autodistill.data.splits import DatasetSplits
from autodistill.families import InfeasibleArchitecture, InputSpec, build_student, get_family
from autodistill.measure import Latency, count_flops, count_params, measure_latency
from autodistill.spaces import Candidate
from autodistill.train import TrainConfig, evaluate, fit, make_distiller

RungCallback = Callable[[int, float], None]


@dataclass(frozen=True)
class Limits:
    """The user's hard constraints; a candidate over either is never trained."""

    max_params: int | None = None
    max_latency_ms: float | None = None

    def violations(self, params: int, latency_ms: float | None) -> dict[str, float]:
        """Positive amounts by which each set limit is exceeded (empty when feasible).

        ``latency_ms`` is None when it was not measured (the parameter limit already failed).
        """
        out = {}
        if self.max_params is not None and params > self.max_params:
            out["max_params"] = float(params - self.max_params)
        if (
            self.max_latency_ms is not None
            and latency_ms is not None
            and (latency_ms > self.max_latency_ms)
        ):
            out["max_latency_ms"] = latency_ms - self.max_latency_ms
        return out


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs that is the same for every trial of a search."""

    data: DatasetSplits
    aug: Augmentation
    views: TeacherViews
    epochs: int
    threads: int
    limits: Limits = field(default_factory=Limits)
    seed: int = 0
    early_stop: bool = False  # stop trials others dominate at an epoch rung (search decides)

    @property
    def spec(self) -> InputSpec:
        return InputSpec(self.data.in_chans, self.data.image_size, self.data.num_classes)


@dataclass(frozen=True)
class Cost:
    """What the candidate costs to run, known before training."""

    arch: str
    params: int
    flops: int
    latency: Latency | None  # None: not measured, the candidate was already over --max-params


def measure_candidate(candidate: Candidate, ctx: TrialContext) -> tuple[nn.Module, Cost]:
    """Build the student and measure it.

    Raises:
        InfeasibleArchitecture: it cannot run on this input.
    """
    spec = ctx.spec
    model = build_student(candidate.family, candidate.arch, spec)
    shape = (spec.in_chans, spec.image_size, spec.image_size)
    params = count_params(model)
    over = ctx.limits.max_params is not None and params > ctx.limits.max_params
    # Counting is free; timing takes a second: skip it once the size limit already failed.
    latency = None if over else measure_latency(model, shape, threads=ctx.threads)
    arch = get_family(candidate.family).describe(candidate.arch)
    return model, Cost(arch, params, count_flops(model, shape), latency)


@dataclass(frozen=True)
class Trained:
    """The result of briefly training a feasible candidate."""

    val_accuracy: float
    history: list[dict[str, float]]
    seconds: float


def train_candidate(
    model: nn.Module,
    candidate: Candidate,
    ctx: TrialContext,
    on_rung: RungCallback | None = None,
) -> Trained:
    """Distil the student against the cached teacher views and score it on validation.

    ``on_rung(epoch, val_accuracy)`` is called after every epoch but the last; it may raise to
    stop the training there.
    """
    start = time.perf_counter()
    hp = candidate.train
    cfg = TrainConfig(
        epochs=ctx.epochs,
        lr=float(hp["lr"]),
        weight_decay=float(hp.get("weight_decay", 0.0)),
        batch_size=int(hp.get("batch_size", 64)),
        seed=ctx.seed,
        channels_last=get_family(candidate.family).channels_last,
    )
    stats = ctx.data.stats
    spec = ctx.spec
    distiller = make_distiller(
        candidate.loss, candidate.distill, model, (spec.in_chans, spec.image_size, spec.image_size),
        spec.num_classes, ctx.views,
    )  # fmt: skip

    def on_epoch(epoch: int, _: dict[str, float]) -> None:
        if on_rung is not None and epoch + 1 < ctx.epochs:
            on_rung(epoch + 1, evaluate(model, ctx.data.val, stats))

    history = fit(
        model, ctx.data.train, ctx.aug, stats, cfg, views=ctx.views, distiller=distiller,
        on_epoch=on_epoch,
    )  # fmt: skip
    accuracy = evaluate(model, ctx.data.val, stats)
    return Trained(accuracy, history, time.perf_counter() - start)


__all__ = [
    "Cost",
    "InfeasibleArchitecture",
    "Limits",
    "Trained",
    "TrialContext",
    "measure_candidate",
    "train_candidate",
]
