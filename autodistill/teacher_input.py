"""A teacher the user gives, seen through its own input.

Students see each cached view at the data's size, normalised with the data's statistics. A
given teacher was made for another input (224 px, ImageNet's mean and std, three channels), so
``AdaptedTeacher`` turns the student's view back into pixels, brings it to the teacher's
channels and size, normalises it the teacher's way, and reorders the teacher's classes into the
data's. What distillation reads from it (logits; pooled pre-logit features and per-stage
attention maps where the model shows them) comes out through ``named_outputs``, the same names
``forward.forward_outputs`` gives a student.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from autodistill.data.resize import resize
from autodistill.forward import ATTENTION_STAGES, attention_map, forward_outputs

Stats = tuple[tuple[float, ...], tuple[float, ...]]


@dataclass(frozen=True)
class TeacherInput:
    """What a teacher takes: square images of ``size`` px with ``in_chans`` channels,
    normalised as ``(pixel / 255 - mean) / std``."""

    size: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        for what, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, self.in_chans):
                raise ValueError(
                    f"the teacher's {what} has {len(values)} values for {self.in_chans} channels"
                )

    def describe(self) -> str:
        def nums(v: tuple[float, ...]) -> str:
            return ",".join(f"{x:.3g}" for x in v)

        return (
            f"{self.size} px, {self.in_chans} channel{'s' if self.in_chans > 1 else ''}, "
            f"mean {nums(self.mean)}, std {nums(self.std)}"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def _column(values: tuple[float, ...], channels: int) -> Tensor:
    v = torch.tensor(values, dtype=torch.float32)
    return v.expand(channels).reshape(1, channels, 1, 1).clone()


class InputAdapter(nn.Module):
    """The student's normalised view -> the teacher's normalised input (exportable to ONNX)."""

    def __init__(self, data_stats: Stats, own: TeacherInput, data_chans: int) -> None:
        super().__init__()
        self.size, self.in_chans = own.size, own.in_chans
        self.register_buffer("data_mean", _column(data_stats[0], data_chans))
        self.register_buffer("data_std", _column(data_stats[1], data_chans))
        self.register_buffer("own_mean", _column(own.mean, own.in_chans))
        self.register_buffer("own_std", _column(own.std, own.in_chans))

    def forward(self, x: Tensor) -> Tensor:
        x = x * self.data_std + self.data_mean  # pixels on the 0..1 scale
        if x.shape[1] != self.in_chans:
            if self.in_chans == 1:
                x = x.mean(dim=1, keepdim=True)
            else:  # grayscale shown to a colour teacher: the same plane in every channel
                x = x.expand(-1, self.in_chans, -1, -1)
        return (resize(x, self.size) - self.own_mean) / self.own_std


class AdaptedTeacher(nn.Module):
    """``model`` (with ``classes`` outputs) behind an ``InputAdapter``; its logits in the data's
    class order (``order``: the teacher's column of each data class, None when they agree)."""

    def __init__(
        self,
        model: nn.Module,
        own: TeacherInput,
        data_stats: Stats,
        data_chans: int,
        classes: int,
        order: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.adapter = InputAdapter(data_stats, own, data_chans)
        self.model = model
        self.own = own
        self.classes = classes
        self.order: Tensor | None
        self.register_buffer("order", None if order is None else torch.tensor(order))

    def forward(self, x: Tensor) -> Tensor:
        return self._ordered(logits_of(self.model(self.adapter(x))))

    def _ordered(self, logits: Tensor) -> Tensor:
        return logits if self.order is None else logits.index_select(1, self.order)

    def named_outputs(
        self, x: Tensor, kinds: frozenset[str] | set[str] | tuple[str, ...], size: int
    ):
        """Logits (and features, attention maps where the model shows them) by name."""
        x = self.adapter(x)
        if hasattr(self.model, "forward_intermediates") and hasattr(self.model, "forward_head"):
            out = forward_outputs(self.model, x, kinds, size)  # a timm model: its own hooks
        elif isinstance(self.model, OnnxTeacher):
            out = self.model.named_outputs(x, kinds, size)
        else:
            out = hooked_outputs(self.model, x, kinds, size, self.classes)
        out["logits"] = self._ordered(out["logits"])
        return out

    def parameter_count(self) -> int:
        """The teacher's own parameters (a graph's weights for an ONNX teacher)."""
        count = getattr(self.model, "parameter_count", None)
        return count() if callable(count) else sum(p.numel() for p in self.model.parameters())

    def provides(self, probe: Tensor, size: int) -> frozenset[str]:
        """The output kinds this teacher gives, found by running it once on ``probe``."""
        with torch.inference_mode():
            return frozenset(self.eval().named_outputs(probe, {"features", "attention"}, size))

    def onnx_graph(self, input_shape: tuple[int, ...]) -> bytes | None:
        """The graph to time for a teacher that is itself an ONNX graph (the adapter's graph
        joined to it); None for a torch model, which exports as any other."""
        if not isinstance(self.model, OnnxTeacher):
            return None
        from autodistill import runtime  # runtime exports; this module stays import-light

        front = runtime.export_module(self.adapter, input_shape)
        return self.model.joined_after(front)


def logits_of(out: object) -> Tensor:
    """Logits from what a classifier returns: a tensor, a Hugging Face output, a tuple."""
    if isinstance(out, Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise TypeError(f"the teacher returned {type(out).__name__}, not logits")


def head_of(model: nn.Module, classes: int) -> tuple[str, nn.Linear] | None:
    """The classifier: the last ``nn.Linear`` with one output per class, and its name."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.out_features == classes:
            found = (name, module)
    return found


def hooked_outputs(
    model: nn.Module,
    x: Tensor,
    kinds: frozenset[str] | set[str] | tuple[str, ...],
    size: int,
    classes: int,
) -> dict[str, Tensor]:
    """Outputs of any ``nn.Module`` classifier, read with hooks: ``features`` is the input of
    its classifier layer (``head_of``), ``attention`` the maps of the last feature map at each
    of its deepest ``ATTENTION_STAGES`` resolutions (a stage ends where the resolution drops).
    A kind the model does not show is left out."""
    hooks, seen, pooled = [], [], []
    if "attention" in kinds:
        for module in model.modules():
            if not list(module.children()):  # leaves: each feature map once
                hooks.append(module.register_forward_hook(_keep_maps(seen)))
    head = head_of(model, classes) if "features" in kinds else None
    if head is not None:
        hooks.append(head[1].register_forward_pre_hook(lambda _m, a: pooled.append(a[0])))
    try:
        logits = logits_of(model(x))
    finally:
        for h in hooks:
            h.remove()
    out = {"logits": logits}
    if pooled:
        out["features"] = pooled[-1].flatten(1)
    stages = _stage_ends(seen)
    if stages:
        out["attention"] = torch.stack([attention_map(f, size) for f in stages], dim=1)
    return out


def _keep_maps(seen: list[Tensor]) -> Callable:
    def hook(_module: nn.Module, _args: object, out: object) -> None:
        # a pooled [B, C, 1, 1] is no map: it would be the "deepest stage" of every CNN
        if isinstance(out, Tensor) and out.ndim == 4 and out.shape[-1] * out.shape[-2] > 1:
            seen.append(out)

    return hook


def _stage_ends(maps: list[Tensor]) -> list[Tensor]:
    """The last feature map before each drop in resolution, and the last one: the deepest
    ``ATTENTION_STAGES``, deepest last. Empty when there are fewer than two resolutions (no
    stages to speak of)."""
    ends: list[Tensor] = []
    for i, m in enumerate(maps):
        nxt = maps[i + 1] if i + 1 < len(maps) else None
        if nxt is None or nxt.shape[-1] < m.shape[-1]:
            if not ends or ends[-1].shape[-1] != m.shape[-1]:
                ends.append(m)
    return ends[-ATTENTION_STAGES:] if len(ends) >= 2 else []


class OnnxTeacher(nn.Module):
    """A teacher from any framework, as an ONNX graph run in ONNX Runtime on the CPU.

    Its first output is the logits; an output named ``features`` (``[B, D]``) gives the pooled
    features, and outputs of shape ``[B, C, H, W]`` the attention maps, when the graph shows
    them."""

    def __init__(self, graph: bytes, threads: int = 0) -> None:
        super().__init__()
        import onnxruntime as ort

        self.graph = graph
        self.threads = threads
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        batch = first.shape[0] if first.shape else None
        self.batch = batch if isinstance(batch, int) and batch > 0 else None  # fixed in the graph
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._dummy = nn.Parameter(torch.zeros(0), requires_grad=False)  # gives it a device

    def parameter_count(self) -> int:
        """The number of weights the graph holds (its initializers)."""
        import onnx

        graph = onnx.load_from_string(self.graph).graph
        return sum(int(np.prod(t.dims)) for t in graph.initializer)

    def __deepcopy__(self, memo: dict) -> OnnxTeacher:
        return OnnxTeacher(self.graph, self.threads)

    def _run(self, x: Tensor) -> dict[str, Tensor]:
        whole = x.detach().float().cpu().numpy()
        step = self.batch or len(whole)
        parts = [
            self.session.run(None, {self.input_name: whole[i : i + step]})
            for i in range(0, len(whole), step)
        ]
        return {
            n: torch.from_numpy(np.concatenate([p[k] for p in parts])).to(x.device)
            for k, n in enumerate(self.output_names)
        }

    def forward(self, x: Tensor) -> Tensor:
        return self._run(x)[self.output_names[0]].float()

    def named_outputs(
        self, x: Tensor, kinds: frozenset[str] | set[str] | tuple[str, ...], size: int
    ) -> dict[str, Tensor]:
        got = self._run(x)
        out = {"logits": got[self.output_names[0]].float()}
        if "features" in kinds and "features" in got and got["features"].ndim == 2:
            out["features"] = got["features"].float()
        maps = [v.float() for n, v in got.items() if v.ndim == 4]
        if "attention" in kinds and maps:
            maps = sorted(maps, key=lambda m: -m.shape[-1])[-ATTENTION_STAGES:]
            out["attention"] = torch.stack([attention_map(m, size) for m in maps], dim=1)
        return out

    def joined_after(self, front: bytes) -> bytes:
        """One graph: ``front`` (the input adapter, input ``x``) feeding this one, whose first
        output is renamed ``logits``: what is timed as the teacher's latency."""
        import onnx
        from onnx import compose

        first, second = onnx.load_from_string(front), onnx.load_from_string(self.graph)
        second = copy.deepcopy(second)
        keep = second.graph.output[0].name
        while len(second.graph.output) > 1:
            second.graph.output.pop()
        opset = max(_opset(first), _opset(second))
        first, second = (_at_opset(m, opset) for m in (first, second))
        ir = max(first.ir_version, second.ir_version)
        first.ir_version = second.ir_version = ir
        first = compose.add_prefix(first, "adapt_")
        joined = compose.merge_models(
            first,
            second,
            io_map=[(first.graph.output[0].name, second.graph.input[0].name)],
        )
        joined.graph.input[0].name = _rename(joined, joined.graph.input[0].name, "x")
        joined.graph.output[0].name = _rename(joined, keep, "logits")
        return joined.SerializeToString()


def _opset(model) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _at_opset(model, opset: int):
    if _opset(model) == opset:
        return model
    from onnx import version_converter

    return version_converter.convert_version(model, opset)


def _rename(model, old: str, new: str) -> str:
    """Rename tensor ``old`` to ``new`` wherever the graph's nodes read or write it."""
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
    return new


__all__ = [
    "AdaptedTeacher",
    "InputAdapter",
    "OnnxTeacher",
    "TeacherInput",
    "head_of",
    "hooked_outputs",
    "logits_of",
]
