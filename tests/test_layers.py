"""Data flows one way: a lower layer never imports a higher one, and only search knows Optuna."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "autodistill"
# Lower number = lower layer. A module may import only modules of its own layer or below.
LAYERS = {
    "errors": 0,
    "domain": 0,
    "files": 0,
    "signals": 0,
    "progress": 0,
    "noise": 0,
    "gap": 0,
    "processes": 0,
    "registry": 0,
    "options": 0,
    "device": 1,
    "data": 1,
    "forward": 1,
    "layout": 1,
    "contain": 1,
    "cache": 2,
    "families": 2,
    "losses": 2,
    "spaces": 3,
    "measure": 4,
    "trainer": 4,
    "runtime": 4,
    "prune": 2,  # Torch-Pruning behind one line; students cut from the teacher prune too
    "qat": 4,
    "int8": 5,
    "latency": 5,
    "objectives": 5,
    "recipe": 5,
    "teacher_input": 4,
    "teacher": 5,
    "teacher_sources": 5,
    "teacher_graphs": 5,
    "teacher_store": 5,
    "reference": 5,
    "config": 6,
    "identity": 6,
    "rundir": 6,
    "prepare": 7,
    "render": 7,
    "study": 8,
    "ship": 9,
    "api": 10,
    "terminal": 11,
    "cli": 12,
}
# Inside a room with rooms of its own, the same holds one level down.
INNER = {
    "study": {
        "record": 0,
        "private": 0,
        "database": 0,
        "storage": 0,
        "early_stop": 0,
        "candidate": 0,
        "dashboard": 0,
        "promotion": 0,
        "opening": 0,
        "handle": 1,
        "supervisor": 1,
        "objective": 1,
        "controller": 2,
        "results": 3,
        "workers": 3,
    },
    "ship": {
        "pick": 0,
        "student": 0,
        "learned": 0,
        "variants": 0,
        "options": 0,
        "fulltrain": 1,
        "export": 1,
        "compress": 1,
    },
    "render": {"tables": 0, "plots": 1, "page": 1},
    "spaces": {"model": 0, "parse": 1},
}


def _module(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    return rel.parts[0]


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)  # and "from package import module" names the module too
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


FILES = [p for p in PKG.rglob("*.py") if _module(p) in LAYERS]


def test_every_module_has_a_layer():
    assert {
        _module(p) for p in PKG.rglob("*.py") if p.name != "__init__.py" or p.parent != PKG
    } <= set(LAYERS)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_upward_imports_and_optuna_only_in_study(path):
    mine = LAYERS[_module(path)]
    for name in _imports(path):
        if name.startswith("autodistill."):
            other = name.split(".")[1]
            if other == "__version__":  # the root's one plain value, not a room
                continue
            assert LAYERS[other] <= mine, f"{path.name} imports higher layer {name}"
        if name.split(".")[0] == "optuna":
            assert _module(path) == "study", f"{path.name} imports optuna"


INNER_FILES = [p for p in PKG.rglob("*.py") if _module(p) in INNER and p.name != "__init__.py"]


@pytest.mark.parametrize("path", INNER_FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_upward_imports_inside_a_room(path):
    room = _module(path)
    layers = INNER[room]
    assert path.stem in layers, f"{path.name} has no layer in INNER[{room!r}]"
    for name in _imports(path):
        parts = name.split(".")
        if parts[:2] == ["autodistill", room] and len(parts) > 2 and parts[2] in layers:
            assert layers[parts[2]] <= layers[path.stem], f"{path.name} imports {name}"


def test_the_package_root_imports_nothing_heavy():
    """``import autodistill`` (and so ``autodistill --help``) does not wait for torch."""
    import subprocess
    import sys

    code = "import sys, autodistill; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
