"""Adversarial distillation: a discriminator tells teacher from student outputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autodistill.domain import NON_NEGATIVE, TEMPERATURE
from autodistill.losses.logit import kl_soft
from autodistill.losses.registry import Dims, Outputs, register_loss


def _discriminator(dims: Dims, params: Mapping[str, Any]) -> dict[str, nn.Module]:
    hidden = max(16, 4 * dims.num_classes)
    return {
        "disc": nn.Sequential(
            nn.Linear(dims.num_classes, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1)
        )
    }


def _soft(logits: Tensor, temperature: float) -> Tensor:
    # The discriminator sees log-probabilities: invariant to a constant added to the logits.
    return F.log_softmax(logits.float() / temperature, dim=1)


def discriminator_loss(disc: nn.Module, student: Tensor, teacher: Tensor, t: float) -> Tensor:
    """Binary cross-entropy of the discriminator: teacher outputs are real (1), students fake."""
    real = disc(_soft(teacher, t))
    fake = disc(_soft(student, t))
    return F.binary_cross_entropy_with_logits(
        real, torch.ones_like(real)
    ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))


def _update(
    out: Outputs,
    modules: Mapping[str, nn.Module],
    *,
    weight: float,
    temperature: float,
    alpha: float,
) -> dict[str, Tensor]:
    return {
        "disc": discriminator_loss(
            modules["disc"], out.student["logits"], out.teacher["logits"], temperature
        )
    }


@register_loss(
    "adversarial",
    defaults={"weight": 0.1, "temperature": 4.0, "alpha": 0.5},
    domains={"weight": NON_NEGATIVE, "temperature": TEMPERATURE, "alpha": NON_NEGATIVE},
    aux_modules=_discriminator,
    update=_update,
)
def adversarial_loss(
    out: Outputs,
    modules: Mapping[str, nn.Module],
    *,
    weight: float,
    temperature: float,
    alpha: float,
) -> dict[str, Tensor]:
    """Adversarial KD, after Xu et al. 2018, "Training Shallow and Thin Networks for Acceleration
    via Knowledge Distillation with Conditional Adversarial Networks" and Wang et al. 2018 (KDGAN).

    Student: L = CE(s, y) + alpha * T^2 * KL(p_t || p_s) + weight * BCE(D(p_s), real);
    the discriminator D is trained alternately, after each student step, on
    BCE(D(p_t), real) + BCE(D(p_s), fake).
    """
    t = float(temperature)
    fooled = modules["disc"](_soft(out.student["logits"], t))
    return {
        "ce": F.cross_entropy(out.student["logits"], out.targets),
        "kd": alpha * t * t * kl_soft(out.student["logits"], out.teacher["logits"], t),
        "adv": weight * F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled)),
    }
