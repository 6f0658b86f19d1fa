"""The teacher cache: logits for V augmented views of every training image, computed once.

Each view's augmentation parameters are stored beside its logits, so a student trains on
exactly the pixels the teacher saw. Files are fp16 safetensors keyed by a hash of the teacher's
weights, the data, the split, the augmentation and V; every trial and every later run reuses them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from autodistill.data.augment import Augmentation, normalize
from autodistill.data.splits import ImageSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherViews:
    """``logits`` fp16 ``[V, N, C]`` and ``params`` int8 ``[V, N, 3]`` for N training images."""

    logits: Tensor
    params: Tensor
    key: str
    path: Path

    @property
    def count(self) -> int:
        return int(self.logits.shape[0])

    def nbytes(self) -> int:
        return self.path.stat().st_size if self.path.is_file() else 0


def cache_key(
    teacher_sha256: str, dataset: str, data_sha256: str, split: str, aug: Augmentation, views: int
) -> str:
    """Everything the cached logits depend on, hashed."""
    parts = [teacher_sha256, dataset, data_sha256, split, aug.to_dict(), views]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def cache_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / "logits" / f"{key[:24]}.safetensors"


def load_views(cache_dir: Path, key: str) -> TeacherViews | None:
    """The cached views for ``key``, or None when absent or unreadable."""
    path = cache_path(cache_dir, key)
    cached = _load(path, key)
    if cached is not None:
        log.info("teacher logits loaded from cache %s", path)
    return cached


def compute_views(
    teacher: nn.Module,
    train: ImageSet,
    aug: Augmentation,
    stats: tuple[tuple[float, ...], tuple[float, ...]],
    *,
    key: str,
    views: int,
    cache_dir: Path,
    batch_size: int = 500,
    progress: bool = True,
) -> TeacherViews:
    """Run the teacher once over ``views`` augmented views of every image and store the logits.

    View 0 is the un-augmented image; the others are sampled with a seed derived from the key.
    """
    path = cache_path(cache_dir, key)
    gen = torch.Generator().manual_seed(int(key[:15], 16))
    n = len(train)
    params = torch.stack([aug.sample(n, gen) for _ in range(views)])
    params[0].zero_()
    logits = torch.empty(views, n, _num_outputs(teacher, train, stats), dtype=torch.float16)
    teacher.eval()
    bar = tqdm(total=views * n, desc="teacher logits", unit="img", disable=not progress)
    with torch.inference_mode():
        for v in range(views):
            for i in range(0, n, batch_size):
                x = aug.apply(train.images[i : i + batch_size], params[v, i : i + batch_size])
                logits[v, i : i + batch_size] = teacher(normalize(x, *stats)).half()
                bar.update(len(x))
    bar.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"logits": logits, "params": params}, str(tmp), metadata={"key": key})
    tmp.replace(path)  # atomic: a crash never leaves a half-written cache under the real name
    log.info("teacher logits cached: %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return TeacherViews(logits, params, key, path)


def _num_outputs(teacher: nn.Module, train: ImageSet, stats) -> int:
    with torch.inference_mode():
        return int(teacher.eval()(normalize(train.images[:1], *stats)).shape[1])


def _load(path: Path, key: str) -> TeacherViews | None:
    if not path.is_file():
        return None
    try:
        tensors = load_file(str(path))
        with open(path, "rb") as f:  # the header's metadata holds the full key
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        stored_key = header.get("__metadata__", {}).get("key")
    except (SafetensorError, OSError, ValueError) as exc:
        log.warning("teacher cache %s is unreadable (%s); recomputing", path, exc)
        return None
    if stored_key != key:
        log.warning("teacher cache %s belongs to another key; recomputing", path)
        return None
    return TeacherViews(tensors["logits"], tensors["params"], key, path)
