"""The teacher's store: a teacher is trained (or its checkpoint examined) once per dataset,
recipe and precision, and cached on disk with its description; a cached one is verified by its
hash before use, and a retraining must reproduce the weights a study recorded."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from autodistill import teacher
from autodistill.cache import tensors_sha256
from autodistill.data.augment import Augmentation
from autodistill.data.splits import DatasetSplits
from autodistill.errors import UserError
from autodistill.families import InputSpec
from autodistill.files import atomic_path, write_text_atomic
from autodistill.forward import map_size
from autodistill.progress import Progress, silent
from autodistill.teacher_input import AdaptedTeacher
from autodistill.teacher_sources import Given, TeacherSpec, load_given

log = logging.getLogger(__name__)


TeacherLoader = Callable[[], nn.Module]


def prepare_teacher(
    name: str,
    data: DatasetSplits,
    aug: Augmentation,
    *,
    cache_dir: Path,
    threads: int,
    device: torch.device | str = "cpu",
    checkpoint: Path | None = None,
    recipe: teacher.TeacherRecipe | None = None,
    precision: str = "fp32",
    progress: Progress = silent,
    expected_sha256: str | None = None,
) -> tuple[teacher.TeacherInfo, TeacherLoader]:
    """The teacher's description, and a function that loads its weights only when called.

    A teacher already trained (or a checkpoint already examined) for this data is not built at
    all: its description comes from the cache. Otherwise it is trained once and cached, on
    ``device``, and stored from the CPU so that any worker reads it. A cached
    teacher whose weights no longer hash to the ``weights_sha256`` recorded when they were written
    (a truncated or corrupted file) is trained again, with a warning, never used.

    It trains in ``precision`` (``bf16``: autocast, as students train on a GPU). Training is
    deterministic on one machine (same torch, same threads; on CUDA with deterministic kernels,
    ``device.deterministic``), so ``expected_sha256``,
    the hash a study recorded, decides a retraining: the same weights are verified and cached;
    others are refused in one line, before the cache is touched, with the fix that fits.
    A teacher whose outputs are NaN or the same for every image is refused.
    """
    recipe = recipe or teacher.TeacherRecipe()
    spec = InputSpec(data.in_chans, data.image_size, data.num_classes)
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        key = _checkpoint_key(name, data, checkpoint)
        weights = checkpoint
    else:
        key = _recipe_key(name, data, aug, recipe, precision)
        weights = cache_dir / "teachers" / f"{name}-{key}.safetensors"
    meta = cache_dir / "teachers" / f"{name}-{key}.json"

    def load() -> nn.Module:
        model = teacher.build_teacher(name, spec)
        teacher.load_checkpoint(model, weights, name, spec)
        return model.eval()

    cached = _read_info(meta)
    if cached is not None and checkpoint is not None:  # the key hashes the checkpoint's bytes
        log.info("teacher %s found in cache (%s)", name, meta)
        return cached, load
    if cached is not None:
        state = _verified_weights(weights, cached.weights_sha256)
        if state is not None:
            log.info("teacher %s found in cache (%s)", name, meta)
            return cached, lambda: _from_state(name, spec, state)
    if checkpoint is not None:
        model = load().to(device)
        info = teacher.describe(model, name, data, f"checkpoint: {checkpoint}", 0.0, threads)
    else:
        model, seconds, history = teacher.train_teacher(
            name, spec, data, aug, recipe, device, precision, progress
        )
        how = json.dumps(asdict(recipe)) + ("" if precision == "fp32" else f" in {precision}")
        info = teacher.describe(
            model, name, data, f"trained: {how}", seconds, threads, val_history=history
        )
        _check_expected(info.weights_sha256, expected_sha256, cache_dir, damaged=cached is not None)
        _save_weights(weights, model)
    meta.parent.mkdir(parents=True, exist_ok=True)
    # Written last: a description on disk means its weights are complete.
    write_text_atomic(meta, json.dumps(info.to_dict(), indent=2))
    return info, (lambda: model.eval())


def prepare_given(
    spec: TeacherSpec,
    data: DatasetSplits,
    aug: Augmentation,
    *,
    cache_dir: Path,
    threads: int,
    device: torch.device | str = "cpu",
    recipe: teacher.TransferRecipe | None = None,
    precision: str = "fp32",
    progress: Progress = silent,
    expected_sha256: str | None = None,
) -> tuple[teacher.TeacherInfo, TeacherLoader]:
    """A teacher the user gave (``teacher_sources``): its description, and a function that
    loads it behind its input adapter (``teacher_input.AdaptedTeacher``).

    Its classes are matched to the data's by name where it states them (and reordered).
    One whose classes are not the data's is given a new head and fine-tuned on the data by
    ``recipe`` (cached like a trained teacher); one that cannot take a new head (ONNX, pt2) is
    refused in one line. The description records what it gives (logits; features and
    attention maps where it shows them) and its own input."""
    recipe = recipe or teacher.TransferRecipe()
    given = load_given(spec, data)
    order, misfit = teacher.class_order(given.names, given.classes, data)
    tune = misfit is not None
    if tune and given.new_head is None:
        raise UserError(
            f"the teacher {given.what} does not fit the data: {misfit}; a teacher of this kind "
            "cannot be given a new head here: give one made for the data's classes"
        )
    h = hashlib.sha256()
    h.update(
        json.dumps(
            [spec.kind, given.fingerprint, given.input.to_dict(), order]
            + ([asdict(recipe), precision] if tune else [])
        ).encode()
    )
    h.update(dataset_fingerprint(data).encode())
    key = h.hexdigest()[:16]
    stem = f"{spec.kind}-{Path(spec.target).name}-{key}".replace(" ", "_")
    meta = cache_dir / "teachers" / f"{stem}.json"
    weights = cache_dir / "teachers" / f"{stem}.safetensors"

    def build(g: Given | None = None) -> tuple[AdaptedTeacher, str]:
        g = g or load_given(spec, data)
        head = g.new_head(g.model, data.num_classes) if tune and g.new_head else ""
        classes = data.num_classes if tune else g.classes
        model = AdaptedTeacher(g.model, g.input, data.stats, data.in_chans, classes, order)
        return model, head

    def sha(model: nn.Module) -> str:  # the file it came from, and the weights it holds now
        both = given.fingerprint + tensors_sha256(model.state_dict())
        return hashlib.sha256(both.encode()).hexdigest()

    cached = _read_info(meta)
    if cached is not None and not tune:
        log.info("teacher %s found in cache (%s)", spec.text, meta)
        return cached, lambda: build()[0].eval()
    if cached is not None:
        state = _verified_weights(weights, cached.weights_sha256, sha)
        if state is not None:
            log.info("teacher %s found in cache (%s)", spec.text, meta)
            return cached, lambda: _loaded(build()[0], state)
    if tune:  # said when it happens, not each time the fine-tuned teacher is read back
        log.warning(
            "the teacher %s: %s; fine-tuning it on the data with a new head for %d epochs "
            "(--teacher-epochs)",
            given.what,
            misfit,
            recipe.epochs,
        )
    model, head = build(given)
    model = model.to(device)
    outputs = model.provides(
        torch.zeros(2, data.in_chans, data.image_size, data.image_size, device=model_device(model)),
        map_size(data.image_size),
    )
    own = given.input.to_dict()
    if not tune:
        info = teacher.describe(
            model,
            spec.text,
            data,
            f"given: {given.what}",
            0.0,
            threads,
            sha256=sha(model),
            outputs=tuple(sorted(outputs)),
            own_input=own,
        )
    else:
        seconds, history = teacher.fine_tune(
            model, f"model.{head}", data, aug, recipe, device, precision, progress, spec.text
        )
        how = json.dumps(asdict(recipe))
        info = teacher.describe(
            model,
            spec.text,
            data,
            f"fine-tuned: {given.what} ({how})",
            seconds,
            threads,
            val_history=history,
            sha256=sha(model),
            outputs=tuple(sorted(outputs)),
            own_input=own,
        )
        _check_expected(info.weights_sha256, expected_sha256, cache_dir, damaged=cached is not None)
        _save_weights(weights, model)
    meta.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(meta, json.dumps(info.to_dict(), indent=2))
    return info, (lambda: model.eval())


def model_device(model: nn.Module) -> torch.device:
    return next(iter(model.buffers()), torch.zeros(0)).device


def _loaded(model: nn.Module, state: dict[str, Tensor]) -> nn.Module:
    model.load_state_dict(state)
    return model.eval()


def _save_weights(path: Path, model: nn.Module) -> None:
    """The model's weights written to ``path`` from the CPU, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp)
        )


def _check_expected(got: str, expected: str | None, cache_dir: Path, *, damaged: bool) -> None:
    """A retrained teacher is the study's only if its weights hash to what the study recorded."""
    if expected is None:
        return
    state = "was damaged" if damaged else "does not hold it"
    if got == expected:
        log.warning(
            "the study's teacher cache %s; trained it again and verified its weights "
            "against the study's record (%s)",
            state,
            expected[:12],
        )
        return
    raise UserError(
        f"the study was made with teacher weights {expected[:12]}, but the teacher cache in "
        f"{cache_dir} {state} and training it again here gave {got[:12]} (a teacher retrains to "
        "the same weights only with the same torch, machine and --threads); restore "
        f"{cache_dir / 'teachers'} from a copy or point --cache-dir at the study's cache, or "
        "start a new study with another --study-name"
    )


def _read_info(meta: Path) -> teacher.TeacherInfo | None:
    """The cached description of a teacher, or None (warning if it is unreadable)."""
    if not meta.is_file():
        return None
    try:
        return teacher.TeacherInfo(**json.loads(meta.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        log.warning("cached teacher description %s is unreadable (%s); rebuilding it", meta, exc)
        return None


def _verified_weights(
    path: Path, sha256: str, hashed: Callable[[nn.Module], str] | None = None
) -> dict[str, Tensor] | None:
    """A cached teacher's weights if they hash to what was recorded when they were written
    (``hashed``: how a given teacher's hash is made from them)."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:  # missing, truncated, or not safetensors at all
        problem = f"is unreadable ({exc})"
    else:
        got = tensors_sha256(state) if hashed is None else hashed(_Holder(state))
        if got == sha256:
            return state
        problem = "fails its checksum: its contents changed after it was written"
    log.warning("cached teacher weights %s %s; training the teacher again", path, problem)
    return None


class _Holder(nn.Module):
    """Tensors with a ``state_dict``: what a hash of a model's weights reads."""

    def __init__(self, state: dict[str, Tensor]) -> None:
        super().__init__()
        self._state = state

    def state_dict(self, *args: object, **kwargs: object) -> dict[str, Tensor]:  # type: ignore[override]
        return self._state


def _from_state(name: str, spec: InputSpec, state: dict[str, Tensor]) -> nn.Module:
    model = teacher.build_teacher(name, spec)
    model.load_state_dict(state)
    return model.eval()


def _checkpoint_key(name: str, data: DatasetSplits, checkpoint: Path) -> str:
    if not checkpoint.is_file():
        raise UserError(f"teacher checkpoint {str(checkpoint)!r} does not exist")
    h = hashlib.sha256()
    h.update(json.dumps([name, data.name, "checkpoint"]).encode())
    h.update(dataset_fingerprint(data).encode())
    with open(checkpoint, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _recipe_key(
    name: str, data: DatasetSplits, aug: Augmentation, recipe: teacher.TeacherRecipe, precision: str
) -> str:
    h = hashlib.sha256()
    parts = [name, data.name, aug.to_dict(), asdict(recipe)]
    if precision != "fp32":  # fp32 keys are those of teachers cached before precision counted
        parts.append(precision)
    h.update(json.dumps(parts).encode())
    h.update(dataset_fingerprint(data).encode())
    return h.hexdigest()[:16]


def dataset_fingerprint(data: DatasetSplits) -> str:
    """A hash of the exact train images and labels, so a changed split never reuses a cache."""
    h = hashlib.sha256()
    for part in (data.train, data.val):
        h.update(part.images.numpy().tobytes())
        h.update(part.labels.numpy().tobytes())
    return h.hexdigest()
