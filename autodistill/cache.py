"""The teacher cache: the teacher's outputs for V augmented views of every training image.

Each view's augmentation parameters are stored beside the outputs, so a student trains on
exactly the pixels the teacher saw. Logits are always cached; pooled pre-logit features and
per-stage attention maps only when a loss of the space reads them. Files are fp16 safetensors,
one per kind, keyed by a hash of the teacher's weights, the data, the split, the augmentation
and V; every trial and every later run reuses them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from autodistill.data.augment import Augmentation, normalize
from autodistill.data.splits import ImageSet
from autodistill.errors import UserError
from autodistill.files import atomic_path
from autodistill.forward import OUTPUT_KINDS, forward_outputs, map_size
from autodistill.layout import in_layout
from autodistill.progress import Progress, silent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherViews:
    """Cached teacher outputs for N training images in V views.

    ``params`` int8 ``[V, N, 3]`` (dx, dy, flip); ``outputs`` by kind (``forward.OUTPUT_KINDS``):
    ``logits`` fp16 ``[V, N, C]`` always, ``features`` fp16 ``[V, N, D]`` and ``attention`` fp16
    ``[V, N, K, r*r]`` when cached.
    """

    params: Tensor
    outputs: dict[str, Tensor]
    key: str
    paths: tuple[Path, ...]

    @property
    def count(self) -> int:
        return int(self.outputs["logits"].shape[0])

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self.outputs)

    @property
    def map_size(self) -> int:
        maps = self.outputs.get("attention")
        return int(round(maps.shape[-1] ** 0.5)) if maps is not None else 0

    def to(self, device: torch.device | str) -> TeacherViews:
        """These views on ``device`` (themselves if already there): a worker on a GPU copies
        them once, not every step."""
        device = torch.device(device)
        if self.params.device == device:
            return self
        outputs = {k: t.to(device) for k, t in self.outputs.items()}
        return TeacherViews(self.params.to(device), outputs, self.key, self.paths)

    def take(self, index: Tensor) -> TeacherViews:
        """The views of the training images at ``index`` only, in that order."""
        index = index.to(self.params.device)
        outputs = {k: t[:, index] for k, t in self.outputs.items()}
        return TeacherViews(self.params[:, index], outputs, self.key, self.paths)

    def nbytes(self) -> int:
        """Size of the cache files on disk."""
        return sum(p.stat().st_size for p in self.paths if p.is_file())


def cache_key(
    teacher_sha256: str,
    dataset: str,
    data_sha256: str,
    split: str,
    aug: Augmentation,
    views: int,
    teacher_input: dict | None = None,
) -> str:
    """Everything the cached outputs depend on, hashed: a given teacher's own input (its size,
    mean and std) among them, since the same weights shown another size answer otherwise. A
    teacher that sees the data as it is (``teacher_input`` empty) keeps the key it always had."""
    parts = [teacher_sha256, dataset, data_sha256, split, aug.to_dict(), views]
    if teacher_input:
        parts.append(teacher_input)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def tensors_sha256(tensors: Mapping[str, Tensor]) -> str:
    """A sha256 of named tensors: each name, then its raw bytes, in sorted-name order.

    Only the bytes count, not the dtype, so this both checks a cache file's contents against
    what was written and names a teacher's weights.
    """
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def cache_path(cache_dir: Path, key: str, kind: str = "logits") -> Path:
    return cache_dir / "logits" / f"{key[:24]}.{kind}.safetensors"


def load_views(
    cache_dir: Path, key: str, kinds: tuple[str, ...] = ("logits",)
) -> TeacherViews | None:
    """The cached views for ``key`` with every kind asked for, or None to recompute them.

    None when a file is missing, or (with a warning) when one is unreadable, truncated, written
    for another key, or fails the checksum stored in it.
    """
    kinds = _with_logits(kinds)
    tensors: dict[str, Tensor] = {}
    for kind in kinds:
        got = _load(cache_path(cache_dir, key, kind), key, kind)
        if got is None:
            return None
        tensors.update(got)
    log.info("teacher %s loaded from cache %s", "/".join(kinds), cache_dir / "logits")
    return TeacherViews(
        params=tensors["params"],
        outputs={k: tensors[k] for k in kinds},
        key=key,
        paths=tuple(cache_path(cache_dir, key, k) for k in kinds),
    )


def compute_views(
    teacher: nn.Module,
    train: ImageSet,
    aug: Augmentation,
    stats: tuple[tuple[float, ...], tuple[float, ...]],
    *,
    key: str,
    views: int,
    cache_dir: Path,
    kinds: tuple[str, ...] = ("logits",),
    batch_size: int = 500,
    device: torch.device | str = "cpu",
    progress: Progress = silent,
) -> TeacherViews:
    """Run the teacher once over ``views`` augmented views of every image and store its outputs.

    View 0 is the un-augmented image; the others are sampled with a seed derived from the key.
    The teacher runs on ``device``; what is stored is on the CPU, so a cache built on a GPU
    is read by any worker.
    """
    kinds = _with_logits(kinds)
    gen = torch.Generator().manual_seed(int(key[:15], 16))
    n = len(train)
    params = torch.stack([aug.sample(n, gen) for _ in range(views)])
    params[0].zero_()
    size = map_size(int(train.images.shape[-1]))
    chunks: dict[str, list[Tensor]] = {k: [] for k in kinds}
    device = torch.device(device)
    teacher.eval().to(device)
    task, done = "teacher outputs", 0
    with torch.inference_mode():
        for v in range(views):
            for i in range(0, n, batch_size):
                x = train.images[i : i + batch_size].to(device, non_blocking=True)
                x = normalize(aug.apply(x, params[v, i : i + batch_size]), *stats)
                x = in_layout(x, torch.contiguous_format)
                for name, value in forward_outputs(teacher, x, kinds, size).items():
                    chunks[name].append(value.half().cpu())
                done += len(x)
                progress(task, done, views * n, unit="img")
    shaped = {k: torch.cat(c).view(views, n, *c[0].shape[1:]) for k, c in chunks.items()}
    for kind, value in shaped.items():  # every trial would fail on them, naming no teacher
        if not torch.isfinite(value).all():
            raise UserError(
                f"the teacher's {kind} on augmented training views are NaN or "
                "beyond fp16's range (what the cache stores); give a teacher that "
                "works on this data"
            )
    # One file per kind; the view parameters go with the logits, which every loss reads.
    files = {k: {k: shaped[k], **({"params": params} if k == "logits" else {})} for k in kinds}
    paths = []
    for kind in kinds:
        path = cache_path(cache_dir, key, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {"key": key, "sha256": tensors_sha256(files[kind])}
        with atomic_path(path) as tmp:  # a crash never leaves a half-written file under its name
            save_file(files[kind], str(tmp), metadata=metadata)
        paths.append(path)
    result = TeacherViews(params, shaped, key, tuple(paths))
    log.info("teacher outputs cached: %s (%.1f MB)", "/".join(kinds), result.nbytes() / 1e6)
    return result


def _with_logits(kinds: tuple[str, ...]) -> tuple[str, ...]:
    unknown = set(kinds) - set(OUTPUT_KINDS)
    if unknown:
        raise ValueError(f"unknown teacher output kinds {sorted(unknown)}")
    return tuple(k for k in OUTPUT_KINDS if k == "logits" or k in kinds)


def _load(path: Path, key: str, kind: str) -> dict[str, Tensor] | None:
    """The tensors of one cache file, or None (with one warning saying why) if not to be trusted."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:  # truncated, or not safetensors at all
        problem = f"is unreadable ({exc})"
    else:
        if metadata.get("key") != key:
            problem = "belongs to another key"
        elif "sha256" not in metadata:
            problem = "has no checksum (written by an older autodistill)"
        elif kind not in tensors:
            problem = f"has no {kind!r} tensor (written by an older autodistill)"
        elif tensors_sha256(tensors) != metadata["sha256"]:
            problem = "fails its checksum: its contents changed after it was written"
        else:
            return tensors
    log.warning("teacher cache %s %s; recomputing", path, problem)
    return None
