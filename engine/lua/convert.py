"""Python data -> the flat token list that sandbox.lua turns into Lua tables.

One flat list crosses the Python/Lua boundary in a single call, instead of one call per table; the Lua
side rebuilds the tables and records each map's key order and which empty tables were lists.
"""
from __future__ import annotations

from typing import Any

from engine.errors import InvalidInputError


def to_tokens(value: Any) -> list:
    tokens: list = []
    _flatten(value, tokens, tokens.append)
    return tokens


def _flatten(value: Any, tokens: list, append) -> None:
    kind = type(value)
    if kind is dict:
        append(-len(value) - 1)
        for key, item in value.items():
            append(key if type(key) is str else str(key))
            _flatten(item, tokens, append)
    elif kind is list or kind is tuple:
        append(len(value) + 1)
        for item in value:
            _flatten(item, tokens, append)
    elif kind is str or kind is bool:
        append(value)
    elif kind is int or kind is float:
        append(0.5)
        append(value)
    elif value is None:
        append(0)
    else:
        raise InvalidInputError(f"a value of type {kind.__name__} cannot be passed to a Lua script")
