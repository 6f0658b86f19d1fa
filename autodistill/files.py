"""Atomic file writes: a reader (or a second worker) never sees a half-written result file."""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@functools.cache
def _default_mode() -> int:
    """The mode a new file gets here (0644 under the usual umask 022). Writers such as
    safetensors create 0600 files, which a cache shared by a group could not read."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(path: Path, *, private: bool = False) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to; it replaces ``path`` when the block ends,
    with the mode a new file gets (``private``: owner only, for a file holding a password).

    The name is unique per writer (workers of one run may write the same file at once) and keeps
    the suffix, which tells writers such as ``savefig`` the format.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        tmp.chmod(0o600 if private else _default_mode())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str, *, private: bool = False) -> None:
    """Write ``text`` to ``path`` atomically; ``private`` makes it readable by its owner only
    (a file holding a password)."""
    with atomic_path(path, private=private) as tmp:
        tmp.write_text(text)
