"""Structured pruning of a student with Torch-Pruning (DepGraph): channels, attention heads and
MLP width are removed, so params, FLOPs and latency really drop; and a pruned student saved as
tensors plus its shapes, rebuilt without running code from the file.

Why a library: a channel removed from one layer must be removed from every layer that shares
it (residual adds, depthwise convolutions, norms, the classifier's input); Torch-Pruning traces
those dependencies for any timm model, which hand-written pruning would do for one family.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from autodistill.errors import UserError, first_line

# Widths stay multiples of 8: odd widths made smaller students 2-4x slower in ONNX Runtime on
# the 2-core Xeon (results/benchmarks/int8.md, and the anchors' pruning table).
ROUND_TO = 8
# The most of the remaining channels one round removes; larger ratios take several rounds with
# fine-tuning between them (pruning 50% at once costs more accuracy than recovery restores).
MAX_STEP = 0.3
# Module attributes that pruning changes and that rebuilding a pruned student must restore.
SHAPE_ATTRS = (
    "in_channels",
    "out_channels",
    "groups",
    "in_features",
    "out_features",
    "num_features",
    "normalized_shape",
    "num_heads",
    "attn_dim",
    "head_dim",
    "num_channels",
)


def rounds(ratio: float) -> list[float]:
    """The per-round ratios (of the channels remaining) that remove ``ratio`` of the channels in
    the fewest rounds of at most ``MAX_STEP`` each."""
    if not 0 < ratio < 1:
        raise UserError(
            f"a pruning ratio is the fraction of channels removed, in (0, 1); got {ratio}"
        )
    n = max(1, math.ceil(math.log(1 - ratio) / math.log(1 - MAX_STEP) - 1e-9))
    step = 1 - (1 - ratio) ** (1 / n)
    return [step] * n


def _attentions(model: nn.Module) -> list[nn.Module]:
    """timm's attention blocks: a fused qkv projection split into ``num_heads`` heads."""
    return [
        m
        for m in model.modules()
        if isinstance(getattr(m, "qkv", None), nn.Linear) and hasattr(m, "num_heads")
    ]


def magnitude_prune(model: nn.Module, example: Tensor, **settings: Any) -> Any:
    """Remove channels of ``model`` in place by their groups' L2 magnitude with Torch-Pruning,
    keeping widths multiples of ``ROUND_TO`` (``settings``: ratios, ignored layers, heads);
    returns the pruner, which knows what it removed."""
    import torch_pruning as tp

    with warnings.catch_warnings(), torch.enable_grad():
        # It warns about every bare parameter (position embeddings, layer scales) that it
        # prunes along its last dimension, which is the channel dimension in timm.
        warnings.simplefilter("ignore")
        pruner = tp.pruner.BasePruner(
            model,
            example,
            importance=tp.importance.GroupMagnitudeImportance(p=2),
            round_to=ROUND_TO,
            **settings,
        )
        pruner.step()
    return pruner


def prune_step(model: nn.Module, ratio: float, input_shape: tuple[int, ...]) -> nn.Module:
    """Remove ``ratio`` of the channels (and heads) of every prunable group of ``model``, in
    place, by their L2 magnitude; the classifier keeps its outputs.

    Raises:
        UserError: Torch-Pruning cannot trace or prune this student (one line, why).
    """

    was_training = model.training
    model.eval()
    # One head cannot lose a head: its qkv keeps its outputs (the embedding still narrows).
    attentions = [a for a in _attentions(model) if a.num_heads > 1]
    single = [a.qkv for a in _attentions(model) if a.num_heads <= 1]
    example = torch.zeros(1, *input_shape, device=next(model.parameters()).device)
    try:
        pruner = magnitude_prune(
            model,
            example,
            pruning_ratio=ratio,
            ignored_layers=[model.get_classifier(), *single],
            num_heads={a.qkv: a.num_heads for a in attentions},
            prune_num_heads=bool(attentions),
            prune_head_dims=False,
            head_pruning_ratio=ratio,
        )
        for a in attentions:  # whole heads go: head_dim (and the softmax scale) stay
            a.num_heads = int(pruner.num_heads.get(a.qkv, a.num_heads))
            a.attn_dim = a.qkv.out_features // 3
            a.head_dim = a.attn_dim // a.num_heads
        with torch.no_grad():
            model(example)
    except Exception as exc:  # noqa: BLE001 - whatever the tracer trips on is one line
        raise UserError(
            f"Torch-Pruning cannot prune this {type(model).__name__} "
            f"({type(exc).__name__}: {first_line(exc)[:200]})"
        ) from None
    model.train(was_training)
    return model


def structure(model: nn.Module) -> dict[str, dict[str, Any]]:
    """The shape attributes of every module, as JSON-ready values: with the tensors, all that
    rebuilding a pruned student from its unpruned build needs."""
    out: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        attrs = {}
        for attr in SHAPE_ATTRS:
            value = getattr(module, attr, None)
            if isinstance(value, int | tuple | list) and not isinstance(value, bool):
                attrs[attr] = list(value) if isinstance(value, tuple | list) else value
        if attrs:
            out[name] = attrs
    return out


def rebuild(
    model: nn.Module, shapes: dict[str, dict[str, Any]], state: dict[str, Tensor]
) -> nn.Module:
    """``model`` (the unpruned build) reshaped to ``shapes`` and loaded with ``state``, in place.

    Raises:
        ValueError: the shapes or tensors are not of a pruned version of this model.
    """
    modules = dict(model.named_modules())
    for name, attrs in shapes.items():
        if name not in modules:
            raise ValueError(f"no module {name!r} in this student")
        for attr, value in attrs.items():
            if attr not in SHAPE_ATTRS or not hasattr(modules[name], attr):
                raise ValueError(f"module {name!r} has no shape attribute {attr!r}")
            current = getattr(modules[name], attr)
            setattr(modules[name], attr, tuple(value) if isinstance(current, tuple) else value)
    for key, tensor in state.items():
        owner, _, leaf = key.rpartition(".")
        module = modules.get(owner)
        if module is None:
            raise ValueError(f"no module for tensor {key!r}")
        old = getattr(module, leaf, None)
        if not isinstance(old, Tensor) or old.shape == tensor.shape:
            continue
        if isinstance(old, nn.Parameter):
            setattr(module, leaf, nn.Parameter(torch.empty_like(tensor), old.requires_grad))
        else:
            module.register_buffer(leaf, torch.empty_like(tensor))
    model.load_state_dict(state, strict=True)
    return model


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["MAX_STEP", "ROUND_TO", "count", "prune_step", "rebuild", "rounds", "structure"]
