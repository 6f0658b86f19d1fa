"""The training loop: knows no search and no model family, reports through a callback."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from autodistill.cache import TeacherViews
from autodistill.data.augment import Augmentation, normalize
from autodistill.data.splits import ImageSet
from autodistill.losses import Loss, get_loss, total

Stats = tuple[tuple[float, ...], tuple[float, ...]]
EpochCallback = Callable[[int, dict[str, float]], None]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Brief for a search trial, long for a final student."""

    epochs: int
    lr: float
    weight_decay: float = 0.0
    batch_size: int = 64
    seed: int = 0
    optimizer: str = "adamw"  # adamw suits brief runs; sgd+momentum trains the teacher


def fit(
    model: nn.Module,
    train: ImageSet,
    aug: Augmentation,
    stats: Stats,
    cfg: TrainConfig,
    *,
    views: TeacherViews | None = None,
    loss: Loss | None = None,
    loss_params: Mapping[str, Any] | None = None,
    on_epoch: EpochCallback | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place; returns the mean loss parts of every epoch.

    With ``views`` each image is shown in one of the cached augmented views and the loss reads
    the teacher's cached logits for exactly that view; the teacher itself is never called.
    Without it, fresh random views are drawn (how the teacher itself is trained).
    """
    loss = loss or get_loss("ce")
    if loss.needs_teacher and views is None:
        raise ValueError(f"loss {loss.name!r} needs cached teacher outputs")
    params = dict(loss_params or {})
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    n = len(train)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    opt = _optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.15
    )
    history = []
    model.train()
    for epoch in range(cfg.epochs):
        sums: dict[str, float] = {}
        order = torch.randperm(n, generator=gen)
        which_view = (
            torch.randint(0, views.count, (n,), generator=gen) if views is not None else None
        )
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            if views is not None:
                v = which_view[idx]
                view_params = views.params[v, idx]
                teacher = views.logits[v, idx]
            else:
                view_params = aug.sample(len(idx), gen)
                teacher = None
            x = normalize(aug.apply(train.images[idx], view_params), *stats)
            parts = loss.fn(model(x), teacher, train.labels[idx], **params)
            value = total(parts)
            if not torch.isfinite(value):
                raise TrainingDiverged(f"loss became {value.item()} in epoch {epoch + 1}")
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
            sched.step()
            for k, t in parts.items():
                sums[k] = sums.get(k, 0.0) + t.item() * len(idx)
        epoch_stats = {k: s / n for k, s in sums.items()}
        history.append(epoch_stats)
        if on_epoch is not None:
            on_epoch(epoch, epoch_stats)
    return history


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on norms and biases: decaying them only hurts small models.
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


@torch.inference_mode()
def predict(model: nn.Module, images: Tensor, stats: Stats, batch_size: int = 500) -> Tensor:
    """Logits for uint8 images, in eval mode."""
    was_training = model.training
    model.eval()
    out = [
        model(normalize(images[i : i + batch_size], *stats))
        for i in range(0, len(images), batch_size)
    ]
    model.train(was_training)
    return torch.cat(out)


def evaluate(model: nn.Module, split: ImageSet, stats: Stats) -> float:
    """Top-1 accuracy (0..1) on a split."""
    logits = predict(model, split.images, stats)
    return float((logits.argmax(1) == split.labels).float().mean())
