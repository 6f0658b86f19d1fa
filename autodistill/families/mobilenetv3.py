"""MobileNetV3 students: timm's MobileNetV3 built from an arch string with searched blocks."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from timm.models._efficientnet_builder import decode_arch_def, round_channels
from timm.models.mobilenetv3 import MobileNetV3
from torch import nn

from autodistill.domain import integer, real
from autodistill.families.registry import InputSpec, register_family, stage_list

# Channels of the inverted-residual stages at width 1.0 (MobileNetV3-Small's progression).
_STAGE_CHANNELS = (24, 40, 48, 96)


def _arch_def(a: Mapping[str, Any]) -> list[list[str]]:
    n = int(a["stages"])
    depths = stage_list(a["depths"], n)
    kernels = stage_list(a["kernels"], n)
    expansions = stage_list(a["expansions"], n)
    arch = [["ds_r1_k3_s1_e1_c16_nre"]]
    for i in range(n):
        act = "_nre" if i == 0 else ""  # ReLU early, hard-swish later, as in MobileNetV3.
        se = "_se0.25" if i > 0 else ""
        arch.append(
            [f"ir_r{depths[i]}_k{kernels[i]}_s2_e{expansions[i]}_c{_STAGE_CHANNELS[i]}{se}{act}"]
        )
    return arch


def _describe(a: Mapping[str, Any]) -> str:
    n = int(a["stages"])
    blocks = "-".join(
        f"{d}k{k}e{e}"
        for d, k, e in zip(
            stage_list(a["depths"], n),
            stage_list(a["kernels"], n),
            stage_list(a["expansions"], n),
            strict=True,
        )
    )
    return f"mbv3 s{a['stem_stride']} x{float(a['width']):.2f} {blocks} h{a['head']}"


@register_family(
    "mobilenetv3",
    params={
        "stem_stride": integer(1, 4),
        "width": real(0.0, 8.0, above=True),  # channel multiplier
        "stages": integer(1, len(_STAGE_CHANNELS)),
        "depths": integer(1, 16),
        "kernels": integer(1, 15),
        "expansions": real(1.0, 16.0),
        "head": integer(1, 8192),
    },
    describe=_describe,
)
def build_mobilenetv3(a: Mapping[str, Any], spec: InputSpec) -> nn.Module:
    """timm MobileNetV3: inverted residuals with per-stage depth, kernel and expansion."""
    model = MobileNetV3(
        block_args=decode_arch_def(_arch_def(a)),
        in_chans=spec.in_chans,
        num_classes=spec.num_classes,
        stem_size=16,
        num_features=int(a["head"]),
        round_chs_fn=partial(round_channels, multiplier=float(a["width"]), divisor=8),
        act_layer=nn.Hardswish,
    )
    # timm hard-codes a stride-2 stem; small inputs need the resolution.
    model.conv_stem.stride = (int(a["stem_stride"]),) * 2
    return model
