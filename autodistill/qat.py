"""Quantization-aware training for the int8 graph ONNX Runtime runs: batch norms folded into their
convolutions (as the exporter folds them), every convolution's and linear layer's weights
fake-quantized per output channel to symmetric int8, and their inputs to uint8 with
moving-average ranges, with torch's core fake-quantization ops
(``torch.fake_quantize_per_channel_affine``, ``torch.fake_quantize_per_tensor_affine``) and
ranges kept here: no ``torch.ao.quantization`` (deprecated, removal proposed), and no Python
branch on a tensor, so a step on a GPU never waits for it (its observers read a scalar from
the device 68 times a step).

Why not torch.ao's pt2e flow: in torch 2.14 it has moved to torchao, whose converted graphs
the ONNX exporters do not turn into the QDQ graph ONNX Runtime fuses; what a student ships is
ONNX Runtime's static QDQ file (``int8.quantize``). So training simulates exactly the rounding
that file applies to the weights (max-abs per channel over 127, as ONNX Runtime computes it)
and approximately its activation ranges; after training the fake quantizers are removed and
the learned float weights are quantized by ONNX Runtime, calibrated on training images.
"""

from __future__ import annotations

import torch
import torch.fx as fx
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_weights

from autodistill.errors import UserError, first_line

INPUT_QUANT = "input_fake_quant"
_HOOK = "_autodistill_qat_hook"


class _WeightFakeQuant(nn.Module):
    """Symmetric int8 per output channel, scale max|w| / 127 (ONNX Runtime's rule for int8
    weights); the gradient passes straight through the rounding."""

    def forward(self, w: Tensor) -> Tensor:
        dims = tuple(range(1, w.ndim))
        scale = (w.detach().abs().amax(dim=dims) / 127).clamp_min(1e-12).float()
        zero = torch.zeros(w.shape[0], device=w.device)  # float: no int32 scalar to read
        q = torch.fake_quantize_per_channel_affine(w.float(), scale, zero, 0, -127, 127)
        return q.to(w.dtype)


class _InputFakeQuant(nn.Module):
    """uint8 per tensor, affine, over a moving average of each batch's min and max (the first
    batch's taken as it is), as ``torch.ao``'s ``MovingAverageMinMaxObserver`` with its
    ``FakeQuantize`` did; the range always includes 0. The ranges are updated only in training,
    on the device, without reading them back."""

    AVERAGING = 0.01
    QMIN, QMAX = 0, 255

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("min_val", torch.zeros(()))
        self.register_buffer("max_val", torch.zeros(()))
        self.register_buffer("seen", torch.zeros(()))  # 0 until the first batch

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            lo, hi = x.detach().aminmax()
            c = torch.where(self.seen > 0, self.AVERAGING, 1.0)  # the first batch: its own
            self.min_val.add_(c * (lo.float() - self.min_val))
            self.max_val.add_(c * (hi.float() - self.max_val))
            self.seen.fill_(1.0)
        lo, hi = self.min_val.clamp(max=0.0), self.max_val.clamp(min=0.0)
        scale = ((hi - lo) / (self.QMAX - self.QMIN)).clamp_min(torch.finfo(torch.float32).eps)
        zero = (self.QMIN - torch.round(lo / scale)).clamp(self.QMIN, self.QMAX)
        q = torch.fake_quantize_per_tensor_affine(
            x.float(), scale.reshape(1), zero.reshape(1), self.QMIN, self.QMAX
        )
        return q.to(x.dtype)


class _LeafNorms(fx.Tracer):
    """Traces through timm's blocks but keeps every batch norm (timm's norm+activation
    subclasses included) as one call, so a convolution feeding one can be found."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, nn.BatchNorm2d) or super().is_leaf_module(m, qualname)


def fold_batchnorms(model: nn.Module) -> int:
    """Fold every batch norm that reads only a convolution's output into that convolution, in
    place (the norm is replaced by its activation, for timm's norm+activation layers); returns
    how many were folded. Raises UserError when the student cannot be traced."""
    was_training = model.training
    model.eval()
    try:
        graph = _LeafNorms().trace(model)
    except Exception as exc:  # noqa: BLE001 - what the tracer trips on is one line
        raise UserError(
            f"cannot trace this {type(model).__name__} to fold its batch norms for "
            f"quantization-aware training ({first_line(exc)[:200]})"
        ) from None
    modules = dict(model.named_modules())
    folded = 0
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        source = node.args[0]
        conv = modules.get(source.target) if isinstance(source, fx.Node) else None
        if source.op != "call_module" or not isinstance(conv, nn.Conv2d) or len(source.users) != 1:
            continue
        bn = modules[node.target]
        w, b = fuse_conv_bn_weights(
            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
        )
        conv.weight, conv.bias = w, b
        after = nn.Sequential(getattr(bn, "drop", nn.Identity()), getattr(bn, "act", nn.Identity()))
        parent, _, leaf = node.target.rpartition(".")
        setattr(modules[parent] if parent else model, leaf, after)
        folded += 1
    model.train(was_training)
    return folded


def _quantize_input(module: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return (getattr(module, INPUT_QUANT)(args[0]), *args[1:])


def prepare(model: nn.Module) -> nn.Module:
    """``model`` made quantization-aware in place: norms folded, weights and inputs of every
    convolution and linear layer fake-quantized. Train it as usual, then ``strip`` it."""
    fold_batchnorms(model)
    for module in list(model.modules()):
        if not isinstance(module, nn.Conv2d | nn.Linear):
            continue
        parametrize.register_parametrization(module, "weight", _WeightFakeQuant())
        module.add_module(INPUT_QUANT, _InputFakeQuant().to(module.weight.device))
        setattr(module, _HOOK, module.register_forward_pre_hook(_quantize_input))
    return model


def strip(model: nn.Module) -> nn.Module:
    """The float student a quantization-aware one trained, in place: its fake quantizers
    removed, its learned (folded) weights kept for ONNX Runtime to quantize."""
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        if hasattr(module, _HOOK):
            getattr(module, _HOOK).remove()
            delattr(module, _HOOK)
        if INPUT_QUANT in module._modules:
            del module._modules[INPUT_QUANT]
    return model


__all__ = ["fold_batchnorms", "prepare", "strip"]
