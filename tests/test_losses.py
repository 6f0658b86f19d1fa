"""Losses: the formulas, checked against direct computation and their invariances."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from autodistill.errors import UserError
from autodistill.losses import LOSSES, get_loss, total


def test_kd_matches_hintons_formula():
    torch.manual_seed(0)
    s, t = torch.randn(6, 5), torch.randn(6, 5)
    y = torch.randint(0, 5, (6,))
    T, alpha = 3.0, 0.7
    parts = get_loss("kd").fn(s, t, y, temperature=T, alpha=alpha)
    p_t = torch.softmax(t / T, 1)
    kl = (p_t * (p_t.log() - torch.log_softmax(s / T, 1))).sum(1).mean()
    expected = (1 - alpha) * F.cross_entropy(s, y) + alpha * T * T * kl
    assert torch.allclose(total(parts), expected, atol=1e-5)
    assert set(parts) == {"ce", "kd"}


def test_kd_is_unchanged_when_a_constant_is_added_to_a_row_of_logits():
    torch.manual_seed(1)
    s, t, y = torch.randn(4, 10), torch.randn(4, 10), torch.randint(0, 10, (4,))
    shift = torch.randn(4, 1) * 5
    a = get_loss("kd").fn(s, t, y, temperature=4.0, alpha=0.5)
    b = get_loss("kd").fn(s + shift, t - shift, y, temperature=4.0, alpha=0.5)
    assert torch.allclose(total(a), total(b), atol=1e-5)


def test_kd_soft_part_is_zero_when_student_equals_teacher_and_has_gradient_otherwise():
    t = torch.randn(8, 10)
    y = torch.randint(0, 10, (8,))
    assert get_loss("kd").fn(t.clone(), t, y, temperature=2.0, alpha=1.0)["kd"].abs() < 1e-6
    s = torch.randn(8, 10, requires_grad=True)
    get_loss("kd").fn(s, t, y, temperature=2.0, alpha=1.0)["kd"].backward()
    assert s.grad.abs().sum() > 0


def test_ce_needs_no_teacher_and_is_cross_entropy():
    s, y = torch.randn(5, 3), torch.randint(0, 3, (5,))
    assert not LOSSES["ce"].needs_teacher
    assert torch.allclose(total(get_loss("ce").fn(s, None, y)), F.cross_entropy(s, y))


def test_unknown_loss_lists_the_known_ones():
    with pytest.raises(UserError, match="unknown loss 'kl'; known: ce, kd"):
        get_loss("kl")
