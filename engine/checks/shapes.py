"""Types before use: every document a command reads has the JSON types its kind's schema gives, or the
command stops with one line naming the file, the document and the field (issue 11).

Only types are checked here (a map where the schema has an object, a list where it has an array, ...):
required fields, enums, ranges and unknown fields stay `validate`'s findings (GL0001), so commands that
tolerate them today still do. Kinds graylane reads without a full schema (Service, the workloads, Ingress)
get the types of the fields graylane reads, below.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional

from engine.checks.schemas import schema_for, shared_schema
from engine.documents import Document
from engine.errors import InvalidInputError

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_LABEL_SELECTOR = {"type": "object", "properties": {
    "matchLabels": _STRING_MAP,
    "matchExpressions": {"type": "array", "items": {"type": "object", "properties": {
        "key": {"type": "string"}, "operator": {"type": "string"},
        "values": {"type": "array", "items": {"type": "string"}}}}}}}
_POD_TEMPLATE = {"type": "object", "properties": {
    "metadata": {"type": "object", "properties": {"labels": _STRING_MAP, "annotations": _STRING_MAP}},
    "spec": {"type": "object"}}}
_WORKLOAD = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
    "replicas": {"type": "integer"}, "selector": _LABEL_SELECTOR, "template": _POD_TEMPLATE}}}}
_BACKEND = {"type": "object", "properties": {"service": {"type": "object", "properties": {
    "name": {"type": "string"}, "port": {"type": "object", "properties": {
        "number": {"type": "integer"}, "name": {"type": "string"}}}}}}}
# Kubernetes kinds graylane reads: the types of the fields it reads (the API server's own schema has them).
KUBERNETES_SHAPES: dict[str, dict] = {
    "Service": {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "selector": _STRING_MAP, "type": {"type": "string"},
        "ports": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "port": {"type": "integer"}, "protocol": {"type": "string"},
            "targetPort": {"type": ["integer", "string"]}, "appProtocol": {"type": "string"}}}}}}}},
    "Deployment": _WORKLOAD, "StatefulSet": _WORKLOAD, "DaemonSet": _WORKLOAD, "ReplicaSet": _WORKLOAD,
    "CloneSet": _WORKLOAD,
    "Rollout": _WORKLOAD,  # Argo's (argoproj.io): Kruise's has its own schema, which _shape_for finds first
    "Pod": {"type": "object", "properties": {"spec": {"type": "object"}}},
    "Ingress": {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "ingressClassName": {"type": "string"}, "defaultBackend": _BACKEND,
        "tls": {"type": "array", "items": {"type": "object"}},
        "rules": {"type": "array", "items": {"type": "object", "properties": {
            "host": {"type": "string"}, "http": {"type": "object", "properties": {
                "paths": {"type": "array", "items": {"type": "object", "properties": {
                    "path": {"type": "string"}, "pathType": {"type": "string"}, "backend": _BACKEND}}}}}}}}}}}},
    "ConfigMap": {"type": "object", "properties": {"data": _STRING_MAP}},
}

_JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def check_shapes(documents: Iterable[Document]) -> None:
    """Raise InvalidInputError for the first value whose JSON type its kind's schema does not allow."""
    for document in documents:
        shape = _shape_for(document)
        if shape is None:
            continue
        root, schema = shape
        problem = _check(document.body, schema, root, "")
        if problem is not None:
            path, message = problem
            raise InvalidInputError(message, source=document.source, document=document.index, field=path or None)


def _shape_for(document: Document) -> Optional[tuple[dict, dict]]:
    name = schema_for(document.api_version, document.kind)
    if name is not None:
        schema = shared_schema(name)  # read only here
        return schema, schema
    shape = KUBERNETES_SHAPES.get(document.kind)
    return (shape, shape) if shape is not None else None


def _resolve(schema: dict, root: dict) -> dict:
    seen = 0
    while "$ref" in schema and seen < 50:
        reference = schema["$ref"]
        if not reference.startswith("#/"):
            return {}
        node: Any = root
        for part in reference[2:].split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
        seen += 1
    return schema


def _type_ok(value: Any, types: Any) -> bool:
    for name in types if isinstance(types, list) else [types]:
        if name == "integer":
            ok = (isinstance(value, int) and not isinstance(value, bool)) or \
                (isinstance(value, float) and value.is_integer())
        elif name == "number":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, _JSON_TYPES.get(name, object))
        if ok:
            return True
    return False


def _describe(types: Any) -> str:
    names = types if isinstance(types, list) else [types]
    words = {"object": "a map", "array": "a list", "string": "a string", "integer": "an integer",
             "number": "a number", "boolean": "true or false", "null": "null"}
    return " or ".join(words.get(name, name) for name in names)


def _got(value: Any) -> str:
    return {dict: "a map", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _check(value: Any, schema: Any, root: dict, path: str) -> Optional[tuple[str, str]]:
    """The first (path, message) where ``value`` has a type ``schema`` does not allow, else None."""
    if not isinstance(schema, dict):
        return None
    schema = _resolve(schema, root)
    types = schema.get("type")
    if types is not None and not _type_ok(value, types):
        return path, f"must be {_describe(types)}, got {_got(value)}"
    for combinator in ("anyOf", "oneOf"):
        branches = schema.get(combinator)
        if isinstance(branches, list) and branches:
            problems = [_check(value, branch, root, path) for branch in branches]
            if all(problem is not None for problem in problems):
                return problems[0]
    for branch in schema.get("allOf") or []:
        problem = _check(value, branch, root, path)
        if problem is not None:
            return problem
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                problem = _check(item, sub, root, f"{path}.{key}" if path else str(key))
                if problem is not None:
                    return problem
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                problem = _check(item, items, root, f"{path}[{index}]")
                if problem is not None:
                    return problem
    return None
