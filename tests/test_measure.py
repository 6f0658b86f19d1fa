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


def test_a_vits_attention_flops_are_counted_on_every_device(monkeypatch):
    """Counted on a CPU copy with the math attention kernel: QK^T and AV, 2 FLOPs per
    multiply-add, per head (torch's counter has no formula for the CPU's fused kernel, which
    counted them as 0 there and as FLOPs on CUDA). The model itself is not moved."""
    from autodistill.families import InputSpec, build_student

    heads, head_dim = 2, 16
    arch = {"patch_size": 4, "depth": 1, "heads": heads, "head_dim": head_dim, "mlp_ratio": 2.0}
    model = build_student("vit", arch, InputSpec(1, 28, 10))
    tokens = model.patch_embed.num_patches + model.num_prefix_tokens
    counted = count_flops(model, (1, 28, 28))
    monkeypatch.setattr(
        torch.nn.functional, "scaled_dot_product_attention", lambda q, k, v, **kw: v
    )
    without = count_flops(model, (1, 28, 28))
    assert counted - without == 2 * 2 * heads * tokens * tokens * head_dim
    assert next(model.parameters()).device.type == "cpu" and model.training
