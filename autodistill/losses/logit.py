"""Losses on logits alone: cross-entropy, KD (Hinton), DKD (decoupled KD) and DIST."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autodistill.domain import FRACTION, NON_NEGATIVE, TEMPERATURE
from autodistill.losses.registry import Outputs, register_loss


def kl_soft(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """KL(softmax(t / T) || softmax(s / T)), averaged over the batch."""
    log_s = F.log_softmax(student / temperature, dim=1)
    log_t = F.log_softmax(teacher.float() / temperature, dim=1)
    return F.kl_div(log_s, log_t, reduction="batchmean", log_target=True)


def dkd_terms(student: Tensor, teacher: Tensor, targets: Tensor, temperature: float):
    """The two halves of KD that DKD decouples (Zhao et al., CVPR 2022).

    TCKD = KL(b_t || b_s) with b = [p_y, 1 - p_y], the binary target-vs-rest probabilities;
    NCKD = KL(q_t || q_s) with q the softmax over the non-target classes only.
    Both at temperature T. Returns (TCKD, NCKD), each averaged over the batch.
    """
    t = temperature
    mask = F.one_hot(targets, student.shape[1]).bool()
    p_s = F.softmax(student / t, dim=1)
    p_t = F.softmax(teacher.float() / t, dim=1)
    # gather, not p[mask]: indexing by a mask makes the host wait for the GPU.
    p_y_s = p_s.gather(1, targets[:, None]).squeeze(1)
    p_y_t = p_t.gather(1, targets[:, None]).squeeze(1)
    b_s = torch.stack([p_y_s, 1 - p_y_s], dim=1).clamp_min(1e-8)
    b_t = torch.stack([p_y_t, 1 - p_y_t], dim=1).clamp_min(1e-8)
    tckd = (b_t * (b_t.log() - b_s.log())).sum(1).mean()
    # Removing the target logit before the softmax gives the non-target distribution exactly.
    log_q_s = F.log_softmax(student / t - 1e4 * mask, dim=1)
    log_q_t = F.log_softmax(teacher.float() / t - 1e4 * mask, dim=1)
    nckd = (log_q_t.exp() * (log_q_t - log_q_s)).masked_fill(mask, 0).sum(1).mean()
    return tckd, nckd


def pearson_rows(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """Pearson correlation between matching rows of ``a`` and ``b``."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_terms(student: Tensor, teacher: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """DIST's relations (Huang et al., NeurIPS 2022), on probabilities at temperature T.

    inter = 1 - mean_i pearson(p_s[i, :], p_t[i, :])  (each sample's class ranking)
    intra = 1 - mean_c pearson(p_s[:, c], p_t[:, c])  (each class's ranking of the samples)
    """
    p_s = F.softmax(student / temperature, dim=1)
    p_t = F.softmax(teacher.float() / temperature, dim=1)
    inter = 1 - pearson_rows(p_s, p_t).mean()
    intra = 1 - pearson_rows(p_s.t(), p_t.t()).mean()
    return inter, intra


@register_loss("ce", needs=())
def ce_loss(out: Outputs, modules: Mapping[str, nn.Module]) -> dict[str, Tensor]:
    """Cross-entropy on the labels alone: the no-teacher baseline."""
    return {"ce": F.cross_entropy(out.student["logits"], out.targets)}


@register_loss(
    "kd",
    defaults={"temperature": 4.0, "alpha": 0.9},
    domains={"temperature": TEMPERATURE, "alpha": FRACTION},  # alpha mixes CE and KD
)
def kd_loss(
    out: Outputs, modules: Mapping[str, nn.Module], *, temperature: float, alpha: float
) -> dict[str, Tensor]:
    """KD, Hinton et al. 2015, "Distilling the Knowledge in a Neural Network".

    L = (1 - alpha) * CE(s, y) + alpha * T^2 * KL(softmax(t / T) || softmax(s / T)).
    The T^2 factor keeps the soft-target gradients on the scale of the hard-label ones.
    """
    t = float(temperature)
    return {
        "ce": (1.0 - alpha) * F.cross_entropy(out.student["logits"], out.targets),
        "kd": alpha * t * t * kl_soft(out.student["logits"], out.teacher["logits"], t),
    }


@register_loss(
    "dkd",
    defaults={"temperature": 4.0, "alpha": 1.0, "beta": 8.0, "warmup": 0.1},
    domains={
        "temperature": TEMPERATURE,
        "alpha": NON_NEGATIVE,
        "beta": NON_NEGATIVE,
        "warmup": FRACTION,
    },
)
def dkd_loss(
    out: Outputs,
    modules: Mapping[str, nn.Module],
    *,
    temperature: float,
    alpha: float,
    beta: float,
    warmup: float,
) -> dict[str, Tensor]:
    """DKD, Zhao et al. 2022, "Decoupled Knowledge Distillation".

    L = CE(s, y) + w * T^2 * (alpha * TCKD + beta * NCKD), with w rising linearly from 0 to 1
    over the first ``warmup`` fraction of training (the paper: 20 of 240 epochs); KD is the
    special case where NCKD is weighted by (1 - p_t,y). Defaults alpha = 1, beta = 8, T = 4
    and warm-up 0.1 follow the paper's CIFAR-100 setting.
    """
    t = float(temperature)
    ramp = min(out.progress / warmup, 1.0) if warmup > 0 else 1.0
    tckd, nckd = dkd_terms(out.student["logits"], out.teacher["logits"], out.targets, t)
    return {
        "ce": F.cross_entropy(out.student["logits"], out.targets),
        "tckd": ramp * alpha * t * t * tckd,
        "nckd": ramp * beta * t * t * nckd,
    }


@register_loss(
    "dist",
    defaults={"temperature": 1.0, "beta": 1.0, "gamma": 1.0},
    domains={"temperature": TEMPERATURE, "beta": NON_NEGATIVE, "gamma": NON_NEGATIVE},
)
def dist_loss(
    out: Outputs,
    modules: Mapping[str, nn.Module],
    *,
    temperature: float,
    beta: float,
    gamma: float,
) -> dict[str, Tensor]:
    """DIST, Huang et al. 2022, "Knowledge Distillation from A Stronger Teacher".

    L = CE(s, y) + T^2 * (beta * inter + gamma * intra), matching correlations rather than
    exact probabilities, which tolerates a large teacher-student gap.
    """
    t = float(temperature)
    inter, intra = dist_terms(out.student["logits"], out.teacher["logits"], t)
    return {
        "ce": F.cross_entropy(out.student["logits"], out.targets),
        "inter": beta * t * t * inter,
        "intra": gamma * t * t * intra,
    }
