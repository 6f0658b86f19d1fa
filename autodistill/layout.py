"""The memory layout of what enters a model: batches with real strides, and NHWC only where safe.

A batch whose channel dimension has size 1 (a grayscale image) has ambiguous strides: a permuted
view such as ``(H*W, 1, W, 1)`` counts as contiguous *and* as channels_last, ``.contiguous()``
keeps it as it is, and a convolution then reads it as NHWC and runs the whole network so. Every
batch is therefore given the strides its memory format really has before a model sees it.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)
# oneDNN's 1x1 strided convolution with NHWC input and fewer than this many input channels
# writes past its scratch buffer when it computes the weight gradient (the ``jit_1x1``
# backward-weights kernel and its ``rtus`` workspace, in the torch 2.x CPU builds): heap
# corruption, "free(): invalid next size", a segmentation fault. NCHW takes another kernel.
ONEDNN_NHWC_MIN_CHANNELS = 16


def in_layout(x: Tensor, memory_format: torch.memory_format) -> Tensor:
    """``x`` with exactly the strides ``memory_format`` gives its shape (copied only when they
    differ), so no operator can take it for the other layout."""
    if x.dim() != 4 or x.stride() == _strides(tuple(x.shape), memory_format):
        return x
    return x.clone(memory_format=memory_format)


def _strides(shape: tuple[int, ...], memory_format: torch.memory_format) -> tuple[int, ...]:
    _, c, h, w = shape
    if memory_format == torch.channels_last:
        return (h * w * c, 1, w * c, c)
    return (c * h * w, h * w, w, 1)


def training_format(
    model: nn.Module, device: torch.device, channels_last: bool
) -> torch.memory_format:
    """The memory format ``model`` trains in on ``device``: NHWC when its family asks for it,
    except on the CPU for a model with a layer that meets oneDNN's defect (above)."""
    if not channels_last:
        return torch.contiguous_format
    if device.type == "cpu":
        risky = [m for m in model.modules() if _hits_onednn_defect(m)]
        if risky:
            log.info(
                "training in NCHW, not NHWC: %d 1x1 strided convolution(s) with fewer than "
                "%d input channels would corrupt oneDNN's heap in backward",
                len(risky),
                ONEDNN_NHWC_MIN_CHANNELS,
            )
            return torch.contiguous_format
    return torch.channels_last


def _hits_onednn_defect(module: nn.Module) -> bool:
    if not isinstance(module, nn.Conv2d):
        return False
    one_by_one = tuple(module.kernel_size) == (1, 1)
    strided = any(s > 1 for s in module.stride)
    return one_by_one and strided and module.in_channels < ONEDNN_NHWC_MIN_CHANNELS
