"""Fully train chosen students of a run: rebuild each from its trial, train long, test once."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from scipy.stats import kendalltau
from torch import Tensor, nn

from autodistill.families import InputSpec
from autodistill.files import atomic_path, write_text_atomic
from autodistill.gap import split_gap
from autodistill.latency import LatencyTarget
from autodistill.objectives import OBJECTIVES, Probe, get_objective
from autodistill.prepare import Prepared
from autodistill.progress import Progress, silent
from autodistill.recipe import build, distil, recipe_for, recipe_record, student_spec
from autodistill.reference import Reference
from autodistill.rundir import STUDENTS_DIR
from autodistill.ship.learned import what_it_learned
from autodistill.ship.options import TrainOptions
from autodistill.ship.pick import pick, pick_within, top_front
from autodistill.ship.student import METRICS, WEIGHTS, student_dir
from autodistill.spaces import Candidate
from autodistill.study import (
    Run,
    latency_reference,
    study_objectives,
    trial_candidate,
)
from autodistill.study import trials_frame as study_trials
from autodistill.trainer import evaluate, predict

log = logging.getLogger(__name__)
# Recorded for every trained student: whatever the registry measures before training.
MEASURED = tuple(n for n, o in OBJECTIVES.items() if not o.after_training)


@dataclass(frozen=True)
class FullTrainOutcome:
    """The students trained now, and how well brief training ranked them."""

    students: list[dict[str, Any]]
    kendall_tau: float | None
    files: dict[str, Path]
    reused: tuple[int, ...] = ()  # trials already fully trained with this recipe: not again


def chosen_trials(trials, objectives: tuple[str, ...], options: TrainOptions) -> list[int]:
    """The trial numbers the user asked for (options allow one way of asking)."""
    if options.trial is not None:
        return [options.trial]
    if options.top is not None:
        return top_front(trials, options.top)
    if options.limits:
        return [pick_within(trials, options.limits)]
    return [pick(trials, options.pick or "knee", objectives)]


def train_students(
    run_dir: Path, options: TrainOptions | None = None, *, progress: Progress = silent
) -> FullTrainOutcome:
    """Fully train the chosen student(s) of a run and test each once on the held-out test split.

    Each is trained with the trial's own recipe (its hyperparameters and the run's seed, or
    ``options.seed``: another seed's student replaces it) for ``options.epochs``, on
    ``options.device`` (by default the run's), against the study's teacher (another one only
    with ``options.other_teacher``).
    """
    options = options or TrainOptions()
    run = Run.open(run_dir).on(options.device)
    run_dir, config, study = run.run_dir, run.config, run.study
    epochs, seed, top = options.epochs, options.seed, options.top
    objectives = study_objectives(study)
    numbers = chosen_trials(study_trials(study), objectives, options)
    chosen = [(n, *trial_candidate(study, n)) for n in numbers]
    prep = run.prepare(other_teacher=options.other_teacher, progress=progress)
    target = config.latency_target
    teacher_figures = _TeacherFigures(
        prep, target, (latency_reference(study) or {}).get("quiet_ms")
    )

    students = [
        _train_one(
            prep,
            n,
            cand,
            attrs,
            epochs,
            config.seed if seed is None else seed,
            student_dir(run_dir, n),
            progress,
            target,
            teacher_figures,
        )
        for n, cand, attrs in chosen
    ]
    files = {f"trial {s['trial']}": student_dir(run_dir, s["trial"]) / WEIGHTS for s in students}
    tau = None
    if top is not None:
        tau = _kendall(
            [s["brief_val_accuracy"] for s in students], [s["val_accuracy"] for s in students]
        )
        path = run_dir / STUDENTS_DIR / "ranking.json"
        write_text_atomic(
            path,
            json.dumps(
                {
                    "kendall_tau": tau,
                    "students": [
                        {
                            k: s.get(k)
                            for k in (
                                "trial",
                                "arch",
                                "brief_val_accuracy",
                                "search_epochs",
                                "val_accuracy",
                                "test_accuracy",
                            )
                        }
                        for s in students
                    ],
                },
                indent=2,
            ),
        )
        files["ranking"] = path
    reused = tuple(s["trial"] for s in students if s.pop("reused", False))
    return FullTrainOutcome(students, tau, files, reused)


def _kendall(brief: list[float], full: list[float]) -> float | None:
    tau = kendalltau(brief, full).statistic
    return None if tau != tau else float(tau)  # NaN when one ranking is all ties


class _TeacherFigures:
    """The teacher's latency on the run's target and its test logits: what each student is
    compared with, each computed once and only if a student trains."""

    def __init__(self, prep: Prepared, target: LatencyTarget, quiet_ms: float | None) -> None:
        self.prep, self.target, self.quiet_ms = prep, target, quiet_ms
        self._latency: float | None = None
        self._logits: Tensor | None = None

    def side_by_side(
        self, student: nn.Module, shape: tuple[int, ...]
    ) -> tuple[float, float] | None:
        """The student's and the teacher's latency timed side by side with the study's
        reference (both as ratios to it, scaled to its quiet figure, as the search's are);
        None for an int8 target or a study without a reference."""
        if self.quiet_ms is None or self.target.precision != "fp32":
            return None
        data = self.prep.data
        ref = Reference(self.target, InputSpec(data.in_chans, data.image_size, data.num_classes))
        timed = ref.side_by_side(
            {0: student, 1: self.prep.load_teacher()}, self.quiet_ms, shapes={0: shape}
        )
        return timed[0]["latency_ms"], timed[1]["latency_ms"]

    def latency_ms(self) -> float:
        if self._latency is None:
            self._latency = self.prep.teacher_on_target(self.target)["latency_ms"]
        return self._latency

    def test_logits(self) -> Tensor:
        if self._logits is None:
            data = self.prep.data
            self._logits = predict(
                self.prep.load_teacher().to(self.prep.device), data.test.images, data.stats
            )
        return self._logits


def _train_one(
    prep: Prepared,
    number: int,
    cand: Candidate,
    attrs: dict[str, Any],
    epochs: int,
    seed: int,
    out: Path,
    progress: Progress,
    target: LatencyTarget,
    teacher_figures: _TeacherFigures,
) -> dict[str, Any]:
    cfg = recipe_for(cand, epochs=epochs, seed=seed, device=prep.device, precision=prep.precision)
    recipe = recipe_record(cfg)
    done = out / METRICS
    if done.is_file():
        previous = json.loads(done.read_text())
        where = ("device", "precision")  # a student may be trained again elsewhere
        same = {k: v for k, v in previous.get("recipe", {}).items() if k not in where} == {
            k: v for k, v in recipe.items() if k not in where
        }
        if same and previous["candidate"] == cand.to_dict():
            log.info("trial %d already fully trained (%s)", number, done)
            return {**previous, "reused": True}
    data = prep.data
    spec = InputSpec(data.in_chans, data.image_size, data.num_classes)
    model = build(cand, spec, seed=seed, teacher=prep.load_teacher)  # the trial's own start
    task = f"trial {number}"
    progress(task, 0, epochs, unit="epoch")
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint.pt"
    history = distil(
        model,
        cand,
        cfg,
        data=data,
        aug=prep.aug,
        views=prep.views,
        checkpoint=checkpoint,
        on_epoch=lambda e, _: progress(task, e + 1, epochs, unit="epoch"),
    )
    own = student_spec(cand, spec)
    seen = data.at_size(own.image_size)  # the splits as the student sees them
    test_logits = predict(model, seen.test.images, seen.stats)  # the one look at the test split
    probe = Probe(model, own.shape, prep.device, target, calibration=seen.calibration())
    measured: dict[str, Any] = {}
    for name in MEASURED:
        measured[name], extra = get_objective(name).record(probe)
        measured.update(extra)
    side = teacher_figures.side_by_side(model, own.shape)
    if side is not None:  # as the front is reported: beside the teacher and the reference
        measured["latency_ms_first"] = measured["latency_ms"]
        measured["latency_ms"], teacher_ms = side
        measured["latency_side_by_side"] = True
    else:
        teacher_ms = teacher_figures.latency_ms()
    teacher = prep.teacher
    metrics = {
        "trial": number,
        "family": cand.family,
        "arch": attrs.get("arch"),
        "loss": cand.loss,
        "candidate": cand.to_dict(),
        "recipe": recipe,
        "epochs": epochs,
        "final_loss": history[-1],
        "brief_val_accuracy": attrs.get("val_accuracy"),
        "search_epochs": attrs.get("epochs_trained"),  # with --fidelity multi: 3, 9 or 27
        "val_accuracy": evaluate(model, seen.val, seen.stats),
        "test_accuracy": float((test_logits.argmax(1) == data.test.labels).float().mean()),
        **measured,
        "teacher": {
            "name": teacher.name,
            "params": teacher.params,
            "weights_sha256": teacher.weights_sha256,
            "test_accuracy": teacher.test_accuracy,
            "latency_ms": teacher_ms,
        },
        "learned": what_it_learned(
            test_logits, teacher_figures.test_logits(), data.test.labels, data.classes
        ),
    }
    metrics["validation_gap"] = split_gap(
        metrics["val_accuracy"], len(data.val), metrics["test_accuracy"], len(data.test)
    )
    metrics["retention"] = metrics["test_accuracy"] / teacher.test_accuracy
    metrics["size_ratio"] = teacher.params / metrics["params"]
    metrics["speedup"] = metrics["teacher"]["latency_ms"] / metrics["latency_ms"]
    weights = out / WEIGHTS
    with atomic_path(weights) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp), metadata={"candidate": json.dumps(cand.to_dict())})
    metrics["weights"] = WEIGHTS  # beside metrics.json: the run directory can move
    write_text_atomic(done, json.dumps(metrics, indent=2))  # last: it marks the student done
    checkpoint.unlink(missing_ok=True)  # finished: the weights file is the result
    return metrics
