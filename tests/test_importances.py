"""Hyperparameter importances show what varied and mattered, not empty bars; the 3-D
view reads in real units."""

from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution

from autodistill.study import importances


def test_only_parameters_that_varied_in_most_trials_and_mattered_are_shown():
    study = optuna.create_study(directions=["maximize"])
    lr = FloatDistribution(1e-3, 1e-1)
    width = CategoricalDistribution([8, 16])
    rare = FloatDistribution(0.0, 1.0)
    for i in range(12):
        params = {"lr": 1e-3 + i * 5e-3, "width": 8}  # width sampled every time, always 8
        dists = {"lr": lr, "width": width}
        if i < 3:  # a conditional parameter sampled in 3 of 12 trials
            params["rare"], dists["rare"] = i / 3, rare
        accuracy = 0.5 + i / 30
        study.add_trial(
            optuna.create_trial(
                params=params,
                distributions=dists,
                values=[accuracy],
                user_attrs={"val_accuracy": accuracy},
            )
        )
    assert list(importances(study)) == ["lr"]


def test_log_axes_of_the_3d_view_are_labelled_in_real_units():
    import numpy as np

    from autodistill.render.plots import _log_ticks

    ticks, labels = _log_ticks(np.log10([9_744, 59_490, 327_098]))
    assert labels == ["10k", "20k", "50k", "100k", "200k"]
    assert np.allclose(ticks, np.log10([1e4, 2e4, 5e4, 1e5, 2e5]))
    assert _log_ticks(np.log10([0.05, 0.16]))[1] == ["0.05", "0.1"]
    assert _log_ticks(np.log10([1e2, 1e9]))[1] == [
        f"{v}" for v in ("100", "1k", "10k", "100k", "1M", "10M", "100M", "1G")
    ]
