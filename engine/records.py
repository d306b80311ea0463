"""Small value classes without :mod:`dataclasses` (start-up, issue 12).

``@dataclass`` imports ``inspect`` (with ``ast``, ``dis``, ``tokenize``: about 11 ms) and ``exec()``s the
source of each method it writes (0.6 ms a class, 1.2 ms a frozen one): about 30 ms of every ``render`` for
the classes it loads. A :class:`Record` subclass names its fields in ``__slots__`` (in order) and writes its own
``__init__``; equality and ``repr`` come from the fields, as a dataclass's do. A :class:`FrozenRecord` is also
immutable and hashable, as ``@dataclass(frozen=True)`` is.
"""
from __future__ import annotations

from typing import Any


class Record:
    """Fields in ``__slots__``; equal to a record of the same class with equal fields; unhashable."""

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]  # mutable and compared by value, as a dataclass

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__qualname__}({fields})"

    def as_dict(self) -> dict[str, Any]:
        """The fields by name, in order."""
        return dict(zip(self.__slots__, self._values()))

    def replace(self, **changes: Any) -> Any:
        """A copy with ``changes`` (what ``dataclasses.replace`` does)."""
        return type(self)(**{**self.as_dict(), **changes})


class FrozenRecord(Record):
    """A :class:`Record` whose fields cannot change after ``__init__`` (which sets them with ``_freeze``)."""

    __slots__ = ()

    def _freeze(self, *values: Any) -> None:
        for name, value in zip(self.__slots__, values, strict=True):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a {type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of a {type(self).__name__}")

    def __hash__(self) -> int:
        return hash(self._values())

    def __reduce__(self) -> tuple:  # copy and pickle through __init__, which can set the fields
        return type(self), self._values()
