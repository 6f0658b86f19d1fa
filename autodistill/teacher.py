"""The teacher: any timm model, adapted to small inputs, trained once per dataset or loaded."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from autodistill.cache import tensors_sha256
from autodistill.data.augment import Augmentation
from autodistill.data.splits import DatasetSplits
from autodistill.device import deterministic
from autodistill.errors import UserError, first_line
from autodistill.families import InputSpec
from autodistill.files import atomic_path, write_text_atomic
from autodistill.measure import count_params, device_name, measure_latency
from autodistill.progress import Progress, silent
from autodistill.trainer import TrainConfig, TrainingDiverged, evaluate, fit, predict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherInfo:
    """What the report needs to know about the teacher."""

    name: str
    params: int
    val_accuracy: float
    test_accuracy: float
    latency_ms: float
    latency_threads: int
    weights_sha256: str
    source: str  # "trained: <recipe>" or "checkpoint: <path>"
    train_seconds: float = 0.0
    # Where ``latency_ms`` was timed (eager PyTorch, on a CPU copy: the same wherever the teacher
    # trained, as the cache that holds it is shared by CPU and GPU workers); "" in a description
    # cached before it was recorded.
    latency_device: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def build_teacher(name: str, spec: InputSpec) -> nn.Module:
    """A timm model for this data, with its stem adapted to small images.

    Models that take ``img_size`` (ViTs and kin) are built for the data's size; any other model
    must prove it runs on one input of that size, or the user is told to pick another.
    """
    kwargs = {"pretrained": False, "num_classes": spec.num_classes, "in_chans": spec.in_chans}
    try:
        try:
            model = timm.create_model(name, img_size=spec.image_size, **kwargs)
        except TypeError:  # the model has no img_size argument: a CNN
            model = timm.create_model(name, **kwargs)
    except RuntimeError as exc:  # timm: "Unknown model (x)"
        raise UserError(
            f"unknown teacher {name!r}: {exc}; any name from timm.list_models() works, "
            "e.g. resnet18"
        ) from None
    except (TypeError, ValueError, AssertionError) as exc:
        raise UserError(f"teacher {name!r} cannot be built for this data: {exc}") from None
    if spec.image_size <= 64:
        _shrink_stem(model, spec)
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, spec.in_chans, spec.image_size, spec.image_size))
    except (RuntimeError, ValueError, AssertionError) as exc:
        first = first_line(exc)
        raise UserError(
            f"teacher {name!r} cannot run on {spec.image_size}px images: {first}; "
            "pick a CNN teacher such as resnet18, or a checkpoint of one"
        ) from None
    return model.train()


def _shrink_stem(model: nn.Module, spec: InputSpec) -> None:
    """Replace a 4x-downsampling ImageNet stem so small images keep their resolution."""
    conv = getattr(model, "conv1", None)
    if isinstance(conv, nn.Conv2d):  # ResNet family: 7x7 s2 conv (+ max pool, kept: 2x total)
        model.conv1 = nn.Conv2d(spec.in_chans, conv.out_channels, 3, 1, 1, bias=False)
        return
    stem = getattr(model, "conv_stem", None)
    if isinstance(stem, nn.Conv2d):  # EfficientNet / MobileNet family
        stem.stride = (1, 1)


def weights_sha256(model: nn.Module) -> str:
    """A hash of the weights: the key of everything computed from this teacher."""
    return tensors_sha256(model.state_dict())


def load_checkpoint(model: nn.Module, path: Path, name: str, spec: InputSpec) -> None:
    """Load weights, refusing a checkpoint that does not fit this teacher and data."""
    if not path.is_file():
        raise UserError(f"teacher checkpoint {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state.get("model", state))
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        lines = str(exc).strip().splitlines()
        raise UserError(
            f"cannot read teacher checkpoint {path}: {lines[0] if lines else type(exc).__name__}; "
            "give a complete state dict saved with torch.save or safetensors"
        ) from None
    mine = model.state_dict()
    missing = sorted(set(mine) - set(state))
    unexpected = sorted(set(state) - set(mine))
    wrong = [k for k in mine if k in state and tuple(state[k].shape) != tuple(mine[k].shape)]
    if missing or unexpected or wrong:
        head = model.get_classifier() if hasattr(model, "get_classifier") else None
        head_key = next(
            (
                k
                for k in wrong
                if head is not None and mine[k].shape[0] == getattr(head, "out_features", -1)
            ),
            None,
        )
        if head_key is not None:
            problem = (
                f"its classifier has {state[head_key].shape[0]} classes but the data has "
                f"{spec.num_classes}"
            )
        elif wrong:
            problem = (
                f"{wrong[0]} has shape {tuple(state[wrong[0]].shape)}, expected "
                f"{tuple(mine[wrong[0]].shape)}"
            )
        else:
            problem = f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        raise UserError(
            f"teacher checkpoint {path} does not fit --teacher {name} for this data "
            f"({spec.in_chans} channels, {spec.image_size}px, {spec.num_classes} "
            f"classes): {problem}; give a --teacher-checkpoint trained on this data with the "
            "--teacher it was saved from, or leave it out to train one"
        )
    model.load_state_dict(state)


@dataclass(frozen=True)
class TeacherRecipe:
    """How a teacher is trained when no checkpoint is given; part of its cache key."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    weight_decay: float = 5e-4
    seed: int = 0


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
    recipe: TeacherRecipe | None = None,
    precision: str = "fp32",
    progress: Progress = silent,
    expected_sha256: str | None = None,
) -> tuple[TeacherInfo, TeacherLoader]:
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
    recipe = recipe or TeacherRecipe()
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
        model = build_teacher(name, spec)
        load_checkpoint(model, weights, name, spec)
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
        info = _describe(model, name, data, f"checkpoint: {checkpoint}", 0.0, threads)
    else:
        model, seconds = _train(name, spec, data, aug, recipe, device, precision, progress)
        how = json.dumps(asdict(recipe)) + ("" if precision == "fp32" else f" in {precision}")
        info = _describe(model, name, data, f"trained: {how}", seconds, threads)
        _check_expected(info.weights_sha256, expected_sha256, cache_dir, damaged=cached is not None)
        weights.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(weights) as tmp:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp)
            )
    meta.parent.mkdir(parents=True, exist_ok=True)
    # Written last: a description on disk means its weights are complete.
    write_text_atomic(meta, json.dumps(info.to_dict(), indent=2))
    return info, (lambda: model.eval())


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


def _read_info(meta: Path) -> TeacherInfo | None:
    """The cached description of a teacher, or None (warning if it is unreadable)."""
    if not meta.is_file():
        return None
    try:
        return TeacherInfo(**json.loads(meta.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        log.warning("cached teacher description %s is unreadable (%s); rebuilding it", meta, exc)
        return None


def _verified_weights(path: Path, sha256: str) -> dict[str, Tensor] | None:
    """A cached teacher's weights if they hash to what was recorded when they were written."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:  # missing, truncated, or not safetensors at all
        problem = f"is unreadable ({exc})"
    else:
        if tensors_sha256(state) == sha256:
            return state
        problem = "fails its checksum: its contents changed after it was written"
    log.warning("cached teacher weights %s %s; training the teacher again", path, problem)
    return None


def _from_state(name: str, spec: InputSpec, state: dict[str, Tensor]) -> nn.Module:
    model = build_teacher(name, spec)
    model.load_state_dict(state)
    return model.eval()


def _train(
    name: str,
    spec: InputSpec,
    data: DatasetSplits,
    aug: Augmentation,
    recipe: TeacherRecipe,
    device: torch.device | str,
    precision: str,
    progress: Progress,
) -> tuple[nn.Module, float]:
    log.info("training teacher %s (%d epochs)", name, recipe.epochs)
    # Initial weights from the recipe's seed: retraining on one machine gives the same weights
    # (the same hash), so a damaged cache can be rebuilt into the teacher a study recorded.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        model = build_teacher(name, spec)
    start = time.perf_counter()
    cfg = TrainConfig(
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        weight_decay=recipe.weight_decay,
        seed=recipe.seed,
        optimizer="sgd",
        device=str(device),
        precision=precision,
    )
    task = f"teacher {name}"
    progress(task, 0, recipe.epochs, unit="epoch")

    def on_epoch(epoch: int, losses: dict[str, float]) -> None:
        # Evaluation draws nothing random and leaves the weights be: the teacher trained is the
        # same with or without it.
        val = evaluate(model, data.val, data.stats)
        note = f"loss {sum(losses.values()):.3f} | val {100 * val:.1f}%"
        progress(task, epoch + 1, recipe.epochs, unit="epoch", note=note)

    try:
        with deterministic(device):  # a retrain on a GPU gives the same weights, too
            fit(model, data.train, aug, data.stats, cfg, on_epoch=on_epoch)
    except TrainingDiverged as exc:
        raise UserError(
            f"training the teacher {name} diverged ({exc}); choose another "
            "--teacher, or give a --teacher-checkpoint"
        ) from None
    return model, time.perf_counter() - start


def _describe(
    model: nn.Module, name: str, data: DatasetSplits, source: str, secs: float, threads: int
) -> TeacherInfo:
    _refuse_broken(model, data, source)
    shape = (data.in_chans, data.image_size, data.image_size)
    # Timed on a CPU copy whatever it trained on: the description is cached for every worker,
    # and a GPU's eager figure beside students timed in ONNX Runtime on a CPU would mislead.
    cpu = torch.device("cpu")
    latency = measure_latency(copy.deepcopy(model).cpu(), shape, threads=threads, device=cpu)
    return TeacherInfo(
        name=name,
        params=count_params(model),
        val_accuracy=evaluate(model, data.val, data.stats),
        test_accuracy=evaluate(model, data.test, data.stats),
        latency_ms=latency.median_ms,
        latency_threads=latency.threads,
        weights_sha256=weights_sha256(model),
        source=source,
        train_seconds=round(secs, 1),
        latency_device=device_name(cpu),
    )


def better_teacher(info: TeacherInfo) -> str:
    """What to do about a teacher that teaches little."""
    if info.source.startswith("checkpoint"):
        return "give a better --teacher-checkpoint"
    return "train it longer (--teacher-epochs), or give a --teacher-checkpoint"


def weak_teacher(info: TeacherInfo, data: DatasetSplits) -> str | None:
    """One line naming a teacher too weak to teach (validation accuracy less than halfway
    from always answering the most frequent class to perfect) and what to do; None if not."""
    chance = data.val.chance_accuracy()
    if info.val_accuracy >= (1 + chance) / 2:
        return None
    return (
        f"the teacher {info.name} is weak: {100 * info.val_accuracy:.1f}% validation "
        f"accuracy, where always answering the most frequent class gives "
        f"{100 * chance:.1f}%; students distilled from it learn its mistakes: "
        f"{better_teacher(info)}"
    )


def _refuse_broken(model: nn.Module, data: DatasetSplits, source: str) -> None:
    """A teacher whose outputs are NaN, or the same for every image, would fail or mislead
    every trial without naming itself: refuse it here, where it can be named."""
    if source.startswith("checkpoint: "):
        what = f"teacher checkpoint {source.removeprefix('checkpoint: ')}"
        fix = "give a --teacher-checkpoint that works, or leave it out to train one"
    else:
        what, fix = "the teacher trained here", "choose another --teacher, or more --teacher-epochs"
    logits = predict(model, data.val.images, data.stats)
    if not torch.isfinite(logits).all():
        raise UserError(f"{what} gives NaN or infinite outputs on the validation images; {fix}")
    if float(logits.std(dim=0).max()) < 1e-6:
        raise UserError(
            f"{what} gives the same output for every validation image: it tells "
            f"a student nothing; {fix}"
        )


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
    name: str, data: DatasetSplits, aug: Augmentation, recipe: TeacherRecipe, precision: str
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
