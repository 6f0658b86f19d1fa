"""Student families: every registered family builds from its shipped space, on small inputs."""

from __future__ import annotations

import pytest
import torch

from autodistill.families import FAMILIES, InfeasibleArchitecture, InputSpec, build_student
from autodistill.spaces import load_space
from tests.conftest import teacher_of
from tests.test_spaces import random_suggest


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("size", [28, 32])
def test_every_family_builds_or_is_declared_infeasible(family, size):
    space = load_space(family)
    spec = InputSpec(in_chans=1, image_size=size, num_classes=7)
    built = 0
    for seed in range(6):
        cand = space.sample(random_suggest(seed))
        try:
            model = build_student(family, cand.arch, spec, teacher_of(family, spec))
        except InfeasibleArchitecture as exc:
            assert str(exc)
            continue
        built += 1
        assert model.training  # returned ready to train
        assert model(torch.zeros(2, 1, size, size)).shape == (2, 7)
    assert built > 0


def test_vit_patch_that_does_not_divide_is_infeasible():
    arch = {"patch_size": 8, "depth": 1, "heads": 1, "head_dim": 16, "mlp_ratio": 2}
    with pytest.raises(InfeasibleArchitecture, match="does not divide the 28px input"):
        build_student("vit", arch, InputSpec(1, 28, 10))
    assert build_student("vit", arch, InputSpec(1, 32, 10)) is not None


def test_convnext_too_deep_for_its_input_is_infeasible_not_a_crash():
    arch = {"patch_size": 2, "depths": [1, 1, 1, 1], "width": 16, "kernel": 3}
    with pytest.raises(InfeasibleArchitecture, match="cannot run on 8px input"):
        build_student("convnext", arch, InputSpec(1, 8, 10))


def test_resnet_stem_stride_sets_the_resolution_of_the_first_stage():
    spec = InputSpec(3, 32, 10)
    for stride, expected in ((1, 32), (2, 16)):
        arch = {"stem_stride": stride, "depths": [1, 1, 1, 1], "width": 8}
        model = build_student("resnet", arch, spec)
        x = model.maxpool(model.act1(model.bn1(model.conv1(torch.zeros(1, 3, 32, 32)))))
        assert model.layer1(x).shape[-1] == expected


def test_unknown_family_is_a_user_error():
    from autodistill.errors import UserError

    known = "known: convnext, from_teacher, mobilenetv3"
    with pytest.raises(UserError, match=f"unknown family 'resnt'; {known}"):
        build_student("resnt", {}, InputSpec(1, 28, 10))


def test_width_is_per_stage_when_a_list_and_doubles_when_a_scalar():
    spec = InputSpec(1, 28, 10)
    arch = {"stem_stride": 2, "depths": [1] * 4, "width": [8, 24, 16, 40]}
    listed = build_student("resnet", arch, spec)
    assert [listed.get_submodule(f"layer{i}")[0].conv2.out_channels for i in range(1, 5)] == [
        8,
        24,
        16,
        40,
    ]
    doubled = build_student(
        "convnext", {"patch_size": 1, "depths": [1] * 4, "width": 16, "kernel": 3}, spec
    )
    assert [s.blocks[0].conv_dw.out_channels for s in doubled.stages] == [16, 32, 64, 128]
