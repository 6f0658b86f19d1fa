"""A built wheel carries the search spaces: the installed package finds them without the source
tree."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_ships_the_spaces_and_the_installed_package_finds_them(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("autodistill-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(p.name for p in (ROOT / "search_spaces").glob("*.yaml"))
    assert shipped and all(f"autodistill/search_spaces/{n}" in names for n in shipped)

    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    code = (
        "import autodistill.spaces as s; print(s.__file__); print(','.join(s.list_spaces()));"
        "print(s.load_space('default').name)"
    )
    # Run from an empty folder with only the installed copy first on the path: the source
    # tree (and its editable install) is not what is imported.
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    where, names_line, default = out.stdout.split()
    assert Path(where).is_relative_to(target)
    assert names_line.split(",") == [n.removesuffix(".yaml") for n in shipped]
    assert default == "default"
