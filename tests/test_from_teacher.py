"""Students cut from the teacher: fewer blocks, narrower stages, the teacher's own weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import autodistill
from autodistill.errors import UserError
from autodistill.families import InputSpec, build_student
from autodistill.families.from_teacher import stages
from autodistill.teacher import build_teacher

SPEC = InputSpec(1, 16, 10)


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return build_teacher("resnet18", SPEC).eval()


def test_keeping_everything_is_the_teacher_itself(resnet18):
    same = build_student("from_teacher", {"keep": 1.0, "depths": 2}, SPEC, lambda: resnet18)
    mine, theirs = same.state_dict(), resnet18.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert same.training and resnet18.training is False  # a copy, ready to train


def test_a_cut_keeps_the_first_blocks_and_the_strongest_channels(resnet18):
    arch = {"keep": [0.5, 0.25, 1.0, 0.5], "depths": [1, 2, 1, 1]}
    cut = build_student("from_teacher", arch, SPEC, lambda: resnet18)
    assert [len(s) for s in stages(cut)] == [1, 2, 1, 1]
    assert cut.layer2[0].conv1.out_channels == 32  # a quarter of 128
    assert cut.layer3[0].conv2.out_channels == 256  # kept whole
    for m in cut.modules():
        if isinstance(m, nn.Conv2d):
            assert m.out_channels % 8 == 0
    # inherited: each kept filter of the stem is one of the teacher's
    teacher_rows = resnet18.conv1.weight.flatten(1)
    for row in cut.conv1.weight.flatten(1):
        assert (teacher_rows == row).all(dim=1).any()
    n = sum(p.numel() for p in cut.parameters())
    assert n < 0.35 * sum(p.numel() for p in resnet18.parameters())
    assert cut(torch.zeros(2, 1, 16, 16)).shape == (2, 10)


def test_a_teacher_without_stages_is_refused_in_one_line():
    plain = nn.Sequential(nn.Flatten(), nn.Linear(256, 10))
    with pytest.raises(UserError, match="no stages to derive from_teacher students") as caught:
        build_student("from_teacher", {"keep": 0.5, "depths": 1}, SPEC, lambda: plain)
    assert "\n" not in str(caught.value)


def test_a_from_teacher_search_trains_and_ships_students_cut_from_its_teacher(
    tmp_path, shared_cache
):
    run = autodistill.search(
        budget=2,
        data="digits",
        epochs=1,
        teacher="test_resnet",
        teacher_epochs=1,
        views=2,
        threads=2,
        space="from_teacher",
        objectives="val_accuracy,params",
        out=str(tmp_path),
        cache_dir=str(shared_cache),
        in_process=True,
    )
    trained = run.trials[run.trials["state"] == "COMPLETE"]
    assert len(trained) == 2 and set(trained["family"]) == {"from_teacher"}
    assert (trained["params"] < run.teacher["params"]).all()
    number = int(trained["number"].iloc[0])
    autodistill.train(run.run_dir, trial=number, epochs=1)
    student = autodistill.load_student(run.run_dir, number)
    assert student(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
