"""Batched, replayable augmentation: each view is stored as (dx, dy, flip) per image."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Augmentation:
    """Random translation by up to ``shift`` pixels (zero fill) and optional horizontal flip.

    Parameters are sampled once and stored, so the teacher's cached view and the student's
    training view are the same pixels.
    """

    shift: int
    flip: bool

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``[n, 3]`` int8 view parameters (dx, dy, flip)."""
        params = torch.zeros(n, 3, dtype=torch.int8)
        if self.shift:
            params[:, :2] = torch.randint(
                -self.shift, self.shift + 1, (n, 2), generator=generator, dtype=torch.int8
            )
        if self.flip:
            params[:, 2] = torch.randint(0, 2, (n,), generator=generator, dtype=torch.int8)
        return params

    def apply(self, images: Tensor, params: Tensor) -> Tensor:
        """The views of a uint8 ``[B, C, H, W]`` batch under ``[B, 3]`` parameters."""
        if self.shift:
            images = _translate(images, params[:, 0].long(), params[:, 1].long(), self.shift)
        if self.flip:
            flip = params[:, 2].to(images.device).bool().view(-1, 1, 1, 1)
            images = torch.where(flip, images.flip(-1), images)
        return images

    def to_dict(self) -> dict[str, int | bool]:
        return {"shift": self.shift, "flip": self.flip}


def _translate(images: Tensor, dx: Tensor, dy: Tensor, pad: int) -> Tensor:
    b, c, h, w = images.shape
    device = images.device  # on the images' device: a GPU augments its own batches
    dx, dy = dx.to(device), dy.to(device)
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    rows = torch.arange(h, device=device).view(1, h) + pad - dy.view(b, 1)  # [B, H]
    cols = torch.arange(w, device=device).view(1, w) + pad - dx.view(b, 1)  # [B, W]
    batch = torch.arange(b, device=device).view(b, 1, 1)
    out = padded.permute(0, 2, 3, 1)[batch, rows.view(b, h, 1), cols.view(b, 1, w)]
    # A copy in NCHW with real strides: for C = 1, .contiguous() would keep the permuted
    # strides, which convolutions read as NHWC (see autodistill.layout).
    return out.permute(0, 3, 1, 2).clone(memory_format=torch.contiguous_format)


def default_augmentation(dataset: str, image_size: int) -> Augmentation:
    """What suits the data: digits must not be mirrored; natural images may be."""
    mirrorable = dataset in {"cifar10", "cifar100", "fashion-mnist"} or dataset.startswith(
        "imagefolder"
    )
    return Augmentation(shift=max(1, image_size // 8), flip=mirrorable)


def normalize(images: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """uint8 images to float, standardised per channel, on the images' device."""
    return Normalizer(mean, std, images.device)(images)


class Normalizer:
    """``normalize`` with its constants made once on ``device``: a training step on a GPU
    copies nothing from the host."""

    def __init__(
        self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device | str = "cpu"
    ) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255

    def __call__(self, images: Tensor) -> Tensor:
        return (images.float() - self.mean) / self.std
