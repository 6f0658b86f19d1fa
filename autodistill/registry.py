"""One kind of registry for every axis that grows: families, losses, objectives, datasets and
samplers each keep their entries in a ``Registry``, which refuses a name registered twice and
names the known ones when asked for one it does not have."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from autodistill.errors import UserError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Entries by name, in the order they were registered (a read-only mapping)."""

    def __init__(self, what: str, *, sort_known: bool = True) -> None:
        self.what = what  # "family", "loss": how an error names an entry
        self._sort_known = sort_known
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` as ``name``; a name registered twice is a programming error."""
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:  # type: ignore[override] - never None: unknown is an error
        """The entry called ``name``, or a UserError that lists the known ones."""
        try:
            return self._entries[name]
        except KeyError:
            raise UserError(
                f"unknown {self.what} {name!r}; known: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        """The known names (sorted, or in registration order where that order means something)."""
        return sorted(self._entries) if self._sort_known else list(self._entries)

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


__all__ = ["Registry"]
