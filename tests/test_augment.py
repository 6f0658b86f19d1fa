"""Augmentation: batched views equal the per-image definition and replay exactly from params."""

from __future__ import annotations

import torch

from autodistill.data.augment import Augmentation, default_augmentation


def _one(image: torch.Tensor, dx: int, dy: int, flip: bool, pad: int) -> torch.Tensor:
    padded = torch.nn.functional.pad(image, (pad,) * 4)
    h, w = image.shape[-2:]
    out = padded[:, pad - dy : pad - dy + h, pad - dx : pad - dx + w]
    return out.flip(-1) if flip else out


def test_batched_views_match_the_per_image_definition():
    aug = Augmentation(shift=3, flip=True)
    images = torch.randint(0, 256, (16, 3, 9, 9), dtype=torch.uint8)
    params = aug.sample(16, torch.Generator().manual_seed(0))
    out = aug.apply(images, params)
    for i in range(16):
        dx, dy, flip = params[i].tolist()
        assert torch.equal(out[i], _one(images[i], dx, dy, bool(flip), 3))
    assert params[:, :2].abs().max() <= 3 and params[:, :2].abs().max() > 0


def test_shift_moves_content_and_zero_params_are_the_identity():
    aug = Augmentation(shift=2, flip=False)
    image = torch.zeros(1, 1, 5, 5, dtype=torch.uint8)
    image[0, 0, 2, 2] = 255
    moved = aug.apply(image, torch.tensor([[1, -1, 0]], dtype=torch.int8))
    assert moved[0, 0, 1, 3] == 255 and moved.sum() == 255
    assert torch.equal(aug.apply(image, torch.zeros(1, 3, dtype=torch.int8)), image)


def test_digits_are_never_mirrored_but_natural_images_may_be():
    assert not default_augmentation("mnist5k", 28).flip
    assert default_augmentation("cifar10", 32).flip
