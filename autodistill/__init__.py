"""autodistill: multi-objective search for small, fast students by knowledge distillation.

    import autodistill
    run = autodistill.search(budget=50, data="mnist5k")
    run.front                                   # the Pareto front, a pandas DataFrame
    autodistill.train(run.run_dir, pick="knee")
    autodistill.compress(run.run_dir, prune=(0.25, 0.5), qat=True)  # the compression front
    student = autodistill.load_student(run.run_dir, trial=int(run.front["number"].iloc[0]))

The names below are imported on first use, so ``import autodistill`` does not wait for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "search": "api",
    "train": "api",
    "compress": "api",
    "export": "api",
    "report": "api",
    "load_student": "api",
    "list_spaces": "api",
    "dashboard": "api",
    "SearchResult": "api",
    "ReportResult": "api",
    "UserError": "errors",
    "Progress": "progress",
    "OBJECTIVES": "objectives",
    # The options of each command, one field each (its help: dataclasses.fields(...).metadata).
    "SearchConfig": "config",
    "TrainOptions": "ship.options",
    "ExportOptions": "ship.options",
    "CompressOptions": "ship.options",
}

__all__ = [
    "OBJECTIVES",
    "CompressOptions",
    "ExportOptions",
    "Progress",
    "ReportResult",
    "SearchConfig",
    "SearchResult",
    "TrainOptions",
    "UserError",
    "__version__",
    "compress",
    "dashboard",
    "export",
    "load_student",
    "report",
    "list_spaces",
    "search",
    "train",
]

if TYPE_CHECKING:
    from autodistill.api import (
        ReportResult,
        SearchResult,
        compress,
        dashboard,
        export,
        list_spaces,
        load_student,
        report,
        search,
        train,
    )
    from autodistill.config import SearchConfig
    from autodistill.errors import UserError
    from autodistill.objectives import OBJECTIVES
    from autodistill.progress import Progress
    from autodistill.ship.options import CompressOptions, ExportOptions, TrainOptions


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'autodistill' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"autodistill.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
