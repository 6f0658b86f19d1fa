"""Data flows one way: a lower layer never imports a higher one, and only search knows Optuna."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "autodistill"
# Lower number = lower layer. A module may import only modules of its own layer or below.
LAYERS = {
    "errors": 0, "files": 0, "signals": 0, "config": 1, "data": 1, "forward": 1, "cache": 1,
    "families": 2, "losses": 2, "spaces": 3, "measure": 4, "train": 4, "teacher": 5,
    "candidate": 5, "search": 6, "pick": 7, "report": 7, "page": 7, "prepare": 8, "workers": 9,
    "pipeline": 10, "fulltrain": 10, "export": 11, "cli": 12,
}  # fmt: skip


def _module(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    return rel.parts[0]


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


FILES = [p for p in PKG.rglob("*.py") if _module(p) in LAYERS]


def test_every_module_has_a_layer():
    assert {_module(p) for p in PKG.rglob("*.py") if p.name != "__init__.py" or
            p.parent != PKG} <= set(LAYERS)  # fmt: skip


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_upward_imports_and_optuna_only_in_search(path):
    mine = LAYERS[_module(path)]
    for name in _imports(path):
        if name.startswith("autodistill."):
            other = name.split(".")[1]
            assert LAYERS[other] <= mine, f"{path.name} imports higher layer {name}"
        if name.split(".")[0] == "optuna":
            assert _module(path) == "search", f"{path.name} imports optuna"
