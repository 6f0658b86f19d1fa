"""Search spaces: what a study samples (``model``) and how it is read from YAML (``parse``)."""

from __future__ import annotations

from autodistill.spaces.model import Candidate, Param, SearchSpace, Suggest
from autodistill.spaces.parse import (
    SPACES_DIR,
    TRAIN_PARAMS,
    list_spaces,
    load_space,
    parse_space,
    resolve_space_path,
)

__all__ = [
    "SPACES_DIR",
    "TRAIN_PARAMS",
    "Candidate",
    "Param",
    "SearchSpace",
    "Suggest",
    "list_spaces",
    "load_space",
    "parse_space",
    "resolve_space_path",
]
