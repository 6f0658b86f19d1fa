"""A run directory's config.yaml: the options a search ran with, saved, read back (migrating
what older autodistills wrote), and checked before a search resumes the run."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from autodistill.config import SearchConfig, has_password
from autodistill.errors import UserError
from autodistill.files import write_text_atomic
from autodistill.identity import changed_settings, settings
from autodistill.options import declared

CONFIG_FILE = "config.yaml"
STUDENTS_DIR = "students"  # fully trained students: students/trial-N/{student.safetensors,...}
# Multi-fidelity: each candidate's stable state at a rung, which its promotion continues from.
CHECKPOINTS_DIR = "checkpoints"
# What a run made before latency had a target was timed with (its config lacks the fields).
LEGACY_TARGET = {"runtime": "torch", "precision": "fp32", "batch": 1}


def save_config(config: SearchConfig, run_dir: Path) -> Path:
    """Write the config, what it resolved to here, and the package versions it ran with."""
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
    write_text_atomic(
        path, yaml.safe_dump(doc, sort_keys=False), private=has_password(config.storage)
    )
    return path


def load_config(run_dir: Path) -> SearchConfig:
    """The config a run directory was made with."""
    return config_from(_read(run_dir))


def _read(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(
            f"{run_dir} is not a run directory: {path} is missing (run 'autodistill search' first)"
        )
    return yaml.safe_load(path.read_text())


def config_from(doc: dict[str, Any]) -> SearchConfig:
    """A saved config.yaml's document as a config, with what older autodistills saved
    (flat latency and fidelity fields, limits as fields, no latency target) brought forward."""
    d = dict(doc["config"])
    resolved = doc.get("resolved") or {}
    # Runs made before objectives were a registry kept their two limits as fields.
    limits = dict(d.get("limits") or {})
    for old, name in (("max_params", "params"), ("max_latency_ms", "latency_ms")):
        if d.get(old) is not None:
            limits.setdefault(name, d[old])
    d["limits"] = limits
    if "heartbeat_s" in d:
        d["heartbeat"] = d.pop("heartbeat_s")
    d.setdefault("precision", "fp32")  # trained in fp32 before precision was an option
    if "latency" not in d:  # flat latency_* fields, or none before latency had a target
        latency = {k: d.get(f"latency_{k}", v) for k, v in LEGACY_TARGET.items()}
        # Without a recorded target: timed where it trained, with the threads it resolved to.
        trained = "cpu" if d.get("device", "auto") in ("auto", "cpu") else "cuda"
        latency["device"] = d.get("latency_device") or str(resolved.get("device", trained))
        latency["threads"] = d.get("latency_threads", resolved.get("threads", 0))
        d["latency"] = latency
    if "fidelity" in d and not isinstance(d["fidelity"], dict):  # a flat field, before
        d["fidelity"] = {
            "kind": d["fidelity"],
            "promotions": d.get("promotions", 0),
            "promotion_time": d.get("promotion_time", 0.5),
        }
    if "objectives" in d:
        d["objectives"] = tuple(d["objectives"])
    if "image_size" not in d and str(d.get("data", "")).startswith("imagefolder:"):
        d["image_size"] = 32  # what every image folder was read at before --image-size
    known = {o.name for o in declared(SearchConfig)}
    return SearchConfig(**{k: v for k, v in d.items() if k in known})


def check_resumable(run_dir: Path, new: SearchConfig) -> None:
    """Refuse to resume the study in ``run_dir`` with settings that would make its trials
    incomparable, or one made by an autodistill whose studies cannot be resumed, before
    anything is prepared or written."""
    doc = _read(run_dir)
    saved = doc["config"]
    if "objectives" not in saved:
        raise UserError(
            f"{run_dir} was made by an older autodistill (accuracy in percent, no "
            "objectives recorded); 'autodistill report' reads it, but a search "
            "cannot resume it: use another --study-name or --out"
        )
    if "latency_runtime" not in saved and "latency" not in saved:
        raise UserError(
            f"{run_dir} was made by an autodistill that timed latency in eager "
            "PyTorch only (no latency target recorded); 'autodistill report', "
            "'train' and 'export' read it, but a search cannot resume it: use "
            "another --study-name or --out"
        )
    refusal = changed_settings(str(new.run_dir), settings(config_from(doc)), settings(new))
    if refusal:
        raise UserError(refusal)
