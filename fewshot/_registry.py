"""One small registry class; one instance per kind of component.

Examples
--------
>>> from fewshot._registry import Registry
>>> COLOURS = Registry("colour")
>>> @COLOURS.register("red", description="the colour red")
... def make_red(shade=1.0):
...     return ("red", shade)
>>> COLOURS.create("red", shade=0.5)
('red', 0.5)
>>> COLOURS.names()
['red']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .exceptions import ParameterError

__all__ = ["Registry", "Entry"]


@dataclass(frozen=True)
class Entry:
    """A registered component: its name, its factory and free-form metadata."""

    name: str
    factory: Callable[..., Any]
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class Registry:
    """Name → factory mapping for one kind of component (datasets, front-ends, ...).

    Parameters
    ----------
    kind : str
        What the registry holds, used in error messages ("front-end", "classifier").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, *, description: str = "", **meta: Any) -> Callable:
        """Decorator registering ``factory`` under ``name``; extra keywords become metadata."""

        def decorator(factory: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc = description or (factory.__doc__ or "").strip().split("\n")[0]
            self._entries[name] = Entry(name, factory, doc, dict(meta))
            return factory

        return decorator

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def get(self, name: str) -> Entry:
        """Return the entry for ``name``; an unknown name lists the valid ones."""
        try:
            return self._entries[name]
        except KeyError:
            raise ParameterError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}"
            ) from None

    def create(self, name: str, /, **kwargs: Any) -> Any:
        """Build the component registered as ``name`` with keyword arguments."""
        return self.get(name).factory(**kwargs)
