"""Data: in-memory uint8 datasets with fixed splits, and batched, replayable augmentation."""

from __future__ import annotations

from autodistill.data.augment import Augmentation, default_augmentation, normalize
from autodistill.data.sources import available_datasets, load_dataset
from autodistill.data.splits import DatasetSplits, ImageSet

__all__ = [
    "Augmentation",
    "DatasetSplits",
    "ImageSet",
    "available_datasets",
    "default_augmentation",
    "load_dataset",
    "normalize",
]
