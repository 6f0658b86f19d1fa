"""Measurement: parameter and FLOP counts are exact; latency records how it was measured."""

from __future__ import annotations

import torch
from torch import nn

from autodistill.measure import count_flops, count_params, measure_latency


def test_counts_are_exact_for_a_known_model():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    assert count_params(model) == 12 * 5 + 5
    assert count_flops(model, (3, 2, 2)) == 2 * 12 * 5


def test_latency_is_a_median_with_its_threads_and_device():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    model(torch.zeros(1, 1, 8, 8))
    model.train()
    lat = measure_latency(model, (1, 8, 8), threads=1, min_run_time=0.05)
    assert lat.median_ms > 0 and lat.iqr_ms >= 0
    assert lat.threads == 1 and lat.device and lat.runs >= 10
    assert model.training  # mode restored
