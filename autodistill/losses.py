"""Registry of distillation losses: pure functions returning named, already-weighted parts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from autodistill.errors import UserError

LossFn = Callable[..., dict[str, Tensor]]


@dataclass(frozen=True)
class Loss:
    """A loss: its hyperparameter names, whether it reads the teacher, and the function."""

    name: str
    params: tuple[str, ...]
    needs_teacher: bool
    fn: LossFn
    doc: str


LOSSES: dict[str, Loss] = {}


def register_loss(
    name: str, *, params: tuple[str, ...] = (), needs_teacher: bool = True
) -> Callable[[LossFn], LossFn]:
    """Register ``fn(student_logits, teacher_logits, targets, **params) -> parts``."""

    def wrap(fn: LossFn) -> LossFn:
        if name in LOSSES:
            raise ValueError(f"loss {name!r} registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()[0]
        LOSSES[name] = Loss(name, params, needs_teacher, fn, doc)
        return fn

    return wrap


def get_loss(name: str) -> Loss:
    """The loss called ``name``, or a UserError that lists the known ones."""
    try:
        return LOSSES[name]
    except KeyError:
        raise UserError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}") from None


@register_loss("ce", needs_teacher=False)
def ce_loss(student: Tensor, teacher: Tensor | None, targets: Tensor) -> dict[str, Tensor]:
    """Cross-entropy on the labels alone: the no-teacher baseline."""
    return {"ce": F.cross_entropy(student, targets)}


@register_loss("kd", params=("temperature", "alpha"))
def kd_loss(
    student: Tensor, teacher: Tensor, targets: Tensor, *, temperature: float, alpha: float
) -> dict[str, Tensor]:
    """Hinton et al. 2015, "Distilling the Knowledge in a Neural Network".

    L = (1 - alpha) * CE(s, y) + alpha * T^2 * KL(softmax(t / T) || softmax(s / T)).
    The T^2 factor keeps the soft-target gradients on the scale of the hard-label ones.
    """
    t = float(temperature)
    log_p_student = F.log_softmax(student / t, dim=1)
    log_p_teacher = F.log_softmax(teacher.float() / t, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return {
        "ce": (1.0 - alpha) * F.cross_entropy(student, targets),
        "kd": alpha * t * t * kl,
    }


def total(parts: dict[str, Tensor]) -> Tensor:
    """The sum of a loss's parts (what the trainer back-propagates)."""
    return torch.stack(list(parts.values())).sum()
