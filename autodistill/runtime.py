"""ONNX: the one exporter a student goes through, whether it is timed in a search or shipped,
and ONNX Runtime sessions to run and time the result."""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autodistill.errors import UserError
from autodistill.files import atomic_path

OPSET = 17
# ONNX Runtime's name for where a session runs, by the device a latency target names.
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def to_onnx(model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """The student as an ONNX graph with a dynamic batch, exported from a CPU copy in eval mode.

    TorchScript's exporter while torch has it: on the default space it exported a student in
    0.04-0.08 s against 1-1.5 s for torch.export's (``dynamo=True``), and ONNX Runtime ran the
    two graphs equally fast (results/benchmarks/target_latency.md); the search exports every
    candidate, so the cheap one is what both the search and ``export`` use. Where it is gone,
    torch.export's.

    A model that is itself a graph (a teacher given as ONNX) gives its own (``onnx_graph``).
    """
    own = getattr(model, "onnx_graph", None)
    graph = own(input_shape) if callable(own) else None
    if graph is not None:
        return graph
    return export_module(model, input_shape)


def export_module(model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """``model`` exported as it is (see ``to_onnx``)."""
    was_training = model.training
    try:
        return _export(_cpu_eval_copy(model), input_shape)
    finally:
        model.train(was_training)


def _export(model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    x = torch.zeros(2, *input_shape)
    with torch.inference_mode(False), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice, per call
        try:
            buf = io.BytesIO()
            torch.onnx.export(
                model,
                (x,),
                buf,
                input_names=["x"],
                output_names=["logits"],
                dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
            return buf.getvalue()
        except (TypeError, RuntimeError, NotImplementedError):
            pass  # no TorchScript exporter in this torch, or an op it lacks
        batch = torch.export.Dim("batch", min=1, max=4096)
        program = torch.onnx.export(
            model,
            (x,),
            input_names=["x"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: batch}},
            dynamo=True,
            verbose=False,
        )
        return program.model_proto.SerializeToString()


def fix_batch(graph: bytes, batch: int | None) -> bytes:
    """The graph with the batch dimension of its inputs and outputs fixed to ``batch`` (None:
    left dynamic), so ONNX Runtime plans for that one shape: what is timed and shipped for a
    latency target's batch. At batch 1 on a 2-core AMD EPYC a ViT student's graph ran 1.18x
    faster so, the other families within 1% either way (results/benchmarks/static_batch.md)."""
    if batch is None:
        return graph
    import onnx

    proto = onnx.load_from_string(graph)
    for value in [*proto.graph.input, *proto.graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = int(batch)
    return proto.SerializeToString()


def write_onnx(path: Path, graph: bytes) -> Path:
    """``graph`` written to ``path`` atomically."""
    data = graph
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return path


def _cpu_eval_copy(model: nn.Module) -> nn.Module:
    device = next(iter(model.parameters()), torch.zeros(0)).device
    if device.type != "cpu":
        model = copy.deepcopy(model).to("cpu")
    return model.eval()


def providers_available() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def check_provider(device: str) -> str:
    """The execution provider for ``device`` (``cpu`` or ``cuda``), if this ONNX Runtime has it.

    Raises:
        UserError: it does not.
    """
    kind = device.split(":")[0]
    if kind not in PROVIDERS:
        raise UserError(f"--latency-device {device}: ONNX Runtime runs on cpu or cuda here")
    provider = PROVIDERS[kind]
    if provider not in providers_available():
        raise UserError(
            f"--latency-device {device}: this ONNX Runtime has no {provider} "
            f"(it has {', '.join(providers_available())}); install "
            "onnxruntime-gpu, or time on cpu"
        )
    return provider


def session(source: bytes | Path, *, threads: int, device: str = "cpu") -> Any:
    """An ONNX Runtime session with ``threads`` intra-op threads (one inter-op), all graph
    optimisations, on ``device``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    provider = check_provider(device)
    options: list[dict[str, str]] = [{}]
    if provider == "CUDAExecutionProvider":
        options = [{"device_id": device.split(":")[1] if ":" in device else "0"}]
    data = source if isinstance(source, bytes) else str(source)
    return ort.InferenceSession(data, opts, providers=[provider], provider_options=options)


def run(sess: Any, x: np.ndarray, batch: int = 500) -> np.ndarray:
    """Logits of ``x`` in batches of ``batch``, or of the graph's own batch where it is fixed
    (the last one padded with zeros, its padding dropped from the result)."""
    fixed = sess.get_inputs()[0].shape[0]
    if isinstance(fixed, int) and fixed > 0:
        batch = fixed
    out = []
    for i in range(0, len(x), batch):
        part = x[i : i + batch]
        n = len(part)
        if n < batch and isinstance(fixed, int):
            part = np.concatenate([part, np.zeros((batch - n, *part.shape[1:]), part.dtype)])
        out.append(sess.run(None, {"x": part})[0][:n])
    return np.concatenate(out)


__all__ = [
    "OPSET",
    "check_provider",
    "export_module",
    "fix_batch",
    "run",
    "session",
    "to_onnx",
    "write_onnx",
]
