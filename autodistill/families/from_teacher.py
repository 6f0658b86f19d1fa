"""Students derived from the teacher: its stages cut to fewer blocks and narrowed by
Torch-Pruning, keeping the teacher's weights in what is left (the Minitron / FastNAS recipe:
prune, inherit, recover by distillation).

``keep`` is the fraction of each stage's channels kept (rounded to multiples of 8, chosen by
their L2 magnitude); ``depths`` the blocks each stage keeps (its first ones, at most the
teacher's). A stage is what timm's ``feature_info`` names, whose blocks form a sequence: every
timm CNN; a teacher without such stages is refused for this family in one line.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from autodistill.domain import integer, real
from autodistill.errors import UserError, first_line
from autodistill.families.registry import InputSpec, register_family, stage_list
from autodistill.prune import magnitude_prune


def _text(values: Any, fmt: str) -> str:
    items = values if isinstance(values, list | tuple) else [values]
    return "-".join(format(v, fmt) for v in items)


def _describe(a: Mapping[str, Any]) -> str:
    return f"from_teacher k{_text(a['keep'], '.2g')} d{_text(a['depths'], 'd')}"


def stages(model: nn.Module) -> list[nn.Sequential]:
    """The block sequences of the model's stages (timm's ``feature_info``), shallowest first."""
    inner = getattr(model, "model", model)  # a given teacher behind its input adapter
    info = getattr(inner, "feature_info", None)
    names = [f["module"] for f in info] if isinstance(info, list) else []
    found = []
    for name in names:
        try:
            module = inner.get_submodule(name)
        except AttributeError:
            continue
        blocks = module if isinstance(module, nn.Sequential) else getattr(module, "blocks", None)
        if isinstance(blocks, nn.Sequential) and len(blocks) > 0:
            found.append(blocks)
    return found


def _classifier(model: nn.Module) -> list[nn.Module]:
    inner = getattr(model, "model", model)
    head = inner.get_classifier() if hasattr(inner, "get_classifier") else None
    return [head] if isinstance(head, nn.Module) else []


@register_family(
    "from_teacher",
    params={"keep": real(0.0, 1.0, above=True), "depths": integer(1, 64)},
    describe=_describe,
    derived=True,
)
def derive(a: Mapping[str, Any], spec: InputSpec, teacher: nn.Module) -> nn.Module:
    """The teacher, its stages cut to ``depths`` blocks and ``keep`` of their channels, with
    its weights in what is left."""
    model = copy.deepcopy(teacher).cpu().eval()
    found = stages(model)
    if not found:
        raise UserError(
            f"the teacher ({type(getattr(model, 'model', model)).__name__}) has no stages to "
            "derive from_teacher students from (timm models with feature_info have them); "
            "leave from_teacher out of the space"
        )
    depths = stage_list(a["depths"], len(found))
    keep = stage_list(a["keep"], len(found))
    for blocks, depth in zip(found, depths, strict=True):
        while len(blocks) > max(1, int(depth)):
            del blocks[len(blocks) - 1]
    ratios = {blocks: 1.0 - float(k) for blocks, k in zip(found, keep, strict=True) if k < 1}
    if ratios:
        example = torch.zeros(1, spec.in_chans, spec.image_size, spec.image_size)
        try:
            magnitude_prune(
                model,
                example,
                pruning_ratio=0.0,
                pruning_ratio_dict=ratios,
                ignored_layers=_classifier(model),
            )
        except Exception as exc:  # noqa: BLE001 - whatever the tracer trips on is one line
            raise UserError(
                f"Torch-Pruning cannot prune the teacher for a from_teacher student "
                f"({type(exc).__name__}: {first_line(exc)[:200]}); leave from_teacher out of "
                "the space"
            ) from None
    for p in model.parameters():
        p.requires_grad_(True)
    return model.train()
