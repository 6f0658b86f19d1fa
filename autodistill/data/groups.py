"""A validation split that holds out whole groups (speakers, sites, scanners), named by a regular
expression over file names, so that validation resembles a test split drawn from other groups."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from autodistill.errors import UserError


def file_groups(paths: list[Path], pattern: str) -> np.ndarray:
    """The group of each file: the first capture group of ``pattern`` searched in its name.

    Raises:
        UserError: the expression is invalid, has no capture group, matches no file, or leaves
            a file without a group.
    """
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise UserError(f"--group-by {pattern!r} is not a regular expression ({exc})") from None
    if regex.groups < 1:
        raise UserError(
            f"--group-by {pattern!r} has no capture group; put the part of a "
            "file name that names its group in parentheses, e.g. "
            r"'^\d+_([a-z]+)_'"
        )
    found = [regex.search(p.name) for p in paths]
    missed = [p for p, m in zip(paths, found, strict=True) if m is None or not m.group(1)]
    if len(missed) == len(paths):
        raise UserError(
            f"--group-by {pattern!r} matches no file name (e.g. {paths[0].name!r}); "
            "its first capture group must name each file's group"
        )
    if missed:
        raise UserError(
            f"--group-by {pattern!r} names no group for {len(missed)} of "
            f"{len(paths)} files (e.g. {missed[0].name!r}); every training file "
            "needs one"
        )
    return np.array([m.group(1) for m in found if m is not None])


def group_split(
    labels: np.ndarray, groups: np.ndarray, share: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, carved): whole groups carved off, about ``share`` of the images, with the
    classes mixed as evenly as whole groups allow.

    Raises:
        UserError: fewer than two groups.
    """
    distinct = np.unique(groups)
    if len(distinct) < 2:
        raise UserError(
            f"--group-by found {len(distinct)} group ({str(distinct[0])!r}) among the "
            "training files; holding out whole groups needs at least two"
        )
    folds = max(2, min(len(distinct), round(1 / share)))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    rest, carved = next(splitter.split(np.zeros(len(labels)), labels, groups))
    return np.sort(rest), np.sort(carved)
