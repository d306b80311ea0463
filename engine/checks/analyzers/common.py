"""Semantic analyzers: mistakes a JSON Schema cannot express, each with a stable code (like istioctl analyze).

Pure: documents in, :class:`Finding` list out; no file I/O, no cluster access. The checks themselves live in
``istio`` (VirtualService/DestinationRule) and ``routing`` (TrafficRouting/Rollout); this module holds the
finding type, the code table and the small helpers they share, and imports neither of them.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable, Optional, Union

from engine.checks.codes import CODES, ERROR, WARNING, Code  # noqa: F401  (re-exported)
from engine.documents import Document
from engine.records import FrozenRecord
from engine.fields import list_or_empty as as_list  # noqa: F401  (shared by the analyzers)
from engine.fields import map_or_empty as as_map  # noqa: F401
from engine.regexes import re2_error, re2_fullmatch  # noqa: F401  (re-exported for the analyzers)

class Finding(FrozenRecord):
    """One problem: what (code, severity, message), and where (file, 1-based document index, JSON path;
    ``object``: "VirtualService default/vs-mocka", for humans and -o json)."""

    __slots__ = ("code", "severity", "message", "source", "document", "path", "object")

    def __init__(self, code: str, severity: str, message: str, source: str, document: int, path: str,
                 object: str = ""):
        self._freeze(code, severity, message, source, document, path, object)

    def line(self) -> str:
        """``SEVERITY CODE source#doc path: message`` (the path is left out when the finding is about the object)."""
        where = f"{self.source}#{self.document}" + (f" {self.path}" if self.path else "")
        return f"{self.severity} {self.code} {where}: {self.message}"

    def to_dict(self) -> dict:
        data = self.as_dict()
        data["check"] = CODES[self.code].name if self.code in CODES else ""
        return data


def describe(document: Document) -> str:
    namespace = document.namespace
    return f"{document.kind} {namespace}/{document.name}" if namespace else f"{document.kind} {document.name}"


def finding(code: str, document: Document, path: str, message: str) -> Finding:
    return Finding(code, CODES[code].severity, message, document.source, document.index, path, describe(document))


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def join(path: str, key: Union[str, int]) -> str:
    """``spec`` + ``http`` -> ``spec.http``; + 1 -> ``spec.http[1]``; odd keys -> ``metadata.annotations["a/b"]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    text = str(key)
    if not _PLAIN_KEY.match(text):
        return f'{path}["{text}"]' if path else f'["{text}"]'
    return f"{path}.{text}" if path else text


def path_of(parts: Iterable[Union[str, int]]) -> str:
    path = ""
    for part in parts:
        path = join(path, part)
    return path


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_kind(document: Document, group: str, kind: str) -> bool:
    return document.group == group and document.kind == kind




ISTIO = "networking.istio.io"
KRUISE = "rollouts.kruise.io"


def object_key(document: Document) -> tuple[str, str, Optional[str], str]:
    return document.group, document.kind, document.namespace, document.name


def duplicate_objects(documents: list[Document]) -> list[Finding]:
    """GL0002: an object given twice (render would refuse to choose)."""
    seen: dict[tuple, Document] = {}
    findings = []
    for document in documents:
        if not document.name:
            continue
        key = object_key(document)
        if key in seen:
            first = seen[key]
            findings.append(finding("GL0002", document, "metadata.name",
                                    f"{document.kind}/{document.name} also appears in {first.source} "
                                    f"document {first.index}"))
        else:
            seen[key] = document
    return findings


MAX_OBJECT_BYTES = 1536 * 1024  # etcd's default --max-request-bytes: the API server cannot store a larger object


def object_size(document: Document) -> list[Finding]:
    """GL0003: the object, as JSON, is larger than the API server can store (graylane's own specs, which are not
    applied, aside)."""
    if document.group == "graylane.io":
        return []
    size = len(json.dumps(document.body, ensure_ascii=False, separators=(",", ":"), default=str).encode())
    if size <= MAX_OBJECT_BYTES:
        return []
    return [finding("GL0003", document, "", f"the object is {size} bytes as JSON; the API server stores at most "
                                            f"{MAX_OBJECT_BYTES} (1.5 MiB) per object, so it would refuse it")]
