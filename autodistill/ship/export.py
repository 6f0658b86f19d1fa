"""Ship a fully trained student: ONNX export with a dynamic batch, checked on real test images,
int8 by the fastest measured recipe that keeps its validation accuracy (fp32 when none is
faster), and latency under ONNX Runtime and PyTorch."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from autodistill import int8 as quant
from autodistill import runtime
from autodistill.data.augment import normalize
from autodistill.data.sources import load_dataset
from autodistill.data.splits import DatasetSplits
from autodistill.families import InputSpec, build_student, get_family
from autodistill.files import write_text_atomic
from autodistill.measure import device_name, measure_latency, time_call
from autodistill.recipe import student_spec
from autodistill.ship.options import ExportOptions
from autodistill.ship.student import WEIGHTS, student_dir, trained_student
from autodistill.spaces import Candidate
from autodistill.study import Run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportOutcome:
    """Where the ONNX files are and what was measured on them."""

    trial: int
    files: dict[str, Path]
    figures: dict[str, Any]


def export_student(run_dir: Path, options: ExportOptions | None = None) -> ExportOutcome:
    """Export, check and time the student on the run's latency target (its threads and batch,
    ONNX Runtime on the cpu); with ``options.int8`` also try every int8 recipe, ship the
    fastest that is faster than fp32 and within ``options.int8_tolerance`` of its validation
    accuracy, and test it. The files have the target's batch fixed, as the search timed them,
    unless ``options.dynamic_batch``."""
    options = options or ExportOptions()
    trial, int8, tolerance = options.trial, options.int8, options.int8_tolerance
    dynamic_batch = options.dynamic_batch
    run_dir = Path(run_dir)
    run = Run.open(run_dir)
    config = run.config
    number, metrics = trained_student(run_dir, trial)
    threads = options.threads or config.target_threads
    batch = config.latency.batch
    data = load_dataset(
        config.data,
        data_dir=config.data_dir,
        image_size=config.image_size,
        seed=config.seed,
        group_by=config.group_by,
    )
    cand = Candidate.from_dict(metrics["candidate"])
    spec = student_spec(cand, InputSpec(data.in_chans, data.image_size, data.num_classes))
    data = data.at_size(spec.image_size)  # as the student sees it
    # A student cut from the teacher (from_teacher) is rebuilt from it, then given its weights.
    teacher = run.prepare().load_teacher if get_family(cand.family).derived else None
    model = build_student(cand.family, cand.arch, spec, teacher)
    # The weights beside the metrics, wherever the run directory now is.
    out_dir = student_dir(run_dir, number)
    model.load_state_dict(load_file(str(out_dir / WEIGHTS)))
    model.eval()
    shape = (spec.in_chans, spec.image_size, spec.image_size)
    graph = runtime.to_onnx(model, shape)  # dynamic batch: the int8 recipes start from it
    fixed = None if dynamic_batch else batch  # shipped for the target's batch unless asked
    fp32 = runtime.write_onnx(out_dir / "student.onnx", runtime.fix_batch(graph, fixed))

    test = normalize(data.test.images, *data.stats).numpy()
    val = normalize(data.val.images, *data.stats).numpy()
    with torch.inference_mode():
        reference = model(torch.from_numpy(test)).numpy()
    session = runtime.session(fp32.read_bytes(), threads=threads)
    got = runtime.run(session, test)
    one = runtime.run(session, test[:1])
    x = np.repeat(test[:1], batch, axis=0)
    hardware = device_name(torch.device("cpu"))

    def latency(sess) -> float:
        return time_call(
            lambda: sess.run(None, {"x": x}), threads=threads, device=hardware
        ).median_ms

    fp32_val = _accuracy(runtime.run(session, val), data.val.labels)
    figures: dict[str, Any] = {
        "trial": number,
        "max_abs_diff": max(
            float(np.abs(got - reference).max()), float(np.abs(one - reference[:1]).max())
        ),
        "batch_sizes_checked": [1, len(test)],  # fed in chunks of the fixed batch, if fixed
        "onnx_batch": "dynamic" if fixed is None else fixed,
        "torch_test_accuracy": _accuracy(reference, data.test.labels),
        "onnx_test_accuracy": _accuracy(got, data.test.labels),
        "onnx_val_accuracy": fp32_val,
        "threads": threads,
        "batch": batch,
        "hardware": hardware,
        "torch_latency_ms": measure_latency(model, shape, threads=threads, batch=batch).median_ms,
        "onnx_latency_ms": latency(session),
    }
    files = {"onnx": fp32}
    if not int8:  # an int8 file from an earlier export would look shipped beside this one
        (out_dir / "student.int8.onnx").unlink(missing_ok=True)
    if int8:
        files.update(
            _int8(graph, data, val, test, figures, out_dir, latency, tolerance, threads, fixed)
        )
    figures["onnx_bytes"] = fp32.stat().st_size
    path = out_dir / "export.json"
    write_text_atomic(path, json.dumps(figures, indent=2))
    files["figures"] = path
    return ExportOutcome(number, files, figures)


def _int8(
    graph: bytes,
    data: DatasetSplits,
    val: np.ndarray,
    test: np.ndarray,
    figures: dict[str, Any],
    out_dir: Path,
    latency: Callable[[Any], float],
    tolerance: float,
    threads: int,
    fixed: int | None,
) -> dict[str, Path]:
    """Try the int8 recipes on the dynamic graph, each timed and scored as it would ship (its
    batch ``fixed``); write the one that ships (none when fp32 stays faster)."""
    calibration = data.calibration()

    def session(g: bytes) -> Any:
        return runtime.session(runtime.fix_batch(g, fixed), threads=threads)

    def time_graph(g: bytes) -> float:
        return latency(session(g))

    def score(g: bytes) -> float:
        return _accuracy(runtime.run(session(g), val), data.val.labels)

    tried = quant.try_recipes(graph, calibration, time_graph, score)
    fp32_ms, fp32_val = figures["onnx_latency_ms"], figures["onnx_val_accuracy"]
    best, why = quant.fastest_recipe(fp32_ms, tried, fp32_val=fp32_val, tolerance=tolerance)
    figures["int8"] = {
        "shipped": best.recipe if best else "fp32",
        "why": why,
        "tolerance": tolerance,
        "recipes": [t.summary() for t in tried],
    }
    q = out_dir / "student.int8.onnx"
    if best is None or best.graph is None:
        q.unlink(missing_ok=True)  # an int8 file from before would look shipped
        log.info("int8: %s", why)
        return {}
    runtime.write_onnx(q, runtime.fix_batch(best.graph, fixed))
    qs = session(best.graph)
    figures["int8_test_accuracy"] = _accuracy(runtime.run(qs, test), data.test.labels)
    figures["int8_val_accuracy"] = best.val_accuracy
    figures["int8_latency_ms"] = best.latency_ms
    figures["int8_bytes"] = q.stat().st_size
    return {"int8": q}


def _accuracy(logits: np.ndarray, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels.numpy()).mean())


__all__ = ["ExportOutcome", "export_student"]
