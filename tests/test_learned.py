"""What a student learned: agreement with the teacher, the class kept worst, calibration."""

from __future__ import annotations

import pytest
import torch

from autodistill.ship.learned import expected_calibration_error, what_it_learned


def test_calibration_error_is_zero_when_confidence_matches_accuracy_and_grows_when_it_does_not():
    labels = torch.tensor([0, 0, 0, 0])
    sure_and_right = torch.tensor([[20.0, 0.0]] * 4)
    assert expected_calibration_error(sure_and_right, labels) == pytest.approx(0.0, abs=1e-6)
    # Sure (about 1.0) but right only half the time: the gap is about 0.5.
    half_wrong = torch.tensor([[20.0, 0.0], [20.0, 0.0], [0.0, 20.0], [0.0, 20.0]])
    assert expected_calibration_error(half_wrong, labels) == pytest.approx(0.5, abs=1e-3)


def test_agreement_per_class_retention_and_the_worst_class_are_named():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    teacher = torch.nn.functional.one_hot(labels, 3).float() * 5  # right on every image
    student = teacher.clone()
    student[2] = torch.tensor([5.0, 0.0, 0.0])  # one image of class "b" wrong
    got = what_it_learned(student, teacher, labels, ("a", "b", "c"))
    assert got["agreement_with_teacher"] == pytest.approx(5 / 6)
    assert got["worst_class"] == "b" and got["worst_class_retention"] == pytest.approx(0.5)
    by_class = {c["class"]: c for c in got["per_class"]}
    assert by_class["a"]["retention"] == 1.0 and by_class["b"]["teacher_accuracy"] == 1.0
