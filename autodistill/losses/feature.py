"""Losses on intermediate representations: FitNets hints and attention transfer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from autodistill.domain import NON_NEGATIVE
from autodistill.losses.registry import Dims, Outputs, register_loss


def attention_distance(student_maps: Tensor, teacher_maps: Tensor) -> Tensor:
    """Squared distance between normalised maps, averaged over the batch and the map's elements
    (the paper's beta is 1000 divided by both), summed over the matched stages.

    With ``K_s`` student stages and ``K_t`` teacher stages, the student's deepest stages are
    matched to the teacher's deepest ones.
    """
    k = min(student_maps.shape[1], teacher_maps.shape[1])
    diff = student_maps[:, -k:] - teacher_maps[:, -k:].float()
    return diff.pow(2).mean(dim=(0, 2)).sum()


def _projection(dims: Dims, params: Mapping[str, Any]) -> dict[str, nn.Module]:
    return {"proj": nn.Linear(dims.student_features, dims.teacher_features)}


@register_loss(
    "hint",
    defaults={"weight": 1.0},
    domains={"weight": NON_NEGATIVE},
    needs=("logits", "features"),
    modules=_projection,
)
def hint_loss(
    out: Outputs, modules: Mapping[str, nn.Module], *, weight: float
) -> dict[str, Tensor]:
    """FitNets hints, Romero et al. 2015, "FitNets: Hints for Thin Deep Nets".

    L = CE(s, y) + weight * || W f_s - f_t ||^2 / D_t, with f the pooled pre-logit features and
    W a learned linear projection from the student's width to the teacher's, trained jointly
    (one stage, rather than the paper's separate hint pre-training).
    """
    projected = modules["proj"](out.student["features"])
    return {
        "ce": F.cross_entropy(out.student["logits"], out.targets),
        "hint": weight * F.mse_loss(projected, out.teacher["features"].float()),
    }


@register_loss(
    "at",
    defaults={"weight": 1000.0},
    domains={"weight": NON_NEGATIVE},
    needs=("logits", "attention"),
)
def at_loss(out: Outputs, modules: Mapping[str, nn.Module], *, weight: float) -> dict[str, Tensor]:
    """Attention transfer, Zagoruyko & Komodakis 2017, "Paying More Attention to Attention".

    L = CE(s, y) + weight / 2 * sum_j mean_{b,i} (Q_s^j / ||Q_s^j|| - Q_t^j / ||Q_t^j||)^2 over
    the matched stages j, batch b and map elements i: the paper's beta = 1000 divided by the
    map size and batch size (mdistiller's normalisation too).
    """
    return {
        "ce": F.cross_entropy(out.student["logits"], out.targets),
        "at": weight / 2 * attention_distance(out.student["attention"], out.teacher["attention"]),
    }
