"""Run a timm model for what distillation reads: logits, pooled features and attention maps.

Teacher (for the cache) and student (in training) go through the same function, so their
features and maps are defined identically.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ATTENTION_STAGES = 3  # the deepest stages whose attention maps are matched


def map_size(image_size: int) -> int:
    """Side of the common grid that attention maps are resized to."""
    return max(2, image_size // 4)


def attention_map(feature: Tensor, size: int) -> Tensor:
    """Attention transfer's spatial map of one stage, ``[B, size * size]``, L2-normalised.

    Q = mean_c A_c^2 (Zagoruyko & Komodakis 2017, p = 2), resized to ``size`` x ``size`` so
    that stages of different resolution (and teacher and student) can be compared.
    """
    q = feature.float().pow(2).mean(1, keepdim=True)
    if q.shape[-1] != size or q.shape[-2] != size:
        q = F.interpolate(q, size=(size, size), mode="bilinear", align_corners=False)
    return F.normalize(q.flatten(1), dim=1)


def forward_parts(
    model: nn.Module, x: Tensor, *, features: bool = False, maps: bool = False, size: int = 0
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """(logits, pooled pre-logit features or None, attention maps ``[B, K, size*size]`` or None).

    Uses timm's ``forward_intermediates`` / ``forward_head(pre_logits=True)`` /
    ``get_classifier`` so it works for every timm family; plain ``model(x)`` when only logits
    are wanted.
    """
    if not (features or maps):
        return model(x), None, None
    stacked = None
    if maps:
        k = min(ATTENTION_STAGES, len(model.feature_info))
        final, stages = model.forward_intermediates(x, indices=k)
        stacked = torch.stack([attention_map(f, size) for f in stages], dim=1)
    else:
        final = model.forward_features(x)
    pooled = model.forward_head(final, pre_logits=True)
    logits = model.get_classifier()(pooled)
    return logits, (pooled if features else None), stacked
