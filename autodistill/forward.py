"""Run a timm model for what distillation reads: its outputs by name (logits, features, attention).

Teacher (for the cache) and student (in training) go through the same function, so their
features and maps are defined identically, and one name follows each output from here through
the cache to the losses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# logits [B, C]; features: pooled pre-logit features [B, D]; attention: per-stage attention maps
# [B, K, r*r], L2-normalised, deepest last.
OUTPUT_KINDS = ("logits", "features", "attention")
ATTENTION_STAGES = 3  # the deepest stages whose attention maps are matched

Named = dict[str, Tensor]


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


def forward_outputs(
    model: nn.Module, x: Tensor, kinds: frozenset[str] | set[str] | tuple[str, ...], size: int = 0
) -> Named:
    """The model's outputs of ``kinds`` (logits always), by name; ``size`` is the attention grid.

    Uses timm's ``forward_intermediates`` / ``forward_head(pre_logits=True)`` /
    ``get_classifier`` so it works for every timm family; plain ``model(x)`` when only logits
    are wanted. A model that names its own outputs (a teacher the user gave,
    ``teacher_input.AdaptedTeacher``) is asked for them.
    """
    unknown = set(kinds) - set(OUTPUT_KINDS)
    if unknown:
        raise ValueError(f"unknown output kinds {sorted(unknown)}; known: {OUTPUT_KINDS}")
    if not (set(kinds) - {"logits"}):
        return {"logits": model(x)}
    named = getattr(model, "named_outputs", None)
    if callable(named):
        return named(x, kinds, size)
    out: Named = {}
    if "attention" in kinds:
        k = min(ATTENTION_STAGES, len(model.feature_info))
        final, stages = model.forward_intermediates(x, indices=k)
        out["attention"] = torch.stack([attention_map(f, size) for f in stages], dim=1)
    else:
        final = model.forward_features(x)
    pooled = model.forward_head(final, pre_logits=True)
    out["logits"] = model.get_classifier()(pooled)
    if "features" in kinds:
        out["features"] = pooled
    return out
