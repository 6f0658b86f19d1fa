"""The student's input size as a searched choice: each candidate sees the same views as the
teacher, resized to its own size, and is timed, trained, exported and tested at that size."""

from __future__ import annotations

import json

import onnx
import pytest
import torch
from torch import nn

import autodistill
from autodistill.data.augment import Augmentation, normalize
from autodistill.data.resize import resize
from autodistill.data.splits import DatasetSplits, ImageSet
from autodistill.families import InputSpec
from autodistill.recipe import build, describe, recipe_for, student_spec
from autodistill.spaces import Candidate
from autodistill.trainer import TrainConfig, fit

SPACE = """
description: one small ResNet at two input sizes, and one size larger than the data
families:
  resnet:
    stem_stride: 1
    depths: 1
    width: 8
distill:
  kd: {temperature: 4.0, alpha: 0.5}
train:
  lr: 0.01
  image_size: {choices: [4, 8, 16]}
"""


def _splits(n: int = 40, size: int = 8) -> DatasetSplits:
    g = torch.Generator().manual_seed(0)

    def one() -> ImageSet:
        images = torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)
        return ImageSet(images, torch.arange(n) % 4)

    return DatasetSplits("toy", one(), one(), one(), ("a", "b", "c", "d"))


def test_the_splits_at_a_size_are_resized_once_and_normalised_as_read():
    data = _splits()
    small = data.at_size(4)
    assert small.val.images.shape == (40, 1, 4, 4) and small.val.images.dtype == torch.uint8
    assert torch.equal(small.test.images, resize(data.test.images, 4))
    assert torch.equal(small.val.labels, data.val.labels)
    assert small.stats == data.stats  # as the student normalised its views in training
    assert data.at_size(4) is small and data.at_size(8) is data


def test_resizing_after_normalising_is_resizing_the_pixels():
    data = _splits()
    x = data.val.images
    after = resize(normalize(x, *data.stats), 4)
    before = normalize(resize(x, 4), *data.stats)
    assert torch.allclose(after, before, atol=0.02)  # up to uint8 rounding


class _Only(nn.Module):
    """Takes only ``size`` px inputs."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.head = nn.Linear(size * size, 4)

    def forward(self, x):
        assert x.shape[-2:] == (self.size, self.size), x.shape
        return self.head(x.flatten(1))


def test_training_shows_a_student_its_views_at_its_own_size():
    data = _splits()
    cfg = TrainConfig(epochs=1, lr=0.01, batch_size=8, image_size=4)
    history = fit(_Only(4), data.train, Augmentation(1, True), data.stats, cfg)
    assert len(history) == 1
    with pytest.raises(AssertionError):  # without it, the data's own size
        fit(_Only(4), data.train, Augmentation(1, True), data.stats, TrainConfig(1, 0.01))


def test_a_candidate_with_a_size_builds_records_and_names_its_own_input():
    cand = Candidate("resnet", {"stem_stride": 1, "depths": 1, "width": 8}, "ce", {}, {})
    sized = Candidate(cand.family, cand.arch, "ce", {}, {"lr": 0.01, "image_size": 6})
    spec = InputSpec(1, 8, 10)
    assert student_spec(cand, spec) == spec
    assert student_spec(sized, spec).shape == (1, 6, 6)
    assert describe(sized) == describe(cand) + " @6px"
    assert recipe_for(sized, epochs=1, seed=0).image_size == 6
    assert build(sized, spec, seed=0)(torch.zeros(2, 1, 6, 6)).shape == (2, 10)


def test_a_search_over_sizes_times_trains_and_ships_each_at_its_own(tmp_path, shared_cache):
    space = tmp_path / "sizes.yaml"
    space.write_text(SPACE)
    run = autodistill.search(
        budget=4,
        data="digits",
        epochs=1,
        teacher="test_resnet",
        teacher_epochs=1,
        views=2,
        threads=2,
        space=str(space),
        sampler="random",
        objectives="val_accuracy,params",
        out=str(tmp_path),
        cache_dir=str(shared_cache),
        in_process=True,
    )
    trials = run.trials
    done = trials[trials["state"] == "COMPLETE"]
    sizes = done["param.image_size"].astype(int)
    assert set(sizes) == {4, 8}, trials[["state", "arch"]]
    assert set(done["arch"].str.extract(r"@(\d+)px$")[0].astype(int)) == {4, 8}
    flops = done.groupby(sizes)["flops"].first()
    assert flops[4] < flops[8]  # the same net on a quarter of the pixels
    too_big = trials[trials["state"] != "COMPLETE"]  # 16 px from 8 px digits: never trained
    assert not too_big.empty
    assert too_big["failure_reason"].str.contains("image_size 16 is larger than the images").all()

    small = int(done[sizes == 4]["number"].iloc[0])
    autodistill.train(run.run_dir, trial=small, epochs=1)
    metrics = json.loads((run.run_dir / "students" / f"trial-{small}" / "metrics.json").read_text())
    assert metrics["recipe"]["image_size"] == 4
    student = autodistill.load_student(run.run_dir, small)
    assert student(torch.zeros(1, 1, 4, 4)).shape == (1, 10)
    shipped = autodistill.export(run.run_dir, trial=small)
    graph = onnx.load(str(shipped.files["onnx"]))
    dims = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [1, 4, 4]
    assert shipped.figures["max_abs_diff"] < 1e-3
    tested = shipped.figures["onnx_test_accuracy"]
    assert tested == pytest.approx(metrics["test_accuracy"], abs=0.02)
