"""The one training recipe: how a candidate is distilled, in a trial, in full training and in the
benchmarks alike, so ``train --trial N`` rebuilds exactly what the trial ran."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autodistill.cache import TeacherViews
from autodistill.data.augment import Augmentation
from autodistill.data.splits import DatasetSplits
from autodistill.families import InputSpec, build_student, get_family
from autodistill.forward import forward_outputs
from autodistill.losses import Dims, Distiller, get_loss
from autodistill.spaces import Candidate
from autodistill.trainer import TrainConfig, fit

EpochCallback = Callable[[int, dict[str, float]], None]
DECAY_FRACTION = 0.2  # of a multi-fidelity rung's epochs: the decay branched off its stable phase
WARMUP_FRACTION = 0.15  # of the first rung, as one cycle warms up over 15% of a brief trial


def build(
    candidate: Candidate,
    spec: InputSpec,
    *,
    seed: int,
    teacher: Callable[[], nn.Module] | None = None,
) -> nn.Module:
    """The candidate's student with its initial weights drawn from ``seed`` (on the CPU), so a
    trial, its full training and ``load_student`` start from the same weights, whatever ran
    before in the process; a student derived from the teacher (``from_teacher``) starts from
    the weights ``teacher`` loads.

    Raises:
        InfeasibleArchitecture: it cannot run on this input.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_student(
            candidate.family, candidate.arch, student_spec(candidate, spec), teacher
        )


def student_size(candidate: Candidate) -> int | None:
    """The input size the candidate was sampled with (``image_size`` in a space's ``train``
    group), or None: the data's."""
    size = candidate.train.get("image_size")
    return None if size is None else int(size)


def describe(candidate: Candidate) -> str:
    """The candidate's architecture as trials.csv names it, with its input size where it has
    its own (``resnet s1 d1-1-1-1 w16 @24px``): one latency per name."""
    text = get_family(candidate.family).describe(candidate.arch)
    size = student_size(candidate)
    return text if size is None else f"{text} @{size}px"


def student_spec(candidate: Candidate, spec: InputSpec) -> InputSpec:
    """The input the candidate's student takes, given the data's ``spec``: at its own size
    where it was sampled one."""
    size = student_size(candidate)
    return spec if size is None else replace(spec, image_size=size)


def recipe_for(
    candidate: Candidate,
    *,
    epochs: int,
    seed: int,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
) -> TrainConfig:
    """The training settings of ``candidate``: its sampled hyperparameters, the run's seed, the
    family's memory format, for ``epochs`` (brief in a trial, long in full training), on
    ``device`` in ``precision``."""
    hp = candidate.train
    return TrainConfig(
        epochs=epochs,
        lr=float(hp["lr"]),
        weight_decay=float(hp.get("weight_decay", 0.0)),
        batch_size=int(hp.get("batch_size", 64)),
        image_size=student_size(candidate),
        seed=seed,
        channels_last=get_family(candidate.family).channels_last,
        device=str(device),
        precision=precision,
    )


def rung_recipe(
    candidate: Candidate,
    *,
    epochs: int,
    first_rung: int,
    seed: int,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
) -> TrainConfig:
    """The recipe of a multi-fidelity rung of ``epochs``: warm-up-stable-decay, warmed up as
    the first rung is, decaying over its last fifth, so that the next rung continues from its
    stable phase."""
    decay = max(1, round(DECAY_FRACTION * epochs))
    base = recipe_for(candidate, epochs=epochs, seed=seed, device=device, precision=precision)
    return replace(
        base,
        schedule="wsd",
        stable_epochs=epochs - decay,
        warmup_epochs=WARMUP_FRACTION * first_rung,
    )


def recipe_record(cfg: TrainConfig) -> dict[str, Any]:
    """The recipe as recorded with a trial and in ``metrics.json`` (the input size only where
    the candidate has its own, so records made before it still match)."""
    return {k: v for k, v in asdict(cfg).items() if not (k == "image_size" and v is None)}


def distil(
    model: nn.Module,
    candidate: Candidate,
    cfg: TrainConfig,
    *,
    data: DatasetSplits,
    aug: Augmentation,
    views: TeacherViews,
    on_epoch: EpochCallback | None = None,
    checkpoint: Path | None = None,
    branch: Path | None = None,
    start_from: Path | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place with the candidate's loss against the cached teacher views
    (``checkpoint``, ``branch``, ``start_from``: as ``trainer.fit``)."""
    model.to(cfg.device)
    size = cfg.image_size or data.image_size
    shape = (data.in_chans, size, size)
    distiller = make_distiller(
        candidate.loss, candidate.distill, model, shape, data.num_classes, views
    )
    return fit(
        model,
        data.train,
        aug,
        data.stats,
        cfg,
        views=views,
        distiller=distiller,
        on_epoch=on_epoch,
        checkpoint=checkpoint,
        branch=branch,
        start_from=start_from,
    )


def make_distiller(
    loss: str,
    params: Mapping[str, Any],
    model: nn.Module,
    spec_shape: tuple[int, int, int],
    num_classes: int,
    views: TeacherViews | None,
) -> Distiller:
    """A distiller whose learned modules are sized for this student and teacher."""
    spec = get_loss(loss)
    student_dim = 0
    if "features" in spec.needs:
        was_training = model.training
        device = next(model.parameters()).device
        with torch.no_grad():
            x = torch.zeros(1, *spec_shape, device=device)
            feats = forward_outputs(model.eval(), x, {"features"})["features"]
        model.train(was_training)
        student_dim = int(feats.shape[1])
    features = views.outputs.get("features") if views is not None else None
    teacher_dim = int(features.shape[-1]) if features is not None else 0
    return Distiller(spec, params, dims=Dims(num_classes, student_dim, teacher_dim))
