"""ViT students: timm's VisionTransformer sized for small images."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from timm.models.vision_transformer import VisionTransformer
from torch import nn

from autodistill.domain import integer, real
from autodistill.families.registry import InfeasibleArchitecture, InputSpec, register_family


def _describe(a: Mapping[str, Any]) -> str:
    dim = int(a["heads"]) * int(a["head_dim"])
    return f"vit p{a['patch_size']} d{a['depth']} e{dim} h{a['heads']} m{a['mlp_ratio']}"


@register_family(
    "vit",
    params={
        "patch_size": integer(1, 64),
        "depth": integer(1, 48),
        "heads": integer(1, 64),
        "head_dim": integer(1, 512),
        "mlp_ratio": real(0.0, 16.0, above=True),
    },
    describe=_describe,
)
def build_vit(a: Mapping[str, Any], spec: InputSpec) -> nn.Module:
    """timm VisionTransformer: embed dim = heads * head_dim, mean-pooled tokens."""
    patch = int(a["patch_size"])
    if spec.image_size % patch:
        # timm would silently drop the border pixels; that is not the model the user asked for.
        raise InfeasibleArchitecture(
            f"patch size {patch} does not divide the {spec.image_size}px input"
        )
    heads = int(a["heads"])
    return VisionTransformer(
        img_size=spec.image_size,
        patch_size=patch,
        in_chans=spec.in_chans,
        num_classes=spec.num_classes,
        embed_dim=heads * int(a["head_dim"]),
        depth=int(a["depth"]),
        num_heads=heads,
        mlp_ratio=float(a["mlp_ratio"]),
        global_pool="avg",
        class_token=False,
    )
