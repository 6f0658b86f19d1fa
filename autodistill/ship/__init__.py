"""Shipping a student: choose it from the front, train it fully, compress it, export it, load it."""

from __future__ import annotations

from autodistill.ship.compress import CompressOutcome, compress_student
from autodistill.ship.export import ExportOutcome, export_student
from autodistill.ship.fulltrain import FullTrainOutcome, train_students
from autodistill.ship.pick import RULES, knee, pick, pick_within, top_front
from autodistill.ship.student import load_student, trained_numbers, trained_student

__all__ = [
    "RULES",
    "CompressOutcome",
    "ExportOutcome",
    "FullTrainOutcome",
    "compress_student",
    "export_student",
    "knee",
    "load_student",
    "pick",
    "pick_within",
    "top_front",
    "train_students",
    "trained_numbers",
    "trained_student",
]
