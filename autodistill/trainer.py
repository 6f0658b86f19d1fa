"""The training loop: knows no search and no model family, reports through a callback."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from autodistill.cache import TeacherViews
from autodistill.data.augment import Augmentation, Normalizer
from autodistill.data.resize import resize
from autodistill.data.splits import ImageSet
from autodistill.errors import UserError, first_line
from autodistill.files import atomic_path
from autodistill.forward import forward_outputs
from autodistill.layout import in_layout, training_format
from autodistill.losses import Distiller, Outputs, plain, total

Stats = tuple[tuple[float, ...], tuple[float, ...]]
EpochCallback = Callable[[int, dict[str, float]], None]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Brief for a search trial, long for a final student."""

    epochs: int
    lr: float
    weight_decay: float = 0.0
    batch_size: int = 64
    seed: int = 0
    optimizer: str = "adamw"  # adamw suits brief runs; sgd+momentum trains the teacher
    # NHWC activations; each family says whether it trains faster so (families.Family).
    channels_last: bool = False
    # Where the model trains, and in what precision (fp32, or bf16 autocast with fp32 master
    # weights). Not part of what a checkpoint must match: a run may resume on another device.
    device: str = "cpu"
    precision: str = "fp32"
    # The learning-rate schedule: one cycle (warm-up, cosine to zero), or warm-up-stable-decay,
    # whose stable phase is the same however long the run: a longer run continues from a shorter
    # one's state at the end of its stable phase, as if it had trained from the start.
    schedule: str = "onecycle"
    stable_epochs: int = 0  # wsd: epochs before the linear decay to zero
    warmup_epochs: float = 0.0  # wsd: the same in every run that continues another
    # Transfer learning: parameters under the ``head`` prefix train at ``lr``, the others at
    # ``lr * body_lr_scale`` (a pretrained body learns slower than its new classifier).
    head: str = ""
    body_lr_scale: float = 1.0
    # The student's input size when it is not the data's: each view, the same pixels the
    # teacher saw, is resized to it after normalising (``data.resize``). None: the data's.
    image_size: int | None = None

    def settings(self) -> dict[str, Any]:
        """What a checkpoint must have been made with to be resumed (the transfer fields only
        where set: checkpoints made before them still resume)."""
        unset = {"head": "", "body_lr_scale": 1.0, "image_size": None}
        return {
            k: v
            for k, v in asdict(self).items()
            if k not in ("device", "precision") and (k not in unset or v != unset[k])
        }

    def branch_settings(self) -> dict[str, Any]:
        """What a shorter run's stable state must share with this one to be continued."""
        return {k: v for k, v in self.settings().items() if k not in ("epochs", "stable_epochs")}


def fit(
    model: nn.Module,
    train: ImageSet,
    aug: Augmentation,
    stats: Stats,
    cfg: TrainConfig,
    *,
    views: TeacherViews | None = None,
    distiller: Distiller | None = None,
    on_epoch: EpochCallback | None = None,
    checkpoint: Path | None = None,
    branch: Path | None = None,
    start_from: Path | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place; returns the mean loss parts of every epoch.

    With ``checkpoint`` the whole training state is saved there after every epoch, and a run
    that finds one resumes after its last finished epoch with the same random streams.

    With the ``wsd`` schedule, ``branch`` receives the state at the end of the stable phase,
    and a run given ``start_from`` (a shorter run's ``branch``, with the same settings but its
    length) continues from there rather than from the start; a missing one trains from the
    start, to the same weights.

    With ``views`` each image is shown in one of the cached augmented views, and the distiller
    reads the teacher's cached outputs for exactly that view; the teacher itself is never called.
    Without it, fresh random views are drawn (how the teacher itself is trained).
    """
    distiller = distiller or plain()  # no teacher: cross-entropy on the labels
    missing = sorted(distiller.needs - (views.kinds if views is not None else frozenset()))
    if missing:
        raise ValueError(f"loss {distiller.loss.name!r} needs cached teacher {missing}")
    kinds = distiller.needs | {"logits"}
    size = views.map_size if views is not None else 0
    device = torch.device(cfg.device)
    model.to(device)
    distiller.to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    n = len(train)
    # A last batch of one image is left out (a different one each epoch, the order being
    # random): batch norm cannot train on a single value per channel.
    used = n - 1 if n % cfg.batch_size == 1 and n > 1 else n
    steps_per_epoch = math.ceil(used / cfg.batch_size)
    opt = _optimizer([model, distiller.learned], cfg)
    sched = _scheduler(opt, cfg, steps_per_epoch)
    history, first = _resume(
        model, distiller, opt, sched, gen, cfg, device, checkpoint=checkpoint, start_from=start_from
    )
    memory_format = training_format(model, device, cfg.channels_last)
    model.to(memory_format=memory_format)
    model.train()
    # The uint8 images, labels and cached views live where the model trains, so a step indexes,
    # augments and normalises there. A search worker moved them once (``with_train_on``,
    # ``TeacherViews.to``): here that is a no-op; a lone run moves them once per fit.
    images, labels = train.images.to(device), train.labels.to(device)
    if views is not None:
        views = views.to(device)
    norm = Normalizer(*stats, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    for epoch in range(first, cfg.epochs):
        # Loss parts are summed on the device and read once per epoch: no host sync per step.
        sums: dict[str, Tensor] = {}
        # Drawn on the host from the seeded generator (the same streams on every device), then
        # copied once per epoch.
        order = torch.randperm(n, generator=gen).to(device)
        which_view = (
            torch.randint(0, views.count, (n,), generator=gen).to(device)
            if views is not None
            else None
        )
        with _sync_debug(device):  # a step must not wait for the GPU
            for start in range(0, used, cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                teacher: dict[str, Tensor] = {}
                if views is not None:
                    v = which_view[idx]
                    view_params = views.params[v, idx]
                    teacher = {k: views.outputs[k][v, idx] for k in kinds}
                else:
                    view_params = aug.sample(len(idx), gen).to(device, non_blocking=True)
                x = norm(aug.apply(images[idx], view_params))
                if cfg.image_size is not None:
                    x = resize(x, cfg.image_size)
                x = in_layout(x, memory_format)  # real strides: see autodistill.layout
                with autocast:
                    student = forward_outputs(model, x, kinds, size)
                out = Outputs(
                    # Losses run in fp32 on whatever precision the forward pass ran in.
                    student={k: t.float() for k, t in student.items()},
                    targets=labels[idx],
                    teacher=teacher,
                    progress=(epoch * steps_per_epoch + start // cfg.batch_size)
                    / (cfg.epochs * steps_per_epoch),
                )
                parts = distiller(out)
                value = total(parts)
                opt.zero_grad(set_to_none=True)
                value.backward()
                opt.step()
                sched.step()
                logged = {k: t.detach() for k, t in parts.items()}
                logged.update(distiller.after_step(out))
                for k, t in logged.items():
                    sums[k] = sums[k] + t * len(idx) if k in sums else t * len(idx)
        epoch_stats = {k: float(s) / used for k, s in sums.items()}
        if not all(math.isfinite(v) for v in epoch_stats.values()):
            bad = next(k for k, v in epoch_stats.items() if not math.isfinite(v))
            raise TrainingDiverged(f"loss became {epoch_stats[bad]} in epoch {epoch + 1} ({bad})")
        history.append(epoch_stats)
        targets = [checkpoint] if checkpoint is not None else []
        if branch is not None and cfg.schedule == "wsd" and epoch + 1 == cfg.stable_epochs:
            targets.append(branch)
        if targets:
            state = _state(model, distiller, opt, sched, gen, cfg, device, epoch, history)
            for target in targets:
                _save(target, state)
        if on_epoch is not None:
            on_epoch(epoch, epoch_stats)
    return history


def _resume(
    model: nn.Module,
    distiller: Distiller,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    gen: torch.Generator,
    cfg: TrainConfig,
    device: torch.device,
    *,
    checkpoint: Path | None,
    start_from: Path | None,
) -> tuple[list[dict[str, float]], int]:
    """The history so far and the first epoch to train: a checkpoint of this run (its settings
    must match), else a shorter run's stable state (``start_from``, with the same settings but
    its length), restored into the model, distiller, optimizer, schedule and random streams;
    else nothing, from epoch 0."""
    resume = checkpoint if checkpoint is not None and checkpoint.is_file() else None
    if resume is None and start_from is not None and start_from.is_file():
        resume = start_from
    if resume is None:
        return [], 0
    state = _load_checkpoint(resume)
    if resume == checkpoint and state["config"] != cfg.settings():
        raise UserError(_other_settings(resume, state["config"], cfg.settings()))
    mine = cfg.branch_settings()
    if resume != checkpoint and {k: v for k, v in state["config"].items() if k in mine} != mine:
        raise UserError(_other_settings(resume, state["config"], cfg.settings()))
    try:
        model.load_state_dict(state["model"])
        distiller.load_state_dict(state["distiller"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and "cuda_rng" in state:  # dropout drew on the GPU
            torch.cuda.set_rng_state(state["cuda_rng"], device)
    except (RuntimeError, ValueError, TypeError, KeyError) as exc:
        first = first_line(exc)
        raise UserError(
            f"training checkpoint {resume} does not fit this student ({first[:200]}); "
            "delete it to train from the start"
        ) from None
    return state["history"], state["epoch"] + 1


def _state(
    model: nn.Module,
    distiller: Distiller,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    gen: torch.Generator,
    cfg: TrainConfig,
    device: torch.device,
    epoch: int,
    history: list[dict[str, float]],
) -> dict[str, Any]:
    """The whole training state after ``epoch``: what ``_resume`` restores."""
    cuda = {"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}
    return {
        "config": cfg.settings(),
        "epoch": epoch,
        "history": history,
        "model": model.state_dict(),
        "distiller": distiller.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        **cuda,
    }


def _scheduler(
    opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total, pct_start=0.15
        )
    if cfg.schedule != "wsd":
        raise ValueError(f"unknown schedule {cfg.schedule!r}")
    if not 0 < cfg.stable_epochs < cfg.epochs:
        raise ValueError(f"wsd needs 0 < stable_epochs < epochs, got {cfg.stable_epochs}")
    warm = max(1, round(cfg.warmup_epochs * steps_per_epoch))
    stable = cfg.stable_epochs * steps_per_epoch

    def factor(step: int) -> float:  # of cfg.lr after ``step`` steps
        if step < warm:
            return (step + 1) / warm
        if step < stable:
            return 1.0
        return max(0.0, (total - step) / (total - stable))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


@contextmanager
def _sync_debug(device: torch.device) -> Iterator[None]:
    """With ``AUTODISTILL_SYNC_DEBUG=warn|error`` on CUDA, torch warns about or refuses any
    operation in a training step that makes the host wait for the GPU (``.item()``, a copy to
    the host, indexing by a device mask): how tests/test_cuda.py holds the step to none."""
    mode = os.environ.get("AUTODISTILL_SYNC_DEBUG")
    if device.type != "cuda" or not mode:
        yield
        return
    before = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(before)


def _load_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint, read as tensors and plain values only: a file planted in a run
    directory cannot run code when it is loaded."""
    try:
        # On the CPU: the random states must be CPU tensors; the model and optimizer states
        # are copied onto the model's device by load_state_dict.
        state = torch.load(path, map_location="cpu", weights_only=True)
        _check_checkpoint(state)
    except Exception as exc:  # noqa: BLE001 - whatever the file holds, the user gets one line
        first = first_line(exc)
        raise UserError(
            f"training checkpoint {path} cannot be read as tensors and plain "
            f"values ({first[:200]}); delete it to train from the start"
        ) from None
    return state


_CHECKPOINT_KEYS = (
    "config",
    "epoch",
    "history",
    "model",
    "distiller",
    "optimizer",
    "scheduler",
    "generator",
    "torch_rng",
)


def _check_checkpoint(state: Any) -> None:
    """What ``fit`` reads from a checkpoint, of the types it reads; ValueError otherwise."""
    if not isinstance(state, dict) or set(_CHECKPOINT_KEYS) - set(state):
        raise ValueError("it is not a training checkpoint")
    if not isinstance(state["config"], dict) or not isinstance(state["epoch"], int):
        raise ValueError("its config or epoch is not what fit writes")
    if not isinstance(state["history"], list):
        raise ValueError("its history is not a list")
    for key in ("model", "distiller"):
        values = state[key].values() if isinstance(state[key], dict) else [None]
        if not all(isinstance(v, Tensor) for v in values):
            raise ValueError(f"its {key} weights are not all tensors")
    for key in ("generator", "torch_rng", *(["cuda_rng"] if "cuda_rng" in state else [])):
        if not isinstance(state[key], Tensor) or state[key].dtype != torch.uint8:
            raise ValueError(f"its {key} state is not a random generator's")
    if not isinstance(state["optimizer"], dict) or not isinstance(state["scheduler"], dict):
        raise ValueError("its optimizer or scheduler state is not a mapping")


def _other_settings(path: Path, then: dict[str, Any], now: dict[str, Any]) -> str:
    changed = sorted(k for k in set(then) | set(now) if then.get(k) != now.get(k))
    diffs = ", ".join(f"{k} {then.get(k)!r}, now {now.get(k)!r}" for k in changed)
    resume = f"--epochs {then.get('epochs')} resumes it, or " if changed == ["epochs"] else ""
    return (
        f"training checkpoint {path} was made with other settings ({diffs}); {resume}"
        "delete it to train from the start"
    )


def _save(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # an interrupted save leaves the previous epoch's checkpoint
        torch.save(state, tmp)


def _optimizer(modules: list[nn.Module], cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on norms and biases: decaying them only hurts small models.
    named = [(n, p) for m in modules for n, p in m.named_parameters() if p.requires_grad]
    groups = []
    for body in (False, True) if cfg.head else (False,):
        scale = cfg.body_lr_scale if body else 1.0
        part = [p for n, p in named if not cfg.head or n.startswith(cfg.head) != body]
        groups += [
            {"params": [p for p in part if p.ndim > 1], "weight_decay": cfg.weight_decay},
            {"params": [p for p in part if p.ndim <= 1], "weight_decay": 0.0},
        ]
        for g in groups[-2:]:
            g["lr"] = cfg.lr * scale
    if cfg.head:  # a body or head with no parameters of a kind: no group for them
        groups = [g for g in groups if g["params"]]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    if cfg.optimizer == "adamw":
        # One fused kernel for all parameters instead of a loop over them: small students
        # have dozens of small tensors, and the loop cost as much as a tenth of a step.
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


@torch.inference_mode()
def predict(model: nn.Module, images: Tensor, stats: Stats, batch_size: int = 500) -> Tensor:
    """Logits for uint8 images, in eval mode, on the model's device; returned on the CPU."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    norm = Normalizer(*stats, device=device)
    fmt = torch.contiguous_format
    out = [
        model(in_layout(norm(images[i : i + batch_size].to(device, non_blocking=True)), fmt))
        .float()
        .cpu()
        for i in range(0, len(images), batch_size)
    ]
    model.train(was_training)
    return torch.cat(out)


def evaluate(model: nn.Module, split: ImageSet, stats: Stats) -> float:
    """Top-1 accuracy (0..1: the unit of accuracy everywhere) on a split."""
    logits = predict(model, split.images, stats)
    return float((logits.argmax(1) == split.labels).float().mean())
