"""Typed reads of manifest fields that fail with the document, file and field path."""
from __future__ import annotations

from typing import Any

from engine.documents import Document


def as_map(document: Document, value: Any, where: str, required: bool = False) -> dict:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise document.error("must be a map" if value is not None else "is required", where)
    return value


def as_list(document: Document, value: Any, where: str, required: bool = False) -> list:
    if value is None and not required:
        return []
    if not isinstance(value, list) or (required and not value):
        raise document.error("must be a non-empty list" if required else "must be a list", where)
    return value


def as_string(document: Document, value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise document.error("must be a non-empty string", where)
    return value


def map_or_empty(value: Any) -> dict:
    """Lenient reading for checks that report a wrong type elsewhere (schemas) and must not stop on it."""
    return value if isinstance(value, dict) else {}


def list_or_empty(value: Any) -> list:
    return value if isinstance(value, list) else []
