"""``--search-subset``: trials train on a stratified subset of the training split, with the
teacher views of exactly those images; the subset defines the study."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autodistill.errors import UserError


def test_a_subset_is_stratified_and_sorted(digits):
    half = digits.subset_index(0.5, seed=0)
    labels = digits.train.labels.numpy()
    whole, kept = np.bincount(labels), np.bincount(labels[half.numpy()])
    assert np.all(np.abs(kept - whole / 2) <= 1)
    assert torch.equal(half, half.sort().values)
    assert len(digits.subset_index(100, seed=0)) == 100
    assert torch.equal(digits.subset_index(0.5, seed=0), half)  # the seed fixes it
    assert len(np.unique(labels[digits.subset_index(3, seed=0).numpy()])) == 10  # one a class
    sub = digits.with_train_subset(half)
    assert len(sub.train) == len(half) and sub.stats == digits.stats and sub.val is digits.val


def test_the_views_follow_their_images(full_views):
    index = torch.tensor([5, 2, 9])
    taken = full_views.take(index)
    for kind, out in full_views.outputs.items():
        assert torch.equal(taken.outputs[kind], out[:, index])
    assert torch.equal(taken.params, full_views.params[:, index])


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.2, True])
def test_a_subset_that_is_neither_a_fraction_nor_a_count_is_one_line(bad):
    from autodistill.config import SearchConfig

    with pytest.raises(UserError, match="--search-subset"):
        SearchConfig(search_subset=bad)


def test_trials_train_on_the_subset_and_it_defines_the_study(tmp_path, shared_cache, monkeypatch):
    from autodistill import api, recipe

    seen = []
    real = recipe.fit

    def fit(model, train, *args, views=None, **kwargs):
        seen.append((len(train), views.outputs["logits"].shape[1]))
        return real(model, train, *args, views=views, **kwargs)

    monkeypatch.setattr(recipe, "fit", fit)
    args = dict(
        data="digits",
        budget=2,
        epochs=3,  # a quarter of digits is 5 steps an epoch: one epoch may not leave chance
        teacher="test_resnet",
        teacher_epochs=1,
        views=2,
        threads=2,
        out=str(tmp_path),
        cache_dir=str(shared_cache),
        in_process=True,
        objectives="val_accuracy,params",  # the subset is what this checks: latency not timed
    )
    api.search(**args, search_subset=0.25)
    from autodistill.data import load_dataset

    n = len(load_dataset("digits").train)
    assert seen and all(images == views == round(0.25 * n) for images, views in seen)
    with pytest.raises(UserError, match="search_subset"):
        api.search(**{**args, "budget": 3}, search_subset=0.5)
