"""The resolved configuration of a search run, saved in its run directory."""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import yaml

from autodistill.device import PRECISIONS, resolve_device, resolve_precision
from autodistill.errors import UserError
from autodistill.files import write_text_atomic
from autodistill.latency import LatencyTarget
from autodistill.objectives import DEFAULT, get_objective, parse_objectives

# Changing any of these after a study has started would mix incomparable trials.
STUDY_DEFINING = (
    "data", "space", "teacher", "teacher_checkpoint", "teacher_epochs", "views", "epochs",
    "objectives", "limits", "seed", "precision", "latency_runtime", "latency_device",
    "latency_precision", "target_threads", "latency_batch", "min_accuracy", "fidelity",
    "group_by", "search_subset",
)  # fmt: skip
# Study-defining settings that studies made before them did not record: left out of a study's
# settings while at these defaults, so such a study still resumes.
LATER_DEFINING = {"min_accuracy": None, "fidelity": "brief", "group_by": None,
                  "search_subset": None}  # fmt: skip
FIDELITIES = ("brief", "multi")
PROMOTION_SHARE = 0.15  # default promotions per trial of the budget (multi-fidelity)
PROMOTION_TIME = 0.5  # default bound on their time, a share of the first-rung trials' time
# What a run made before latency had a target was timed with (its config lacks the fields).
LEGACY_TARGET = {
    "latency_runtime": "torch",
    "latency_precision": "fp32",
    "latency_batch": 1,
    "precision": "fp32",
}


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
        raise UserError(f"--min-accuracy {text!r}: give a validation accuracy in (0, 1] "
                        "(0.9), or a multiple of the teacher's up to 1.5 (0.95x)")  # fmt: skip
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
class SearchConfig:
    """Every choice a search run depends on (the CLI's options, resolved)."""

    data: str = "mnist5k"
    data_dir: str = "data"
    download: bool = False
    # A regular expression whose first capture group names a file's group (a speaker, a site):
    # the validation split carved from train/ then holds out whole groups (image folders).
    group_by: str | None = None
    # Trials train on a stratified subset of the training split: a fraction per class (0.25) or
    # a count of images (5000); the teacher, its views and `train` use all of it.
    search_subset: float | None = None
    space: str = "default"
    teacher: str = "resnet18"
    teacher_checkpoint: str | None = None
    teacher_epochs: int = 10
    views: int = 4  # augmented views of each training image that the teacher labels once
    budget: int = 50
    epochs: int = 3  # brief training per trial; a final student trains far longer
    # brief: every trial trains --epochs; multi: trials start at --epochs and the best third of
    # each rung is promoted on (3 -> 9 -> 27 epochs), continuing from where it was.
    fidelity: str = "brief"
    promotions: int = 0  # multi: how many promotions in all; 0: 15% of the budget
    # multi: promotions and second seeds take at most this share of the first-rung trials'
    # time (so the search costs at most 1 + this times a brief one); 0: no bound
    promotion_time: float = PROMOTION_TIME
    early_stop: bool = True  # stop a trial at an epoch when earlier trials dominate it there
    objectives: tuple[str, ...] = DEFAULT  # what the front trades off (objectives registry)
    limits: dict[str, float] = field(default_factory=dict)  # objective -> the most it may be
    # The least validation accuracy a student may have: a fraction ("0.9") or a multiple of the
    # teacher's ("0.95x"); a trained student below it is infeasible, and a rung stops one that
    # cannot reach it.
    min_accuracy: str | None = None
    device: str = "auto"  # where students and the teacher train
    precision: str = "auto"  # training: bf16 autocast on CUDA, fp32 elsewhere (device.py)
    # The deployment target every latency is measured on (latency.LatencyTarget): ONNX Runtime
    # by default, what `export` ships; its cost per candidate is measured in
    # results/benchmarks/target_latency.md.
    latency_runtime: str = "onnxruntime"
    latency_device: str = "cpu"
    latency_precision: str = "fp32"
    latency_threads: int = 0  # 0: the worker's --threads
    latency_batch: int = 1
    sampler: str = "tpe"
    seed: int = 0
    threads: int = 0  # per worker; 0: the cores shared out among --jobs; latency is timed with it
    jobs: int = 1  # local worker processes; more workers may join from elsewhere via --storage
    storage: str | None = None
    heartbeat_s: int = 60  # a database worker silent for 3x this long is dead; its trial reruns
    study_name: str | None = None
    out: str = "results"
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.budget >= 1, f"--budget must be a positive number of trials, got {self.budget}"),
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.fidelity in FIDELITIES,
             f"--fidelity {self.fidelity!r}: choose {' or '.join(FIDELITIES)}"),
            (self.fidelity != "multi" or self.epochs >= 2,
             f"--fidelity multi needs --epochs 2 or more (a first rung with a stable phase "
             f"and a decay), got {self.epochs}"),
            (self.promotions >= 0, f"--promotions must be 0 (the default share) or more, got "
             f"{self.promotions}"),
            (self.fidelity == "multi" or not self.promotions,
             "--promotions needs --fidelity multi (a brief search promotes nothing)"),
            (math.isfinite(self.promotion_time) and self.promotion_time >= 0,
             f"--promotion-time must be 0 (no bound) or a positive share of the first-rung "
             f"trials' time, got {self.promotion_time}"),
            (self.teacher_epochs >= 1,
             f"--teacher-epochs must be at least 1, got {self.teacher_epochs}"),
            (self.views >= 1, f"--views must be at least 1, got {self.views}"),
            (self.threads >= 0, f"--threads must be 0 (all cores) or more, got {self.threads}"),
            (self.jobs >= 1, f"--jobs must be at least 1, got {self.jobs}"),
            (self.heartbeat_s >= 1,
             f"--heartbeat must be at least 1 second, got {self.heartbeat_s}"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        if self.study_name is not None and (
            not STUDY_NAME.fullmatch(self.study_name) or ".." in self.study_name
        ):
            shown = self.study_name if len(self.study_name) <= 60 else self.study_name[:60] + "..."
            raise UserError(f"--study-name {shown!r} is not a name: it becomes a folder under "
                            "--out, so use 1-100 letters, digits, '.', '_' or '-', starting "
                            "with a letter or digit, without '..'")  # fmt: skip
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
        if self.latency_threads < 0:
            raise UserError(f"--latency-threads must be 0 (the worker's threads) or more, got "
                            f"{self.latency_threads}")  # fmt: skip
        self.latency_target  # noqa: B018 - checks the target's fields, one line if wrong
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
                raise UserError(f"{name} cannot be limited (only what is measured before "
                                "training and smaller is better)")  # fmt: skip
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and value > 0)
            ):
                raise UserError(f"{objective.option} must be a positive finite number, "
                                f"got {value!r}")  # fmt: skip

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
        """Promotions of a multi-fidelity search: given, or 15% of the budget; none if brief."""
        if self.fidelity != "multi":
            return 0
        return self.promotions or max(1, round(PROMOTION_SHARE * self.budget))

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
        return self.latency_threads or self.resolved_threads

    @property
    def latency_target(self) -> LatencyTarget:
        """Where every latency of the study is measured."""
        return LatencyTarget(runtime=self.latency_runtime, device=self.latency_device,
                             precision=self.latency_precision, threads=self.target_threads,
                             batch=self.latency_batch)  # fmt: skip

    @property
    def resolved_device(self) -> torch.device:
        """The device to train on; a UserError when it is not on this machine."""
        return resolve_device(self.device)

    def with_device(self, device: str) -> SearchConfig:
        return replace(self, device=device)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["objectives"] = list(self.objectives)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchConfig:
        d = dict(d)
        # Runs made before objectives were a registry kept their two limits as fields.
        limits = dict(d.get("limits") or {})
        for old, name in (("max_params", "params"), ("max_latency_ms", "latency_ms")):
            if d.get(old) is not None:
                limits.setdefault(name, d[old])
        d["limits"] = limits
        for key, value in LEGACY_TARGET.items():
            d.setdefault(key, value)
        if "latency_device" not in d:  # timed where it trained, then
            d["latency_device"] = "cpu" if d.get("device", "auto") in ("auto", "cpu") else "cuda"
        if "objectives" in d:
            d["objectives"] = tuple(d["objectives"])
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


CONFIG_FILE = "config.yaml"
STUDENTS_DIR = "students"  # fully trained students: students/trial-N/{student.safetensors,...}
# Multi-fidelity: each candidate's stable state at a rung, which its promotion continues from.
CHECKPOINTS_DIR = "checkpoints"


def save_config(config: SearchConfig, run_dir: Path) -> Path:
    """Write the resolved config and the package versions it ran with."""
    versions = {}
    for pkg in ("autodistill", "torch", "torchvision", "timm", "optuna", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    resolved = {
        "threads": config.resolved_threads,
        "latency_threads": config.target_threads,
        "device": str(config.resolved_device),
        "cache_dir": str(config.resolved_cache_dir),
        "storage": config.storage or str(config.run_dir / "study.journal"),
        "study_name": config.name,
    }
    doc = {"config": config.to_dict(), "resolved": resolved, "versions": versions}
    path = run_dir / CONFIG_FILE
    # It keeps the storage URL (report and resume need it): with a password, owner-only.
    write_text_atomic(path, yaml.safe_dump(doc, sort_keys=False),
                      private=has_password(config.storage))  # fmt: skip
    return path


def load_config(run_dir: Path) -> SearchConfig:
    """The config a run directory was made with."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(
            f"{run_dir} is not a run directory: {path} is missing (run 'autodistill search' first)"
        )
    doc = yaml.safe_load(path.read_text())
    config = dict(doc["config"])
    if "latency_device" not in config:  # timed where it trained, as it resolved then
        config["latency_device"] = str(doc.get("resolved", {}).get("device", "cpu"))
    return SearchConfig.from_dict(config)


def check_resumable(run_dir: Path, new: SearchConfig) -> None:
    """Refuse to resume the study in ``run_dir`` with settings that would make its trials
    incomparable, or one made by an autodistill that kept accuracy in percent."""
    doc = yaml.safe_load((Path(run_dir) / CONFIG_FILE).read_text())
    if "latency_runtime" not in doc["config"] and "objectives" in doc["config"]:
        raise UserError(f"{run_dir} was made by an autodistill that timed latency in eager "
                        "PyTorch only (no latency target recorded); 'autodistill report', "
                        "'train' and 'export' read it, but a search cannot resume it: use "
                        "another --study-name or --out")  # fmt: skip
    if "objectives" not in doc["config"]:
        raise UserError(f"{run_dir} was made by an older autodistill (accuracy in percent, no "
                        "objectives recorded); 'autodistill report' reads it, but a search "
                        "cannot resume it: use another --study-name or --out")  # fmt: skip
    old = SearchConfig.from_dict(doc["config"])
    if "latency_threads" not in doc["config"]:  # timed with the threads it resolved then
        threads = doc.get("resolved", {}).get("threads") or old.resolved_threads
        old = replace(old, latency_threads=int(threads))
    changed = [k for k in STUDY_DEFINING if getattr(old, k) != getattr(new, k)]
    diffs = [f"{k}: {getattr(old, k)!r} -> {getattr(new, k)!r}" for k in changed]
    if changed:
        diffs = ", ".join(diffs)
        raise UserError(
            f"{new.run_dir} holds a study made with other settings ({diffs}); "
            "use another --study-name or --out, or the original settings"
            + (
                " (--latency-threads, or else --threads, sets the threads latency is timed with)"
                if "target_threads" in changed
                else ""
            )  # fmt: skip
        )
