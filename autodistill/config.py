"""The options of a search run: each with its name, type, default and help, defined once."""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from autodistill.device import CHOICES as DEVICE_CHOICES
from autodistill.device import PRECISIONS, resolve_device, resolve_precision
from autodistill.errors import UserError
from autodistill.latency import LatencyTarget
from autodistill.objectives import DEFAULT, OBJECTIVES, get_objective, parse_objectives
from autodistill.options import coerce, option

FIDELITIES = ("brief", "multi")
PROMOTION_SHARE = 0.15  # default promotions per trial of the budget (multi-fidelity)
PROMOTION_TIME = 0.5  # default bound on their time, a share of the first-rung trials' time
HEARTBEAT_S = 60  # a database worker silent for 3x this long is taken as dead


STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def mask_url(url: str | None) -> str | None:
    """A storage URL with its password hidden, for anything printed or raised:
    ``postgresql://user:***@host/db``."""
    if url is None or "://" not in url:
        return url
    return re.sub(r"(://[^/:@]*):[^@/]*@", r"\1:***@", url)


def parse_floor(text: str) -> tuple[float, bool]:
    """``--min-accuracy``: (value, relative to the teacher?) from ``0.9`` or ``0.95x``.

    Raises:
        UserError: it is neither.
    """
    body = str(text).strip().lower()
    relative = body.endswith("x")
    try:
        value = float(body.removesuffix("x"))
    except ValueError:
        value = math.nan
    most = 1.5 if relative else 1.0
    if not (math.isfinite(value) and 0 < value <= most):
        raise UserError(
            f"--min-accuracy {text!r}: give a validation accuracy in (0, 1] "
            "(0.9), or a multiple of the teacher's up to 1.5 (0.95x)"
        )
    return value, relative


def _floor_text(value: str | float) -> str:
    number, relative = parse_floor(str(value))
    return f"{number:g}x" if relative else f"{number:g}"


def has_password(url: str | None) -> bool:
    return url is not None and mask_url(url) != url


def default_cache_dir() -> Path:
    """Where teachers and teacher logits are cached: ``$AUTODISTILL_CACHE`` or ~/.cache."""
    env = os.environ.get("AUTODISTILL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "autodistill"


@dataclass(frozen=True)
class Fidelity:
    """How long trials train: all for --epochs (brief), or promoted on in rungs (multi)."""

    kind: str = option(
        "brief",
        "brief: every trial trains --epochs; multi: the best third of each rung (by the "
        "objectives) is promoted on, 3 -> 9 -> 27 epochs, continuing from where it was, so the "
        "front's scores are closer to full training",
        flag="--fidelity",
        choices=FIDELITIES,
    )
    promotions: int = option(
        0,
        "with --fidelity multi: how many promotions in all, paced over the search, second "
        "seeds of promoted front points included (0: 15%% of the budget)",
    )
    promotion_time: float = option(
        PROMOTION_TIME,
        "with --fidelity multi: promotions and second seeds take at most this "
        "share of the time the first-rung trials took, paced as they finish (0.5: the search "
        "costs at most 1.5x a brief one; 0: no bound)",
    )

    def __post_init__(self) -> None:
        checks = [
            (
                self.kind in FIDELITIES,
                f"--fidelity {self.kind!r}: choose {' or '.join(FIDELITIES)}",
            ),
            (
                self.promotions >= 0,
                f"--promotions must be 0 (the default share) or more, got {self.promotions}",
            ),
            (
                self.kind == "multi" or not self.promotions,
                "--promotions needs --fidelity multi (a brief search promotes nothing)",
            ),
            (
                math.isfinite(self.promotion_time) and self.promotion_time >= 0,
                f"--promotion-time must be 0 (no bound) or a positive share of the first-rung "
                f"trials' time, got {self.promotion_time}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    def resolved_promotions(self, budget: int) -> int:
        """Promotions of a multi-fidelity search: given, or 15% of the budget; none if brief."""
        if self.kind != "multi":
            return 0
        return self.promotions or max(1, round(PROMOTION_SHARE * budget))


def _latency() -> LatencyTarget:
    return LatencyTarget(threads=0)  # 0: timed with the worker's --threads


@dataclass(frozen=True)
class SearchConfig:
    """Every option of a search run: its name, type, default and help (the CLI's options are
    generated from these fields, and ``autodistill.search`` passes its keywords on to them)."""

    budget: int = option(
        50,
        "trials in the study (a resumed study runs only the rest); with --fidelity multi, "
        "promotions and second seeds come on top (--promotions, --promotion-time)",
    )
    data: str = option(
        "mnist5k",
        "mnist5k (the default), digits, mnist, fashion-mnist, cifar10, cifar100, "
        "svhn or imagefolder:PATH",
    )
    data_dir: str = option("data", "where downloadable datasets live")
    download: bool = option(False, "download missing datasets")
    group_by: str | None = option(
        None,
        "carve validation from train/ by whole groups: the first capture group of REGEX "
        r"in a file's name is its group (e.g. '^\d+_([a-z]+)_' for a speaker); image folders",
        metavar="REGEX",
    )
    search_subset: float | None = option(
        None,
        "trials train on a stratified subset of the training split: a fraction of each "
        "class (0.25) or a count of images (5000); the teacher and 'train' use all of it",
        metavar="F",
    )
    image_size: int | None = option(
        None,
        "the side, in pixels, of the images students see: by default the data's own (an image "
        "folder's when every image is square, shares it and is at most 64 px; else 32, said "
        "in one line when the search starts)",
        metavar="PX",
    )
    space: str = option("default", "search space name or YAML path")
    teacher: str = option(
        "resnet18",
        "the teacher: a timm model name (built for the data and trained here), or one you "
        "have: timm:NAME or torchvision:NAME (with --teacher-weights), hf:FOLDER, "
        "onnx:FILE, pt2:FILE (a torch.export program); in the Python API also an nn.Module",
    )
    teacher_checkpoint: str | None = option(
        None, "weights of a bare-name teacher trained here before (.safetensors or .pt)"
    )
    teacher_weights: str | None = option(
        None,
        "weights of a timm: or torchvision: teacher, pretrained or fine-tuned, of the "
        "unmodified architecture (.safetensors, or .pt/.pth read without unpickling code)",
        metavar="FILE",
    )
    teacher_size: int | None = option(
        None,
        "the side, in pixels, of a given teacher's input (by default its own config's, or its "
        "graph's; else the data's): each view is resized to it",
        metavar="PX",
    )
    teacher_mean: str | None = option(
        None,
        "the per-channel mean a given teacher's input is normalised with, e.g. "
        "0.485,0.456,0.406 (by default its own config's; else the data's)",
        metavar="M[,M,M]",
    )
    teacher_std: str | None = option(
        None,
        "the per-channel std of a given teacher's input (as --teacher-mean)",
        metavar="S[,S,S]",
    )
    teacher_epochs: int = option(
        10,
        "epochs to train the teacher when no checkpoint is given, or to fine-tune a given "
        "teacher whose classes are not the data's",
    )
    views: int = option(4, "augmented views per training image in the teacher cache")
    epochs: int = option(
        3, "brief training epochs per trial (the first rung with --fidelity multi)"
    )
    fidelity: Fidelity = option(factory=Fidelity, help="fidelity (how long trials train)")
    early_stop: bool = option(
        True,
        "stop a trial at an epoch where an earlier trial is more accurate and no worse on "
        "the others (--no-early-stop trains every feasible trial for all --epochs)",
    )
    objectives: tuple[str, ...] = option(
        DEFAULT, "what the front trades off, two or more of: " + ", ".join(OBJECTIVES), parse=str
    )
    limits: dict[str, float] = option(factory=dict, help="refuse students with", per_objective=True)
    min_accuracy: str | None = option(
        None,
        "the least validation accuracy a student may have: 0.9, or 0.95x of the "
        "teacher's; a student below it is infeasible, and a trial is stopped at an epoch from "
        "which no earlier trial gained enough to reach it",
        metavar="FLOOR",
    )
    device: str = option("auto", f"where to train: {DEVICE_CHOICES}")
    precision: str = option(
        "auto", "training precision: auto is bf16 on CUDA, fp32 elsewhere", choices=PRECISIONS
    )
    latency: LatencyTarget = option(
        factory=_latency,
        help="latency target (what every latency of the study is measured on)",
        prefix="latency",
    )
    sampler: str = option("tpe", "tpe (the default), random, nsga2 or gp")
    seed: int = option(0, "seed of the data split, teacher, sampler and training")
    threads: int = option(0, "CPU threads for training and latency (0: all cores)")
    jobs: int = option(
        1,
        "worker processes on this machine; they share the budget and the cores, and one "
        "whose trial crashes it (a segmentation fault, the out-of-memory killer) is replaced",
    )
    storage: str | None = option(
        None,
        "Optuna storage URL or journal file (by default study.journal in the run dir); "
        "workers started anywhere with the same --storage and --study-name join one study, "
        "e.g. postgresql://user:pass@host/db",
    )
    heartbeat: int = option(
        HEARTBEAT_S,
        "with a database: a worker silent for 3x this long is dead and its trial runs again",
        metavar="SECONDS",
    )
    study_name: str | None = option(None, "study name (by default <data>-<space>)")
    out: str = option("results", "parent of the run directory")
    cache_dir: str | None = option(
        None, "teacher cache (by default $AUTODISTILL_CACHE or ~/.cache/autodistill)"
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "fidelity", coerce(Fidelity, self.fidelity))
        object.__setattr__(self, "latency", coerce(LatencyTarget, self.latency))
        checks = [
            (self.budget >= 1, f"--budget must be a positive number of trials, got {self.budget}"),
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (
                self.fidelity.kind != "multi" or self.epochs >= 2,
                f"--fidelity multi needs --epochs 2 or more (a first rung with a stable phase "
                f"and a decay), got {self.epochs}",
            ),
            (
                self.teacher_epochs >= 1,
                f"--teacher-epochs must be at least 1, got {self.teacher_epochs}",
            ),
            (self.views >= 1, f"--views must be at least 1, got {self.views}"),
            (
                self.image_size is None or self.image_size >= 8,
                f"--image-size must be at least 8 pixels, got {self.image_size}",
            ),
            (self.threads >= 0, f"--threads must be 0 (all cores) or more, got {self.threads}"),
            (self.jobs >= 1, f"--jobs must be at least 1, got {self.jobs}"),
            (self.heartbeat >= 1, f"--heartbeat must be at least 1 second, got {self.heartbeat}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        if self.study_name is not None and (
            not STUDY_NAME.fullmatch(self.study_name) or ".." in self.study_name
        ):
            shown = self.study_name if len(self.study_name) <= 60 else self.study_name[:60] + "..."
            raise UserError(
                f"--study-name {shown!r} is not a name: it becomes a folder under "
                "--out, so use 1-100 letters, digits, '.', '_' or '-', starting "
                "with a letter or digit, without '..'"
            )
        if self.search_subset is not None:
            value = self.search_subset
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (0 < value < 1 or (value >= 2 and float(value).is_integer()))
            ):
                raise UserError(
                    f"--search-subset {value!r}: give a fraction of each class in (0, 1), such "
                    "as 0.25, or a count of images, such as 5000"
                )
            object.__setattr__(self, "search_subset", float(value))
        object.__setattr__(self, "objectives", parse_objectives(self.objectives))
        if self.min_accuracy is not None:
            object.__setattr__(self, "min_accuracy", _floor_text(self.min_accuracy))
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision {self.precision!r}: choose {', '.join(PRECISIONS)}")
        # Floats, so 100000 from the CLI and 1e5 from Python are the same setting.
        for value in self.limits.values():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UserError(f"a limit must be a number, got {value!r}")
        object.__setattr__(self, "limits", {k: float(v) for k, v in self.limits.items()})
        for name, value in self.limits.items():
            objective = get_objective(name)
            if not objective.limitable:
                raise UserError(
                    f"{name} cannot be limited (only what is measured before "
                    "training and smaller is better)"
                )
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and value > 0)
            ):
                raise UserError(
                    f"{objective.option} must be a positive finite number, got {value!r}"
                )

    def accuracy_floor(self, teacher_val_accuracy: float) -> float | None:
        """The validation accuracy (0..1) a student must reach; None without --min-accuracy."""
        if self.min_accuracy is None:
            return None
        value, relative = parse_floor(self.min_accuracy)
        return value * teacher_val_accuracy if relative else value

    @property
    def name(self) -> str:
        """The study name: given, or ``<data>-<space>``."""
        if self.study_name:
            return self.study_name
        data = self.data
        space = Path(self.space).stem
        if data.startswith("imagefolder:"):  # the folder's own name, not its whole path
            # Runs made before kept the whole path; such a run is resumed under its old name.
            old = data.replace("imagefolder:", "folder-").replace("/", "_").strip("_")
            if (Path(self.out) / f"{old}-{space}").is_dir():
                return f"{old}-{space}"
            data = "folder-" + (Path(data.split(":", 1)[1].rstrip("/\\")).name or "root")
        return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{data}-{space}")

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / self.name

    @property
    def resolved_promotions(self) -> int:
        return self.fidelity.resolved_promotions(self.budget)

    @property
    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()

    @property
    def resolved_threads(self) -> int:
        """Threads of each worker: given, or this machine's cores shared out among the jobs."""
        return self.threads or max(1, (os.cpu_count() or 1) // self.jobs)

    @property
    def resolved_precision(self) -> str:
        """fp32 or bf16 on the training device."""
        return resolve_precision(self.precision, self.resolved_device)

    @property
    def target_threads(self) -> int:
        """Threads every latency of the study is timed with."""
        return self.latency.threads or self.resolved_threads

    @property
    def latency_target(self) -> LatencyTarget:
        """Where every latency of the study is measured, its threads resolved."""
        return replace(self.latency, threads=self.target_threads)

    @property
    def resolved_device(self) -> torch.device:
        """The device to train on; a UserError when it is not on this machine."""
        return resolve_device(self.device)

    def check_present(self) -> None:
        """Raise a UserError unless this machine has the device to train on and the latency
        target's device and runtime."""
        resolve_device(self.device)
        self.latency_target.check_present()

    def with_device(self, device: str) -> SearchConfig:
        return replace(self, device=device)

    def to_dict(self) -> dict[str, Any]:
        """As saved in the run directory's config.yaml (nested options as mappings)."""
        d = asdict(self)
        d["objectives"] = list(self.objectives)
        return d
