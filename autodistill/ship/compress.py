"""Compress a fully trained student further: structured pruning in rounds, each fine-tuned with
distillation against the run's cached teacher views, then int8 after training (PTQ) and with
quantization-aware distillation (QAT-KD), every variant measured on the run's target.

Every round and every QAT run checkpoints each epoch and keeps its result, so a run that stops
resumes where it stopped; what is finished is never trained again.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from autodistill import int8, prune, qat, runtime
from autodistill.data.splits import DatasetSplits
from autodistill.errors import UserError
from autodistill.families import InputSpec
from autodistill.files import atomic_path, write_text_atomic
from autodistill.losses import get_loss
from autodistill.measure import count_flops
from autodistill.prepare import Prepared
from autodistill.progress import Progress, silent
from autodistill.recipe import build, distil, recipe_for, student_spec
from autodistill.ship.options import CompressOptions
from autodistill.ship.pick import pick
from autodistill.ship.student import WEIGHTS, student_dir, trained_student
from autodistill.ship.variants import (
    TOLERANCE,
    Scorer,
    Variant,
    best_variant,
    compare,
    time_interleaved,
)
from autodistill.spaces import Candidate
from autodistill.study import Run, study_objectives
from autodistill.study import trials_frame as study_trials
from autodistill.trainer import TrainConfig

log = logging.getLogger(__name__)
COMPRESS_DIR = "compress"
CSV = "compress.csv"
# Fine-tuning runs at this fraction of the recipe's peak learning rate: the student is already
# trained, and the full rate would undo what it learned before it recovers from the cut.
LR_FACTOR = 0.2
# The int8 recipe of both PTQ and QAT-KD: static QDQ, uint8 activations, int8 weights per
# channel, the fastest static recipe on dense students on this CPU (results/benchmarks/int8.md;
# int8 activations were 1.3-6x slower). The same recipe for both isolates what training adds.
RECIPE = int8.RECIPES["static-qdq-u8s8"]


@dataclass(frozen=True)
class CompressOutcome:
    """Every variant made, the one to ship and why, and where the files are."""

    trial: int
    variants: list[dict[str, Any]]
    best: str
    why: str
    files: dict[str, Path]
    resumed: tuple[str, ...] = ()  # stages found finished on disk and not trained again


def compress_student(
    run_dir: Path, options: CompressOptions | None = None, *, progress: Progress = silent
) -> CompressOutcome:
    """Prune a fully trained student by each of ``options.prune`` (fractions of channels
    removed), fine-tune each round for ``options.epochs`` with the trial's distillation loss
    (plain cross-entropy without ``options.kd``; a trial that learned without the teacher
    fine-tunes with the default KD loss), quantize every variant to int8 after training and,
    with ``options.qat``, train it quantization-aware with distillation; measure all on the
    run's target and write ``students/trial-N/compress.csv``. ``options.seed`` (by default the
    run's) draws the fine-tuning's batches; another seed keeps its stages apart. The teacher
    must be the study's (another one only with ``options.other_teacher``)."""
    options = options or CompressOptions()
    trial = options.trial
    run = Run.open(run_dir).on(options.device)
    run_dir, config = run.run_dir, run.config
    if options.pick is not None:
        trial = pick(study_trials(run.study), options.pick, study_objectives(run.study))
    number, metrics = trained_student(run_dir, trial)
    trained = Candidate.from_dict(metrics["candidate"])
    cand = _finetune_candidate(trained, options.kd)
    seed = config.seed if options.seed is None else options.seed
    tag = ("" if options.kd else "-plain") + ("" if seed == config.seed else f"-s{seed}")
    prep = run.prepare(other_teacher=options.other_teacher, progress=progress)
    spec = InputSpec(prep.data.in_chans, prep.data.image_size, prep.data.num_classes)
    shape = student_spec(trained, spec).shape  # the student's own input
    home = student_dir(run_dir, number)
    base = build(trained, spec, seed=config.seed, teacher=prep.load_teacher)
    base.load_state_dict(load_file(str(home / WEIGHTS)))
    cfg = recipe_for(
        trained, epochs=options.epochs, seed=seed, device=prep.device, precision=prep.precision
    )
    cfg = replace(cfg, lr=cfg.lr * LR_FACTOR)
    stages = _Stages(prep, cand, spec, cfg, home / COMPRESS_DIR, progress, f"trial {number}")
    made = _made(stages, base, options, cand.loss, tag)
    seen = prep.data.at_size(shape[-1])  # the splits as the student sees them
    variants = _variants(made, shape, seen.calibration(), tag)
    teacher = _measure(variants, prep, seen, config.target_threads, config.latency.batch)
    best, why = best_variant(variants, options.tolerance)
    settings = {
        "ratios": list(options.prune),
        "qat_kd": options.qat,
        "epochs": options.epochs,
        "kd": options.kd,
        "seed": seed,
        "finetune_loss": cand.loss,
        "tolerance": options.tolerance,
        "lr": cfg.lr,
        "lr_factor": LR_FACTOR,
        "recipe": RECIPE.name,
    }
    files = _write(home, variants, best, why, teacher, config.latency.batch, settings)
    return CompressOutcome(
        number, [v.row() for v in variants], best.name, why, files, tuple(stages.resumed)
    )


Made = tuple[float, str, nn.Module, dict[str, Any]]  # ratio, precision, model, fine-tuning


def _made(
    stages: _Stages, base: nn.Module, options: CompressOptions, loss: str, tag: str
) -> list[Made]:
    """The student, each pruned variant, and (with ``qat``) each trained quantization-aware."""
    finetune = {"finetune_loss": loss, "finetune_epochs": options.epochs}
    made: list[Made] = [(0.0, "fp32", base, {})]
    for r in options.prune:
        pruned, steps = stages.pruned(base, r, tag)
        made.append((r, "fp32", pruned, {**finetune, "rounds": len(steps)}))
    if options.qat:
        for r, _, model, _ in list(made):
            aware = stages.quantization_aware(model, r, tag)
            made.append((r, "int8-qat-kd" if options.kd else "int8-qat", aware, finetune))
    return made


def _variants(
    made: list[Made], shape: tuple[int, ...], calibration: Any, tag: str
) -> list[Variant]:
    """Each model as the ONNX graph it ships as; each fp32 one also as int8 after training (by
    the same recipe). In order: by ratio, then fp32, int8 after training, quantization-aware."""
    variants: list[Variant] = []
    for r, precision, model, finetune in made:
        graph = runtime.to_onnx(model, shape)
        if precision != "fp32":
            graph = int8.quantize(graph, RECIPE, calibration)
        params, flops = prune.count(model), count_flops(model, shape)
        variants.append(
            Variant(_name(r, precision, tag), r, precision, graph, params, flops, finetune)
        )
        if precision == "fp32":
            q = int8.quantize(graph, RECIPE, calibration)
            variants.append(
                Variant(_name(r, "int8-ptq", tag), r, "int8-ptq", q, params, flops, finetune)
            )
    order = ("fp32", "int8-ptq")
    variants.sort(key=lambda v: (v.ratio, order.index(v.precision) if v.precision in order else 2))
    return variants


def _measure(
    variants: list[Variant], prep: Prepared, seen: DatasetSplits, threads: int, batch: int
) -> dict[str, Any]:
    """Every variant's accuracy on the splits as the student sees them (``seen``) and its
    latency, timed interleaved with the teacher's graph (on the data as read); returns the
    teacher's figures."""
    score = Scorer(seen, threads)
    for v in variants:
        v.figures.update(score(v.graph))
    data = prep.data
    teacher_shape = (data.in_chans, data.image_size, data.image_size)
    teacher = _teacher(prep, teacher_shape)
    graphs = {v.name: v.graph for v in variants} | {"teacher": teacher.pop("graph")}
    own = (seen.in_chans, seen.image_size, seen.image_size)
    shapes = {v.name: own for v in variants} | {"teacher": teacher_shape}
    timed = time_interleaved(graphs, shapes, threads=threads, batch=batch)
    teacher_timed = timed.pop("teacher")
    teacher["latency_ms"] = teacher_timed["latency_ms"]
    teacher["latency_passes_ms"] = teacher_timed["latency_passes_ms"]
    for v in variants:
        v.figures.update(timed[v.name])
    compare(variants, teacher)
    return teacher


def _finetune_candidate(trained: Candidate, kd: bool) -> Candidate:
    """How the compressed student learns: the trial's own loss when it reads the teacher; the
    plain KD loss (its defaults) for a trial trained without one; cross-entropy without ``kd``."""
    if not kd:
        return replace(trained, loss="ce", distill={})
    if get_loss(trained.loss).needs_teacher:
        return trained
    return replace(trained, loss="kd", distill={})


def _name(ratio: float, precision: str, tag: str) -> str:
    return f"{_dir(ratio, tag)}/{precision}"


def _dir(ratio: float, tag: str) -> str:
    return f"prune-{round(100 * ratio)}{tag}"


def _teacher(prep: Prepared, shape: tuple[int, ...]) -> dict[str, Any]:
    info = prep.teacher
    graph = runtime.to_onnx(prep.load_teacher(), shape)
    return {
        "name": info.name,
        "params": info.params,
        "weights_sha256": info.weights_sha256,
        "val_accuracy": info.val_accuracy,
        "test_accuracy": info.test_accuracy,
        "graph": graph,
    }


class _Stages:
    """The trained stages of one student's compression, each kept on disk when done: rounds of
    pruning and fine-tuning, and quantization-aware runs."""

    def __init__(
        self,
        prep: Prepared,
        cand: Candidate,
        spec: InputSpec,
        cfg: TrainConfig,
        root: Path,
        progress: Progress,
        label: str,
    ) -> None:
        self.prep, self.cand, self.spec, self.cfg = prep, cand, spec, cfg
        self.root, self.progress, self.label = root, progress, label
        self.shape = student_spec(cand, spec).shape
        self.resumed: list[str] = []

    def pruned(self, base: nn.Module, ratio: float, tag: str) -> tuple[nn.Module, list[float]]:
        """``base`` with ``ratio`` of its channels removed in rounds, each fine-tuned."""
        steps = prune.rounds(ratio)
        folder = self.root / _dir(ratio, tag)
        model = copy.deepcopy(base)
        for i, step in enumerate(steps, 1):
            done = folder / f"round-{i}.safetensors"
            if self._finished(done):
                model = self._load(done, folded=False)
                self.resumed.append(f"{_dir(ratio, tag)} round {i}")
                continue
            prune.prune_step(model, step, self.shape)
            task = f"{self.label} prune {100 * ratio:.0f}% round {i}/{len(steps)}"
            self._train(model, folder / f"round-{i}.pt", task)
            self._save(model, done, folded=False)
        return model, steps

    def quantization_aware(self, model: nn.Module, ratio: float, tag: str) -> nn.Module:
        """A copy of ``model`` trained with fake int8 weights and inputs, then stripped of its
        fake quantizers (its norms stay folded into its convolutions)."""
        folder = self.root / _dir(ratio, tag)
        done = folder / "qat.safetensors"
        if self._finished(done, precision="fp32"):
            self.resumed.append(f"{_dir(ratio, tag)} qat")
            return self._load(done, folded=True)
        q = qat.prepare(copy.deepcopy(model))
        # fp32: the fake quantizers compute scales in fp32, and bf16 would round before them.
        self._train(q, folder / "qat.pt", f"{self.label} QAT {100 * ratio:.0f}%", precision="fp32")
        qat.strip(q)
        self._save(q, done, folded=True, precision="fp32")
        return q

    def _train(self, model: nn.Module, checkpoint: Path, task: str, **override: Any) -> None:
        cfg = replace(self.cfg, **override)
        self.progress(task, 0, cfg.epochs, unit="epoch")
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        distil(
            model,
            self.cand,
            cfg,
            data=self.prep.data,
            aug=self.prep.aug,
            views=self.prep.views,
            checkpoint=checkpoint,
            on_epoch=lambda e, _: self.progress(task, e + 1, cfg.epochs, unit="epoch"),
        )
        model.cpu().eval()

    def _made_with(self, **override: Any) -> str:
        """What a stage is made with (loss, recipe, seed, teacher): a stage on disk made
        otherwise (an earlier ``compress --epochs 3``) is made again, not reused."""
        recipe = replace(self.cfg, **override).settings()
        teacher = self.prep.teacher.weights_sha256
        return json.dumps(
            {"candidate": self.cand.to_dict(), "recipe": recipe, "teacher": teacher}, sort_keys=True
        )

    def _finished(self, path: Path, **override: Any) -> bool:
        from safetensors import safe_open

        if not path.is_file():
            return False
        try:
            with safe_open(str(path), framework="pt") as f:
                made = (f.metadata() or {}).get("made_with")
        except Exception:  # noqa: BLE001 - a damaged file is made again
            return False
        if made != self._made_with(**override):
            log.info("%s was made with other settings; making it again", path)
            return False
        return True

    def _save(self, model: nn.Module, path: Path, *, folded: bool, **override: Any) -> None:
        """The stage's weights as tensors, its shapes as JSON metadata: loading it runs no code."""
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        meta = {
            "structure": json.dumps(prune.structure(model)),
            "folded": json.dumps(folded),
            "made_with": self._made_with(**override),
        }
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata=meta)
        path.with_suffix(".pt").unlink(missing_ok=True)  # the stage is done: its checkpoint goes

    def _load(self, path: Path, *, folded: bool) -> nn.Module:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        try:
            model = build(self.cand, self.spec, seed=0, teacher=self.prep.load_teacher)
            if folded:
                qat.fold_batchnorms(model)
            shapes = json.loads(meta["structure"])
            return prune.rebuild(model, shapes, load_file(str(path))).eval()
        except (KeyError, ValueError, RuntimeError) as exc:
            raise UserError(
                f"{path} is not a compressed stage of this student ({exc}); delete "
                "it to make it again"
            ) from None


def _write(
    home: Path,
    variants: list[Variant],
    best: Variant,
    why: str,
    teacher: dict[str, Any],
    batch: int,
    settings: dict[str, Any],
) -> dict[str, Path]:
    """compress.csv (one row per variant), compress.json (with the settings, the teacher and the
    choice) and every variant's ONNX file, for the latency target's ``batch`` as it was timed."""
    files: dict[str, Path] = {}
    for v in variants:
        folder = home / COMPRESS_DIR / v.name.split("/")[0]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / ("student.onnx" if v.precision == "fp32" else f"student.{v.precision}.onnx")
        runtime.write_onnx(path, runtime.fix_batch(v.graph, batch))
        v.figures["onnx"] = str(path.relative_to(home))
    rows = [v.row() for v in variants]
    flat = [
        {k: " ".join(map(str, x)) if isinstance(x, list) else x for k, x in r.items()} for r in rows
    ]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(flat)
    files["csv"] = home / CSV
    write_text_atomic(files["csv"], buf.getvalue())
    files["json"] = home / "compress.json"
    write_text_atomic(
        files["json"],
        json.dumps(
            {
                "settings": settings,
                "teacher": teacher,
                "best": best.name,
                "why": why,
                "variants": rows,
            },
            indent=2,
        ),
    )
    files["best"] = home / best.figures["onnx"]
    return files


__all__ = [
    "COMPRESS_DIR",
    "CSV",
    "LR_FACTOR",
    "RECIPE",
    "TOLERANCE",
    "CompressOutcome",
    "compress_student",
]
