"""Images brought to another square size, the one way everywhere: a folder read at a size, a
student that sees the data at its own resolution, a teacher shown the data at its own."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def resize(images: Tensor, size: int, *, antialias: bool | None = None) -> Tensor:
    """``[B, C, H, W]`` images at ``size`` x ``size``: bilinear, antialiased when shrinking
    (unless ``antialias`` says otherwise); uint8 images stay uint8 (rounded), in chunks so
    float copies of a large set never sit in memory at once. Itself if already that size."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    smooth = images.shape[-1] > size if antialias is None else antialias

    def one(x: Tensor) -> Tensor:
        out = F.interpolate(
            x.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=smooth
        )
        if images.dtype == torch.uint8:
            return out.round_().clamp_(0, 255).to(torch.uint8)
        return out

    if images.dtype != torch.uint8:
        return one(images)
    return torch.cat([one(c) for c in images.split(4096)])
