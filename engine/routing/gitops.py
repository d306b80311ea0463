"""Argo CD ``spec.ignoreDifferences`` for the objects a release changes, and nothing else.

Kruise, Argo Rollouts and graylane change the VirtualServices and DestinationRules that are also in git, so
Argo CD would show them OutOfSync and (with self-heal) put the weights back. For every referenced object this
module renders the original and every step, finds each path that differs, and writes it as an Argo CD
expression: a ``jsonPointers`` entry where a fixed path is exact (annotations, labels, fields of maps), else a
``jqPathExpressions`` entry that picks list items by what identifies them (a route's ``name``, a destination,
a rule's match), because a header or mirror route inserted on top moves every index (``/spec/http/0`` stops
meaning the primary route). Argo CD deletes these paths from both sides before comparing.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from engine.documents import Document
from engine.routing.render import Engine, OutputCheck
from engine.routing.steps import render_all_steps

SYNC_OPTIONS = ["RespectIgnoreDifferences=true", "ApplyOutOfSyncOnly=true"]
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class Selector:
    """One step of a path: a map key, or the list item(s) a jq ``select`` picks."""

    key: Optional[str] = None
    select: Optional[str] = None   # jq condition, e.g. .name == "primary"


@dataclass
class ObjectIgnores:
    group: str
    kind: str
    name: str
    namespace: Optional[str]
    json_pointers: list[str] = field(default_factory=list)
    jq_path_expressions: list[str] = field(default_factory=list)

    def to_entry(self) -> dict:
        entry: dict = {"group": self.group, "kind": self.kind, "name": self.name}
        if self.namespace:
            entry["namespace"] = self.namespace
        if self.json_pointers:
            entry["jsonPointers"] = self.json_pointers
        if self.jq_path_expressions:
            entry["jqPathExpressions"] = self.jq_path_expressions
        return entry


def _literal(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _identity(item: Any) -> tuple[str, str]:
    """What identifies a list item across steps, and the jq condition that selects it."""
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        return "name:" + item["name"], f".name == {_literal(item['name'])}"
    if isinstance(item, dict) and "destination" in item:
        return "destination:" + _literal(item["destination"]), f".destination == {_literal(item['destination'])}"
    if isinstance(item, dict) and "route" in item:
        rest = {k: v for k, v in item.items() if k != "route"}
        return "rule:" + _literal(rest), f"del(.route) == {_literal(rest)}"
    return "value:" + _literal(item), f". == {_literal(item)}"


def _identities(items: list) -> Optional[dict[str, tuple[Any, str]]]:
    found: dict[str, tuple[Any, str]] = {}
    for item in items:
        identity, condition = _identity(item)
        if identity in found:
            return None  # two items look alike: only the whole list can be named exactly
        found[identity] = (item, condition)
    return found


def changed_paths(before: Any, after: Any, path: tuple = ()) -> set[tuple]:
    """Every path (tuple of Selectors as hashable tuples) where ``after`` differs from ``before``."""
    if before == after:
        return set()
    if isinstance(before, dict) and isinstance(after, dict):
        paths: set[tuple] = set()
        for key in list(before) + [k for k in after if k not in before]:
            if key not in before or key not in after:
                paths.add(path + (("key", key),))
            else:
                paths |= changed_paths(before[key], after[key], path + (("key", key),))
        return paths
    if isinstance(before, list) and isinstance(after, list):
        old, new = _identities(before), _identities(after)
        if old is None or new is None:
            return {path}
        paths = set()
        for identity in list(old) + [i for i in new if i not in old]:
            if identity not in old or identity not in new:
                paths.add(path + (("select", (old.get(identity) or new[identity])[1]),))
            else:
                paths |= changed_paths(old[identity][0], new[identity][0], path + (("select", old[identity][1]),))
        return paths
    return {path}


def _pointer(path: tuple) -> str:
    return "".join("/" + str(value).replace("~", "~0").replace("/", "~1") for _kind, value in path)


def _jq(path: tuple) -> str:
    parts: list[str] = []
    text = ""
    for kind, value in path:
        if kind == "key":
            text += f".{value}" if _IDENTIFIER.match(str(value)) else f"[{_literal(str(value))}]"
        else:
            parts.append((text or ".") + "[]")
            parts.append(f"select({value})")
            text = ""
    if text:
        parts.append(text)
    return " | ".join(parts)


def _generalize(paths: set[tuple]) -> list[tuple]:
    """Drop paths inside another path that is itself ignored."""
    ordered = sorted(paths, key=lambda p: (len(p), _jq(p)))
    kept: list[tuple] = []
    for path in ordered:
        if not any(path[:len(other)] == other for other in kept):
            kept.append(path)
    return kept


def ignore_differences(documents: list[Document], engine: Engine,
                       check: Optional[OutputCheck] = None) -> list[ObjectIgnores]:
    """The ignoreDifferences entries of every object the routings in ``documents`` change, at any step."""
    from engine.routing.script_input import original_of, restore_body
    originals: dict[int, tuple[Document, dict]] = {}
    paths: dict[int, set[tuple]] = {}
    for step in render_all_steps(documents, engine, check):
        for item in step:
            source = item.source
            if id(source) not in originals:
                state, _stored = original_of(source.body)
                originals[id(source)] = (source, restore_body(source.body, state))
                paths[id(source)] = set()
            before = originals[id(source)][1]
            paths[id(source)] |= changed_paths(_comparable(before), _comparable(item.body))
    result = []
    for identity, (source, _body) in sorted(originals.items(), key=lambda kv: (kv[1][0].kind, kv[1][0].namespace
                                                                                or "", kv[1][0].name)):
        entry = ObjectIgnores(source.group, source.kind, source.name, source.namespace)
        for path in _generalize(paths[identity]):
            if all(kind == "key" for kind, _value in path):
                entry.json_pointers.append(_pointer(path))
            else:
                entry.jq_path_expressions.append(_jq(path))
        if entry.json_pointers or entry.jq_path_expressions:
            result.append(entry)
    return result


def _comparable(body: dict) -> dict:
    """The parts of an object a release may change and Argo CD compares: metadata labels/annotations, spec."""
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    result: dict = {"metadata": {key: metadata[key] for key in ("labels", "annotations") if key in metadata}}
    for key, value in body.items():
        if key not in ("apiVersion", "kind", "metadata", "status"):
            result[key] = value
    return result


def application_patch(entries: list[ObjectIgnores]) -> dict:
    """A patch for an Argo CD Application: ignoreDifferences plus the sync options that make them hold."""
    return {"spec": {"ignoreDifferences": [entry.to_entry() for entry in entries],
                     "syncPolicy": {"syncOptions": list(SYNC_OPTIONS)}}}
