"""The resolved configuration of a search run, saved in its run directory."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from autodistill.errors import UserError
from autodistill.files import write_text_atomic

# Changing any of these after a study has started would mix incomparable trials.
STUDY_DEFINING = (
    "data", "space", "teacher", "teacher_checkpoint", "teacher_epochs", "views", "epochs",
    "max_params", "max_latency_ms", "seed", "worker_threads",
)  # fmt: skip


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
    space: str = "default"
    teacher: str = "resnet18"
    teacher_checkpoint: str | None = None
    teacher_epochs: int = 10
    views: int = 4  # augmented views of each training image that the teacher labels once
    budget: int = 50
    epochs: int = 3  # brief training per trial; a final student trains far longer
    early_stop: bool = True  # stop a trial at an epoch when earlier trials dominate it there
    max_params: int | None = None
    max_latency_ms: float | None = None
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
            (self.teacher_epochs >= 1,
             f"--teacher-epochs must be at least 1, got {self.teacher_epochs}"),
            (self.views >= 1, f"--views must be at least 1, got {self.views}"),
            (self.threads >= 0, f"--threads must be 0 (all cores) or more, got {self.threads}"),
            (self.jobs >= 1, f"--jobs must be at least 1, got {self.jobs}"),
            (self.heartbeat_s >= 1,
             f"--heartbeat must be at least 1 second, got {self.heartbeat_s}"),
            (self.max_params is None or self.max_params > 0,
             f"--max-params must be positive, got {self.max_params}"),
            (self.max_latency_ms is None or self.max_latency_ms > 0,
             f"--max-latency-ms must be positive, got {self.max_latency_ms}"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    @property
    def name(self) -> str:
        """The study name: given, or ``<data>-<space>``."""
        if self.study_name:
            return self.study_name
        data = self.data.replace("imagefolder:", "folder-").replace("/", "_").strip("_")
        return f"{data}-{Path(self.space).stem}"

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / self.name

    @property
    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()

    @property
    def resolved_threads(self) -> int:
        """Threads of each worker: given, or this machine's cores shared out among the jobs."""
        return self.threads or max(1, (os.cpu_count() or 1) // self.jobs)

    @property
    def worker_threads(self) -> int:  # the name a changed-settings message shows
        return self.resolved_threads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


CONFIG_FILE = "config.yaml"
STUDENTS_DIR = "students"  # fully trained students: students/trial-N/{student.safetensors,...}


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
        "cache_dir": str(config.resolved_cache_dir),
        "storage": config.storage or str(config.run_dir / "study.journal"),
        "study_name": config.name,
    }
    doc = {"config": config.to_dict(), "resolved": resolved, "versions": versions}
    path = run_dir / CONFIG_FILE
    write_text_atomic(path, yaml.safe_dump(doc, sort_keys=False))
    return path


def load_config(run_dir: Path) -> SearchConfig:
    """The config a run directory was made with."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(
            f"{run_dir} is not a run directory: {path} is missing (run 'autodistill search' first)"
        )
    return SearchConfig.from_dict(yaml.safe_load(path.read_text())["config"])


def check_resumable(old: SearchConfig, new: SearchConfig) -> None:
    """Refuse to resume a study with settings that would make its trials incomparable."""
    changed = [k for k in STUDY_DEFINING if getattr(old, k) != getattr(new, k)]
    if changed:
        diffs = ", ".join(f"{k}: {getattr(old, k)!r} -> {getattr(new, k)!r}" for k in changed)
        raise UserError(
            f"{new.run_dir} holds a study made with other settings ({diffs}); "
            "use another --study-name or --out, or the original settings"
            + (
                " (--threads sets the threads per worker that latency was timed with)"
                if "worker_threads" in changed
                else ""
            )  # fmt: skip
        )
