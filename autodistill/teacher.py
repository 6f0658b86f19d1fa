"""The teacher: any timm model, adapted to small inputs, trained once per dataset or loaded."""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file
from torch import nn

from autodistill.cache import tensors_sha256
from autodistill.data.augment import Augmentation
from autodistill.data.splits import DatasetSplits
from autodistill.device import deterministic
from autodistill.errors import UserError, first_line
from autodistill.families import InputSpec
from autodistill.measure import count_params, device_name, measure_latency
from autodistill.progress import Progress
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
    # Validation accuracy after each epoch of its training (empty for a checkpoint, or a
    # teacher cached before it was recorded): whether it was still learning when it stopped.
    val_history: tuple[float, ...] = ()
    # The outputs it gives (forward.OUTPUT_KINDS); empty: all of them (a timm teacher).
    outputs: tuple[str, ...] = ()
    # A given teacher's own input (teacher_input.TeacherInput as a dict); empty: the data's.
    input: dict = field(default_factory=dict)

    def __post_init__(self) -> None:  # read back from JSON as lists
        object.__setattr__(self, "val_history", tuple(self.val_history))
        object.__setattr__(self, "outputs", tuple(self.outputs))

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


@dataclass(frozen=True)
class TransferRecipe:
    """How a given teacher with other classes than the data's is fine-tuned on it: a new head
    at ``lr``, the pretrained body at ``lr * body_lr_scale``, AdamW, one cycle (its first 15%
    a warm-up). Part of the fine-tuned teacher's cache key."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    body_lr_scale: float = 0.1
    weight_decay: float = 0.05
    seed: int = 0


def class_order(
    names: tuple[str, ...] | None, classes: int, data: DatasetSplits
) -> tuple[list[int] | None, str | None]:
    """How a given teacher's classes map onto the data's: (the teacher's column of each data
    class, or None when they agree as they are; why they do not fit, or None).

    Names the teacher states are matched by name (another order is reordered); without names,
    the same number of classes is taken to be the same classes in the same order."""
    if names is not None and len(names) == classes:
        if list(names) == list(data.classes):
            return None, None
        if sorted(names) == sorted(data.classes):
            return [names.index(c) for c in data.classes], None
        unknown = [c for c in data.classes if c not in names]
        return None, (
            f"its {classes} classes ({_few(names)}) are not the data's {data.num_classes} "
            f"({_few(data.classes)}; {len(unknown)} not among its own, e.g. {unknown[0]!r})"
            if unknown
            else f"its {classes} classes ({_few(names)}) are not the data's ({_few(data.classes)})"
        )
    if classes == data.num_classes:
        return None, None
    return None, f"it has {classes} classes but the data has {data.num_classes}"


def _few(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def fine_tune(
    model: nn.Module,
    head: str,
    data: DatasetSplits,
    aug: Augmentation,
    recipe: TransferRecipe,
    device: torch.device | str,
    precision: str,
    progress: Progress,
    name: str,
) -> tuple[float, tuple[float, ...]]:
    """Fine-tune ``model`` (a given teacher with a new head, parameters under ``head``) on the
    data in place; the seconds it took and its validation accuracy after each epoch."""
    cfg = _config(recipe, "adamw", device, precision, head=head, body_lr_scale=recipe.body_lr_scale)
    return _fit_teacher(model, name, data, aug, cfg, progress, "fine-tuning")


def train_teacher(
    name: str,
    spec: InputSpec,
    data: DatasetSplits,
    aug: Augmentation,
    recipe: TeacherRecipe,
    device: torch.device | str,
    precision: str,
    progress: Progress,
) -> tuple[nn.Module, float, tuple[float, ...]]:
    """The teacher trained by ``recipe``, the seconds it took, and its validation accuracy
    after each epoch."""
    log.info("training teacher %s (%d epochs)", name, recipe.epochs)
    # Initial weights from the recipe's seed: retraining on one machine gives the same weights
    # (the same hash), so a damaged cache can be rebuilt into the teacher a study recorded.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        model = build_teacher(name, spec)
    cfg = _config(recipe, "sgd", device, precision)
    seconds, history = _fit_teacher(model, name, data, aug, cfg, progress, "training")
    return model, seconds, history


def _config(
    recipe: TeacherRecipe | TransferRecipe,
    optimizer: str,
    device: torch.device | str,
    precision: str,
    **transfer: object,
) -> TrainConfig:
    """A teacher recipe as training settings (``transfer``: the fine-tuning ones)."""
    return TrainConfig(
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        weight_decay=recipe.weight_decay,
        seed=recipe.seed,
        optimizer=optimizer,
        device=str(device),
        precision=precision,
        **transfer,  # type: ignore[arg-type]
    )


def _fit_teacher(
    model: nn.Module,
    name: str,
    data: DatasetSplits,
    aug: Augmentation,
    cfg: TrainConfig,
    progress: Progress,
    doing: str,
) -> tuple[float, tuple[float, ...]]:
    """Train a teacher by ``cfg`` with fresh random views, reporting validation accuracy after
    every epoch; the seconds it took and that history."""
    start = time.perf_counter()
    task = f"teacher {name}"
    progress(task, 0, cfg.epochs, unit="epoch")
    history: list[float] = []

    def on_epoch(epoch: int, losses: dict[str, float]) -> None:
        # Evaluation draws nothing random and leaves the weights be: the teacher trained is the
        # same with or without it.
        val = evaluate(model, data.val, data.stats)
        history.append(round(val, 5))
        note = f"loss {sum(losses.values()):.3f} | val {100 * val:.1f}%"
        progress(task, epoch + 1, cfg.epochs, unit="epoch", note=note)

    try:
        with deterministic(cfg.device):  # a retrain on a GPU gives the same weights, too
            fit(model, data.train, aug, data.stats, cfg, on_epoch=on_epoch)
    except TrainingDiverged as exc:
        raise UserError(
            f"{doing} the teacher {name} diverged ({exc}); choose another "
            "--teacher, or give a --teacher-checkpoint"
        ) from None
    return time.perf_counter() - start, tuple(history)


def describe(
    model: nn.Module,
    name: str,
    data: DatasetSplits,
    source: str,
    secs: float,
    threads: int,
    val_history: tuple[float, ...] = (),
    sha256: str | None = None,
    outputs: tuple[str, ...] = (),
    own_input: dict | None = None,
) -> TeacherInfo:
    _refuse_broken(model, data, source)
    shape = (data.in_chans, data.image_size, data.image_size)
    # Timed on a CPU copy whatever it trained on: the description is cached for every worker,
    # and a GPU's eager figure beside students timed in ONNX Runtime on a CPU would mislead.
    cpu = torch.device("cpu")
    latency = measure_latency(copy.deepcopy(model).cpu(), shape, threads=threads, device=cpu)
    return TeacherInfo(
        name=name,
        params=model.parameter_count()
        if hasattr(model, "parameter_count")
        else count_params(model),
        val_accuracy=evaluate(model, data.val, data.stats),
        test_accuracy=evaluate(model, data.test, data.stats),
        latency_ms=latency.median_ms,
        latency_threads=latency.threads,
        weights_sha256=sha256 or weights_sha256(model),
        source=source,
        train_seconds=round(secs, 1),
        latency_device=device_name(cpu),
        val_history=tuple(val_history),
        outputs=outputs,
        input=own_input or {},
    )


def better_teacher(info: TeacherInfo) -> str:
    """What to do about a teacher that teaches little."""
    if info.source.startswith("checkpoint"):
        return "give a better --teacher-checkpoint"
    if info.source.startswith("given"):
        return "give a better --teacher"
    if info.source.startswith("fine-tuned"):
        return "fine-tune it longer (--teacher-epochs), or give a better --teacher"
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


def undertrained(info: TeacherInfo, val_images: int) -> str | None:
    """One line naming a teacher that was still learning when its training stopped (its
    validation accuracy rose over its last quarter of epochs, at least the last one, by more
    than twice the split's standard error at that accuracy) and what to do; None if not, or if
    its history was not recorded."""
    h = info.val_history
    if len(h) < 2:
        return None
    k = max(1, len(h) // 4)
    gain = h[-1] - h[-1 - k]
    noise = 2 * math.sqrt(max(h[-1] * (1 - h[-1]), 1e-6) / max(val_images, 1))
    if gain <= noise:
        return None
    last = f"epoch{'s' if k > 1 else ''} {len(h) - k + 1}-{len(h)}" if k > 1 else f"epoch {len(h)}"
    return (
        f"the teacher {info.name} was still learning when it stopped: validation accuracy "
        f"rose {100 * gain:.1f} points over {last} (to {100 * h[-1]:.1f}%, more than the "
        f"split's noise of {100 * noise:.1f}); train it longer (--teacher-epochs "
        f"{2 * len(h)}), or give a --teacher-checkpoint"
    )


def _refuse_broken(model: nn.Module, data: DatasetSplits, source: str) -> None:
    """A teacher whose outputs are NaN, or the same for every image, would fail or mislead
    every trial without naming itself: refuse it here, where it can be named."""
    if source.startswith("checkpoint: "):
        what = f"teacher checkpoint {source.removeprefix('checkpoint: ')}"
        fix = "give a --teacher-checkpoint that works, or leave it out to train one"
    elif source.startswith(("given: ", "fine-tuned: ")):
        what = f"the teacher {source.partition(': ')[2]}"
        fix = "check its --teacher-size, --teacher-mean and --teacher-std, or give another"
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
