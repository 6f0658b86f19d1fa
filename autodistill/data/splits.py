"""Image datasets held in memory as uint8 tensors, split into train / validation / test."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import torch

from autodistill.data.resize import resize


@dataclass(frozen=True)
class ImageSet:
    """One split: images as uint8 ``[N, C, H, W]`` and labels as int64 ``[N]``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 [N, C, H, W], got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must be int64 [N] matching the images")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> ImageSet:
        """This split with its images and labels on ``device`` (itself if they are there)."""
        return ImageSet(self.images.to(device), self.labels.to(device))

    def chance_accuracy(self) -> float:
        """The accuracy of always answering the most frequent class: what learning nothing gets."""
        if not len(self):
            return 0.0
        return float(torch.bincount(self.labels).max()) / len(self)


@dataclass(frozen=True)
class DatasetSplits:
    """A dataset ready for search: fixed splits plus what the models need to know about it.

    The search selects on ``val`` only; ``test`` is kept for the final report of a trained student.
    """

    name: str
    train: ImageSet
    val: ImageSet
    test: ImageSet
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[-1])

    @cached_property
    def stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the train split, on the 0..1 scale (computed once)."""
        x = self.train.images.float().div_(255)
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
        return tuple(mean.tolist()), tuple(std.tolist())

    def calibration(self, n: int = 256) -> np.ndarray:
        """The first ``n`` training images, normalised, as an int8 recipe calibrates its
        activation ranges on them (never validation or test images)."""
        from autodistill.data.augment import normalize

        return normalize(self.train.images[:n].cpu(), *self.stats).numpy()

    def subset_index(self, size: float, seed: int) -> torch.Tensor:
        """Indices of a stratified subset of the training split, sorted: ``size`` a fraction
        of each class (0 < size < 1) or a count of images (at least one per class kept)."""
        from sklearn.model_selection import train_test_split

        labels = self.train.labels.cpu().numpy()
        n = len(labels)
        count = round(size * n) if size < 1 else int(size)
        count = max(self.num_classes, min(count, n))
        if count >= n:
            return torch.arange(n)
        keep, _ = train_test_split(
            np.arange(n), train_size=count, stratify=labels, random_state=seed
        )
        return torch.from_numpy(np.sort(keep))

    def with_train_subset(self, index: torch.Tensor) -> DatasetSplits:
        """These splits with only the training images at ``index`` (validation and test, and
        the statistics of the whole training split, unchanged)."""
        stats = self.stats
        index = index.to(self.train.images.device)
        subset = replace(self, train=ImageSet(self.train.images[index], self.train.labels[index]))
        subset.__dict__["stats"] = stats
        return subset

    def at_size(self, size: int) -> DatasetSplits:
        """These splits as a student of ``size`` px sees them (``data.resize``; made once per
        size, itself at its own size). The statistics stay those of the images as read, so a
        student normalises as it did in training, where its views were resized after
        normalising (both are linear: the same pixels, up to uint8 rounding)."""
        if size == self.image_size:
            return self
        sized: dict[int, DatasetSplits] = self.__dict__.setdefault("_sized", {})
        if size not in sized:
            stats = self.stats
            sets = {
                k: ImageSet(resize(getattr(self, k).images, size), getattr(self, k).labels)
                for k in ("train", "val", "test")
            }
            sized[size] = replace(self, **sets)
            sized[size].__dict__["stats"] = stats
        return sized[size]

    def with_train_on(self, device: torch.device | str) -> DatasetSplits:
        """These splits with the training images and labels on ``device``, where a worker's
        trials train: moved once per worker, so each ``fit`` finds them there. Validation and
        test stay where they are (scored in batches). The statistics are those of the same
        images, computed before the move."""
        stats = self.stats
        moved = replace(self, train=self.train.to(device))
        moved.__dict__["stats"] = stats  # the cached_property, filled
        return moved
