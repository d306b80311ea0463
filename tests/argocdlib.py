"""Argo CD's ignoreDifferences, applied as Argo CD applies them, for tests of ``graylane argocd``.

``normalize`` is the comparison (Argo CD deletes every jsonPointer and every jqPathExpression, ``del(EXPR)``,
from both sides before diffing); ``with_live_ignored`` is the sync with ``RespectIgnoreDifferences=true``
(the object applied is git's, with the live values at the ignored paths).
"""
from __future__ import annotations

import copy
from typing import Any

import jq


def _pointer_path(pointer: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]


def normalize(body: dict, entry: dict) -> dict:
    """What Argo CD compares once the entry's paths are ignored."""
    body = copy.deepcopy(body)
    body.pop("status", None)
    for pointer in entry.get("jsonPointers", []):
        parts = _pointer_path(pointer)
        node = body
        for part in parts[:-1]:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(parts[-1], None)
    for expression in entry.get("jqPathExpressions", []):
        body = jq.compile(f"del({expression})").input_value(body).first()
    return body


def ignored_paths(body: dict, entry: dict) -> list[list]:
    """The concrete paths of ``body`` the entry ignores (list items by index), in document order."""
    found = []
    for pointer in entry.get("jsonPointers", []):
        parts = _pointer_path(pointer)
        node: Any = body
        for part in parts:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            found.append(parts)
    for expression in entry.get("jqPathExpressions", []):
        found += jq.compile(f"[path({expression})]").input_value(body).first()
    return sorted(found, key=lambda path: [(isinstance(p, str), p) for p in path])


def with_live_ignored(git: dict, live: dict, entry: dict) -> dict:
    """The object a RespectIgnoreDifferences sync applies: git's, without its values at the ignored paths,
    with the live values there instead (a list item goes back at its live index)."""
    wanted = normalize(git, entry)
    for path in ignored_paths(live, entry):
        value: Any = live
        for part in path:
            value = value[part]
        node: Any = wanted
        for part, following in zip(path[:-1], path[1:]):
            if isinstance(node, dict) and part not in node:
                node[part] = [] if isinstance(following, int) else {}
            node = node[part]
        if isinstance(path[-1], int):
            node.insert(min(path[-1], len(node)), copy.deepcopy(value))
        else:
            node[path[-1]] = copy.deepcopy(value)
    return wanted


def entry_for(entries: list[dict], body: dict) -> dict:
    """The one ignoreDifferences entry naming ``body``."""
    key = (body["kind"], body["metadata"].get("namespace"), body["metadata"]["name"])
    matching = [e for e in entries if (e["kind"], e.get("namespace"), e["name"]) == key]
    assert len(matching) == 1, f"no single ignoreDifferences entry for {key}"
    return matching[0]
