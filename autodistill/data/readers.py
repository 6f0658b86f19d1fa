"""Reading the files datasets come in: IDX (MNIST), CIFAR pickles through an unpickler that
builds arrays only, and folders of image files, each decoded once; a file that cannot be read
is one line naming it."""

from __future__ import annotations

import gzip
import pickle
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from autodistill.errors import UserError
from autodistill.progress import Progress

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})


def unreadable(path: Path, problem: str) -> UserError:
    return UserError(
        f"{path} is {problem}; delete it and pass --download, or put the original file there"
    )


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (the MNIST format), gzipped or not."""
    broken = unreadable(path, "not a complete IDX file of unsigned bytes")
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            raw = f.read()
    except OSError as e:  # gzip.BadGzipFile among them
        raise broken from e
    # Header: two zero bytes, type code 0x08 (unsigned byte), ndim, then ndim big-endian sizes.
    header = 4 + 4 * (raw[3] if len(raw) >= 4 else 0)
    if len(raw) < header or raw[:3] != b"\x00\x00\x08":
        raise broken
    dims = struct.unpack(f">{raw[3]}I", raw[4:header])
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if data.size != int(np.prod(dims)):
        raise broken
    return data.reshape(dims)


class ArraysOnly(pickle.Unpickler):
    """An unpickler that builds numpy arrays and plain containers and nothing else: a CIFAR file
    someone hands over cannot run code while it is read (plain ``pickle.load`` would)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"it asks for {module}.{name}, which a CIFAR batch "
                "never holds (refused: it could run code)"
            )
        return super().find_class(module, name)


def unpickle(path: Path) -> dict[bytes, Any]:
    try:
        with path.open("rb") as f:
            return ArraysOnly(f, encoding="bytes").load()
    except (OSError, EOFError, ValueError, pickle.UnpicklingError) as e:
        raise unreadable(path, f"not a readable CIFAR pickle ({e})") from e


def class_dirs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def labelled_files(
    folder: Path, classes: list[str], *, every_class: bool = True
) -> list[tuple[Path, int]]:
    """Image files under ``folder/<class>/``, with the class index as label; ``every_class``
    (the training split) refuses a class folder without images."""
    if class_dirs(folder) != classes:
        raise UserError(
            f"{folder} has classes {class_dirs(folder)} but expected {classes}; every split "
            "folder needs the same class subfolders"
        )
    files = [
        (p, label)
        for label, name in enumerate(classes)
        for p in sorted((folder / name).iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise UserError(f"no images in {folder}; expected {folder}/<class>/*.png (or {suffixes})")
    counts = np.bincount([label for _, label in files], minlength=len(classes))
    empty = [name for name, n in zip(classes, counts, strict=True) if n == 0]
    if empty and every_class:
        raise UserError(
            f"class folder(s) {', '.join(empty)} in {folder} hold no images; add "
            "images or remove the folder"
        )
    return files


@contextmanager
def opened(path: Path) -> Iterator[Image.Image]:
    try:
        with warnings.catch_warnings():
            # Past PIL's pixel limit, a small file can decode into gigabytes: refuse it.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                yield im
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise UserError(
            f"image {path} is too large to decode safely ({e}); shrink or remove it"
        ) from None
    except OSError as e:  # PIL's UnidentifiedImageError and truncated files are OSErrors
        raise UserError(f"cannot read image {path} ({e}); fix or remove it") from e


GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


NATIVE_MAX = 64  # a folder's images keep their own size up to this, when they all share it
FALLBACK = 32  # the size otherwise


class Sizer:
    """The side a folder's images are read at: ``given``, or else their own size while every
    image shares it, is square and is at most ``NATIVE_MAX``; at the first one that is not,
    ``FALLBACK`` for all of them, with the reason kept in ``why``."""

    def __init__(self, given: int | None) -> None:
        self.given, self.size, self.why = given, given, ""

    def __call__(self, path: Path, width: int, height: int) -> int:
        """The size to read the file at ``path`` of ``width`` x ``height`` pixels at."""
        if self.given is not None or self.why:
            return self.size  # type: ignore[return-value]
        if self.size is None and width == height and width <= NATIVE_MAX:
            self.size = width
        elif (width, height) != (self.size, self.size):
            seen = f", others {self.size}x{self.size}" if self.size else ""
            self.why = f"{path.name} is {width}x{height}{seen}"
            self.size = FALLBACK
        return self.size  # type: ignore[return-value]

    def fit(self, image: np.ndarray) -> np.ndarray:
        """An image read at the folder's own size before the size fell back, resized as its
        file would have been (the same bilinear resize of the same decoded pixels)."""
        if image.shape[-1] == self.size:
            return image
        im = Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0))
        im = im.resize((self.size, self.size), Image.Resampling.BILINEAR)
        return np.asarray(im).reshape(self.size, self.size, -1).transpose(2, 0, 1)


def read_image(path: Path, size: int | Sizer) -> np.ndarray:
    """Pixels as ``[C, size, size]``: one channel for a grayscale file, three for any other, from
    one open and one decode of the file (``size`` a side, or a ``Sizer`` that decides it)."""
    with opened(path) as im:
        side = size(path, *im.size) if isinstance(size, Sizer) else size
        im = im.convert("L" if im.mode in GRAY_MODES else "RGB")
        if im.size != (side, side):
            im = im.resize((side, side), Image.Resampling.BILINEAR)
        return np.asarray(im).reshape(side, side, -1).transpose(2, 0, 1)


def read_images(
    items: list[tuple[Path, int]], size: int | Sizer, progress: Progress, task: str
) -> list[np.ndarray]:
    """Every file of ``items`` read once, in order, with progress every 1% of the files. One
    thread: on 60,000 CIFAR-10 JPEGs a pool of two took 18 s against 8.3 s (PIL's decode of a
    32 px image is shorter than the threads' hand-offs, and warnings.catch_warnings is
    process-wide state)."""
    out: list[np.ndarray] = []
    step = max(1, len(items) // 100)
    progress(task, 0, len(items), unit="file")
    for i, (path, _) in enumerate(items):
        out.append(read_image(path, size))
        if (i + 1) % step == 0 or i + 1 == len(items):
            progress(task, i + 1, len(items), unit="file")
    return out


def stacked(images: list[np.ndarray], channels: int) -> np.ndarray:
    """``[N, channels, H, W]``; a grayscale file among colour ones gets its one channel thrice
    (what converting it to RGB gives)."""
    return np.stack(
        [np.repeat(a, channels, axis=0) if a.shape[0] != channels else a for a in images]
    )
