"""Ship a fully trained student: ONNX export with a dynamic batch, checked on real test images,
optional int8 quantization, and latency under ONNX Runtime and PyTorch at batch 1."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from autodistill.config import load_config
from autodistill.data.augment import normalize
from autodistill.data.sources import load_dataset
from autodistill.families import InputSpec, build_student
from autodistill.files import atomic_path, write_text_atomic
from autodistill.measure import measure_latency, median_latency_ms
from autodistill.ship.student import WEIGHTS, student_dir, trained_student
from autodistill.spaces import Candidate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportOutcome:
    """Where the ONNX files are and what was measured on them."""

    trial: int
    files: dict[str, Path]
    figures: dict[str, Any]


def export_student(
    run_dir: Path, *, trial: int | None = None, int8: bool = False, threads: int = 0
) -> ExportOutcome:
    """Export, check and time the student; with ``int8`` also quantize and re-test it."""
    import onnxruntime as ort

    run_dir = Path(run_dir)
    config = load_config(run_dir)
    number, metrics = trained_student(run_dir, trial)
    threads = threads or config.resolved_threads
    data = load_dataset(config.data, data_dir=config.data_dir, seed=config.seed)
    spec = InputSpec(data.in_chans, data.image_size, data.num_classes)
    cand = Candidate.from_dict(metrics["candidate"])
    model = build_student(cand.family, cand.arch, spec)
    # The weights beside the metrics, wherever the run directory now is.
    out_dir = student_dir(run_dir, number)
    model.load_state_dict(load_file(str(out_dir / WEIGHTS)))
    model.eval()
    shape = (spec.in_chans, spec.image_size, spec.image_size)
    fp32 = out_dir / "student.onnx"
    _export(model, shape, fp32)

    test = normalize(data.test.images, *data.stats)
    with torch.inference_mode():
        reference = model(test).numpy()
    session = _session(ort, fp32, threads)
    got = _run(session, test.numpy())
    figures: dict[str, Any] = {
        "trial": number,
        "max_abs_diff": float(np.abs(got - reference).max()),
        "batch_sizes_checked": [1, len(test)],
        "torch_test_accuracy": _accuracy(reference, data.test.labels),
        "onnx_test_accuracy": _accuracy(got, data.test.labels),
        "threads": threads,
    }
    one = _run(session, test[:1].numpy())
    figures["max_abs_diff"] = max(figures["max_abs_diff"], float(np.abs(one - reference[:1]).max()))
    x1 = test[:1].numpy()
    figures["torch_latency_ms"] = measure_latency(model, shape, threads=threads).median_ms
    figures["onnx_latency_ms"] = median_latency_ms(lambda: session.run(None, {"x": x1}))
    files = {"onnx": fp32}
    if int8:
        q = out_dir / "student.int8.onnx"
        calibration = normalize(data.train.images[:256], *data.stats).numpy()
        _quantize(fp32, q, calibration)
        qs = _session(ort, q, threads)
        figures["int8_test_accuracy"] = _accuracy(_run(qs, test.numpy()), data.test.labels)
        figures["int8_latency_ms"] = median_latency_ms(lambda: qs.run(None, {"x": x1}))
        figures["int8_bytes"] = q.stat().st_size
        files["int8"] = q
    figures["onnx_bytes"] = fp32.stat().st_size
    path = out_dir / "export.json"
    write_text_atomic(path, json.dumps(figures, indent=2))
    files["figures"] = path
    return ExportOutcome(number, files, figures)


def _export(model: torch.nn.Module, shape: tuple[int, ...], path: Path) -> None:
    x = torch.zeros(2, *shape)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(model, (x,), input_names=["x"], output_names=["logits"],
                                dynamic_shapes={"x": {0: batch}}, dynamo=True,
                                verbose=False)  # fmt: skip
    with atomic_path(path) as tmp:
        program.save(str(tmp))


def _session(ort, path: Path, threads: int):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _run(session, x: np.ndarray, batch: int = 500) -> np.ndarray:
    return np.concatenate(
        [session.run(None, {"x": x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    )


def _accuracy(logits: np.ndarray, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels.numpy()).mean())


def _quantize(src: Path, dst: Path, calibration: np.ndarray) -> None:
    """Static int8 (QDQ, per-channel weights) calibrated on training images."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": calibration[i : i + 32]}
                                 for i in range(0, len(calibration), 32)])  # fmt: skip

        def get_next(self):
            return next(self.batches, None)

    prepped = dst.with_suffix(".prep.onnx")
    try:
        quant_pre_process(str(src), str(prepped))
        with atomic_path(dst) as tmp:
            quantize_static(str(prepped), str(tmp), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, weight_type=QuantType.QInt8,
                            activation_type=QuantType.QUInt8)  # fmt: skip
    finally:
        prepped.unlink(missing_ok=True)


__all__ = ["ExportOutcome", "export_student"]
