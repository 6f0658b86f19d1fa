"""Atomic file writes: a reader (or a second worker) never sees a half-written result file."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to; it replaces ``path`` when the block ends.

    The name is unique per writer (workers of one run may write the same file at once) and keeps
    the suffix, which tells writers such as ``savefig`` the format.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str, *, private: bool = False) -> None:
    """Write ``text`` to ``path`` atomically; ``private`` makes it readable by its owner only
    (a file holding a password)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
        if private:
            tmp.chmod(0o600)
