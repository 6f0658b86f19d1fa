"""What a fully trained student learned from its teacher, on the test split: how often it agrees
with the teacher, which class it kept worst, and whether its confidence can be trusted."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

ECE_BINS = 15


def expected_calibration_error(logits: Tensor, labels: Tensor, bins: int = ECE_BINS) -> float:
    """Expected calibration error: over ``bins`` equal-width bins of top-1 confidence, the
    |accuracy - confidence| gap weighted by the share of images in the bin (0 is calibrated)."""
    probs = torch.softmax(logits.float(), dim=1)
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = torch.zeros(())
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            gap = (correct[inside].mean() - confidence[inside].mean()).abs()
            ece += gap * inside.float().mean()
    return float(ece)


def what_it_learned(
    student: Tensor, teacher: Tensor, labels: Tensor, classes: tuple[str, ...]
) -> dict[str, Any]:
    """Top-1 agreement with the teacher, per-class accuracy of both and the student's retention
    of the teacher's (the worst class named), and both calibration errors, from test logits."""
    s_pred, t_pred = student.argmax(1), teacher.argmax(1)
    per_class = []
    for index, name in enumerate(classes):
        mine = labels == index
        if not mine.any():
            continue
        s_acc = float((s_pred[mine] == index).float().mean())
        t_acc = float((t_pred[mine] == index).float().mean())
        per_class.append(
            {
                "class": name,
                "images": int(mine.sum()),
                "student_accuracy": s_acc,
                "teacher_accuracy": t_acc,
                "retention": s_acc / t_acc if t_acc > 0 else None,
            }
        )
    kept = [c for c in per_class if c["retention"] is not None]
    worst = min(kept, key=lambda c: c["retention"]) if kept else None
    return {
        "agreement_with_teacher": float((s_pred == t_pred).float().mean()),
        "per_class": per_class,
        "worst_class": worst["class"] if worst else None,
        "worst_class_retention": worst["retention"] if worst else None,
        "student_ece": expected_calibration_error(student, labels),
        "teacher_ece": expected_calibration_error(teacher, labels),
        "split": "test",
    }


__all__ = ["expected_calibration_error", "what_it_learned"]
