"""A small name -> object registry, used for every user-facing choice (spaces, code modes, presets...).

`get()` errors name the registry and list the valid choices, so a CLI typo explains itself.
"""
from __future__ import annotations

from typing import Dict, Generic, Iterator, List, TypeVar

from kshot_bench.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, T] = {}
        self._aliases: Dict[str, str] = {}  # lower-cased other spelling -> name

    def alias(self, other: str, name: str) -> None:
        """Accept `other` (any case) for `name`."""
        self._aliases[other.lower()] = name

    def canonical(self, name: str) -> str:
        """The registered name for `name` or one of its aliases (case-insensitive); errors as `get`."""
        if name in self._items:
            return name
        lowered = str(name).lower()
        found = self._aliases.get(lowered) or next((n for n in self._items if n.lower() == lowered), None)
        if found is None:
            self.get(name)  # raises the error that lists the choices
        return found

    def register(self, name: str, obj: T | None = None):
        """Register `obj` under `name`; usable as a decorator when `obj` is omitted."""

        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        if name not in self._items and isinstance(name, str):
            lowered = name.lower()
            name = self._aliases.get(lowered) or next((n for n in self._items if n.lower() == lowered), name)
        try:
            return self._items[name]
        except KeyError:
            raise UserError(
                f"unknown {self.kind} {name!r}",
                fix=f"choose one of: {', '.join(self.names())}",
            ) from None

    def names(self) -> List[str]:
        return list(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)
