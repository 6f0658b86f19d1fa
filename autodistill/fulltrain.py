"""Fully train chosen students of a run: rebuild each from its trial, train long, test once."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from scipy.stats import kendalltau
from tqdm.auto import tqdm

from autodistill import search
from autodistill.config import STUDENTS_DIR, load_config
from autodistill.errors import UserError
from autodistill.families import InputSpec, build_student
from autodistill.measure import count_flops, count_params, measure_latency
from autodistill.pick import pick, pick_within, top_front
from autodistill.prepare import Prepared, prepare
from autodistill.spaces import load_space
from autodistill.train import TrainConfig, evaluate, fit, make_distiller

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FullTrainOutcome:
    """The students trained now, and how well brief training ranked them."""

    students: list[dict[str, Any]]
    kendall_tau: float | None
    files: dict[str, Path]


def choose(
    trials, *, trial: int | None, rule: str | None, max_params: float | None,
    max_latency_ms: float | None, top: int | None,
) -> list[int]:  # fmt: skip
    """The trial numbers the user asked for, by exactly one way of asking."""
    ways = [trial is not None, rule is not None,
            max_params is not None or max_latency_ms is not None, top is not None]  # fmt: skip
    if sum(ways) > 1:
        raise UserError("give one of --trial, --pick, --max-params/--max-latency-ms or --top")
    if trial is not None:
        return [trial]
    if top is not None:
        return top_front(trials, top)
    if ways[2]:
        return [pick_within(trials, max_params=max_params, max_latency_ms=max_latency_ms)]
    return [pick(trials, rule or "knee")]


def train_students(
    run_dir: Path,
    *,
    trial: int | None = None,
    rule: str | None = None,
    max_params: float | None = None,
    max_latency_ms: float | None = None,
    top: int | None = None,
    epochs: int = 30,
    progress: bool = True,
) -> FullTrainOutcome:
    """Fully train the chosen student(s) of a run and test each once on the held-out test split."""
    if epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {epochs}")
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    study = search.load_study(search.open_storage(config.storage, run_dir), config.name)
    numbers = choose(search.trials_frame(study), trial=trial, rule=rule, max_params=max_params,
                     max_latency_ms=max_latency_ms, top=top)  # fmt: skip
    chosen = [(n, *search.trial_candidate(study, n)) for n in numbers]
    prep = prepare(config, load_space(config.space).teacher_outputs(), progress=progress)
    students = [
        _train_one(prep, n, cand, attrs, epochs, run_dir / STUDENTS_DIR / f"trial-{n}", progress)
        for n, cand, attrs in chosen
    ]
    files = {f"trial {s['trial']}": Path(s["weights"]) for s in students}
    tau = None
    if top is not None:
        tau = _kendall([s["brief_val_accuracy"] for s in students],
                       [s["val_accuracy"] for s in students])  # fmt: skip
        path = run_dir / STUDENTS_DIR / "ranking.json"
        path.write_text(json.dumps({"kendall_tau": tau, "students": [
            {k: s[k] for k in ("trial", "arch", "brief_val_accuracy", "val_accuracy",
                               "test_accuracy")} for s in students]}, indent=2))  # fmt: skip
        files["ranking"] = path
    return FullTrainOutcome(students, tau, files)


def _kendall(brief: list[float], full: list[float]) -> float | None:
    tau = kendalltau(brief, full).statistic
    return None if tau != tau else float(tau)  # NaN when one ranking is all ties


def _train_one(
    prep: Prepared, number: int, cand, attrs: dict[str, Any], epochs: int, out: Path,
    progress: bool,
) -> dict[str, Any]:  # fmt: skip
    done = out / "metrics.json"
    if done.is_file():
        previous = json.loads(done.read_text())
        if previous["epochs"] == epochs and previous["candidate"] == cand.to_dict():
            log.info("trial %d already fully trained (%s)", number, done)
            return previous
    data = prep.data
    spec = InputSpec(data.in_chans, data.image_size, data.num_classes)
    shape = (spec.in_chans, spec.image_size, spec.image_size)
    model = build_student(cand.family, cand.arch, spec)
    distiller = make_distiller(cand.loss, cand.distill, model, shape, spec.num_classes, prep.views)
    hp = cand.train
    cfg = TrainConfig(epochs=epochs, lr=float(hp["lr"]),
                      weight_decay=float(hp.get("weight_decay", 0.0)),
                      batch_size=int(hp.get("batch_size", 64)), seed=0)  # fmt: skip
    bar = tqdm(total=epochs, desc=f"trial {number}", unit="epoch", disable=not progress)
    checkpoint = out / "checkpoint.pt"
    history = fit(model, data.train, prep.aug, data.stats, cfg, views=prep.views,
                  distiller=distiller, checkpoint=checkpoint,
                  on_epoch=lambda e, s: bar.update(1))  # fmt: skip
    bar.close()
    latency = measure_latency(model, shape, threads=prep.threads)
    teacher = prep.teacher
    metrics = {
        "trial": number, "family": cand.family, "arch": attrs.get("arch"), "loss": cand.loss,
        "candidate": cand.to_dict(), "epochs": epochs, "final_loss": history[-1],
        "brief_val_accuracy": attrs.get("val_accuracy"),
        "val_accuracy": evaluate(model, data.val, data.stats),
        "test_accuracy": evaluate(model, data.test, data.stats),  # the one look at the test split
        "params": count_params(model), "flops": count_flops(model, shape),
        "latency_ms": latency.median_ms, "latency_device": latency.device,
        "latency_threads": latency.threads,
        "teacher": {"name": teacher.name, "params": teacher.params,
                    "test_accuracy": teacher.test_accuracy, "latency_ms": teacher.latency_ms},
    }  # fmt: skip
    metrics["retention"] = metrics["test_accuracy"] / teacher.test_accuracy
    metrics["size_ratio"] = teacher.params / metrics["params"]
    metrics["speedup"] = teacher.latency_ms / metrics["latency_ms"]
    weights = out / "student.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights),
              metadata={"candidate": json.dumps(cand.to_dict())})  # fmt: skip
    metrics["weights"] = str(weights)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    checkpoint.unlink(missing_ok=True)  # finished: the weights file is the result
    return metrics
