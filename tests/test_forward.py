"""forward_outputs: the same logits as model(x) for every family, plus features and attention
maps."""

from __future__ import annotations

import pytest
import torch

from autodistill.families import FAMILIES, InfeasibleArchitecture, InputSpec, build_student
from autodistill.forward import ATTENTION_STAGES, forward_outputs, map_size
from autodistill.spaces import load_space
from autodistill.teacher import build_teacher
from tests.conftest import teacher_of
from tests.test_spaces import random_suggest


def _feasible(family: str, spec: InputSpec):
    space = load_space(family)
    for seed in range(20):
        try:
            arch = space.sample(random_suggest(seed)).arch
            return build_student(family, arch, spec, teacher_of(family, spec))
        except InfeasibleArchitecture:
            continue
    raise AssertionError(f"no feasible {family} in 20 samples")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_parts_match_the_plain_forward_for_every_family(family):
    spec = InputSpec(1, 28, 10)
    torch.manual_seed(0)
    model = _feasible(family, spec).eval()
    x = torch.randn(3, 1, 28, 28)
    size = map_size(28)
    with torch.no_grad():
        got = forward_outputs(model, x, ("features", "attention"), size)
        logits, feats, maps = got["logits"], got["features"], got["attention"]
        plain = model(x)
    assert torch.allclose(logits, plain, atol=1e-5)
    assert feats.ndim == 2 and feats.shape[0] == 3
    k = min(ATTENTION_STAGES, len(model.feature_info))
    assert maps.shape == (3, k, size * size)
    assert torch.allclose(maps.norm(dim=-1), torch.ones(3, k), atol=1e-4)


def test_the_default_teacher_gives_three_stage_maps():
    model = build_teacher("resnet18", InputSpec(1, 28, 10)).eval()
    with torch.no_grad():
        got = forward_outputs(model, torch.randn(2, 1, 28, 28), ("features", "attention"), 7)
        feats, maps = got["features"], got["attention"]
    assert feats.shape == (2, 512) and maps.shape == (2, 3, 49)
