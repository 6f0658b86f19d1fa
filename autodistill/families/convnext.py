"""ConvNeXt students: timm's ConvNeXt with a small patch stem for small inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from timm.models.convnext import ConvNeXt
from torch import nn

from autodistill.domain import integer
from autodistill.families.registry import (
    InputSpec,
    register_family,
    stage_list,
    stage_widths,
    width_text,
)


def _describe(a: Mapping[str, Any]) -> str:
    depths = stage_list(a["depths"], 4)
    w = width_text(a["width"])
    return f"convnext p{a['patch_size']} d{'-'.join(map(str, depths))} w{w} k{a['kernel']}"


@register_family(
    "convnext",
    params={
        "patch_size": integer(1, 32),
        "depths": integer(1, 64),
        "width": integer(1, 2048),
        "kernel": integer(1, 31),
    },
    describe=_describe,
)
def build_convnext(a: Mapping[str, Any], spec: InputSpec) -> nn.Module:
    """timm ConvNeXt: four stages of depth ``depths[i]``; ``width`` per stage or doubling."""
    return ConvNeXt(
        in_chans=spec.in_chans,
        num_classes=spec.num_classes,
        depths=tuple(int(d) for d in stage_list(a["depths"], 4)),
        dims=tuple(stage_widths(a["width"], 4)),
        kernel_sizes=int(a["kernel"]),
        patch_size=int(a["patch_size"]),
    )
