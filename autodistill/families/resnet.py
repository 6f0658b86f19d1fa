"""ResNet students: timm's ResNet with BasicBlocks and a single 3x3 stem for small inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from timm.models.resnet import BasicBlock, ResNet
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
    return f"resnet s{a['stem_stride']} d{'-'.join(map(str, depths))} w{width_text(a['width'])}"


@register_family(
    "resnet",
    params={"stem_stride": integer(1, 4), "depths": integer(1, 64), "width": integer(1, 2048)},
    describe=_describe,
)
def build_resnet(a: Mapping[str, Any], spec: InputSpec) -> nn.Module:
    """timm ResNet (BasicBlock): 4 stages, ``depths[i]`` blocks; ``width`` per stage or doubling."""
    n = 4  # timm's ResNet.forward_features calls layer1..layer4 by name.
    widths = stage_widths(a["width"], n)
    width = widths[0]
    model = ResNet(
        block=BasicBlock,
        layers=[int(d) for d in stage_list(a["depths"], n)],
        channels=widths,
        in_chans=spec.in_chans,
        num_classes=spec.num_classes,
        # A deep stem makes timm size the stem to 2 * stem_width; we then swap it for one conv.
        stem_type="deep",
        stem_width=width // 2,
    )
    # timm's stem downsamples 4x (7x7 s2 conv + max pool), far too much for 28 px images.
    stem = model.bn1.num_features  # 2 * (width // 2)
    model.conv1 = nn.Conv2d(spec.in_chans, stem, 3, int(a["stem_stride"]), 1, bias=False)
    model.maxpool = nn.Identity()
    return model
