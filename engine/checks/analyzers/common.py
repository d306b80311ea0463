"""Semantic analyzers: mistakes a JSON Schema cannot express, each with a stable code (like istioctl analyze).

Pure: documents in, :class:`Finding` list out; no file I/O, no cluster access. The checks themselves live in
``analyzers_istio`` (VirtualService/DestinationRule) and ``analyzers_routing`` (TrafficRouting/Rollout);
this module holds the finding type, the code table and the small helpers they share.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Iterable, Optional, Union

import re2

from .documents import Document

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Code:
    code: str
    name: str
    severity: str
    summary: str


#: Every finding code graylane emits. Codes are stable: never renumbered or reused.
CODES: dict[str, Code] = {c.code: c for c in (
    Code("GL0001", "SchemaViolation", ERROR, "the document does not match the JSON Schema of its kind "
         "(unknown field, wrong type, missing required field, ...)"),
    Code("GL0002", "DuplicateObject", ERROR, "the same object (group, kind, namespace, name) appears more than once "
         "in the inputs"),
    Code("GL0101", "WeightSum", ERROR, "the route weights of an http/tcp/tls rule do not sum to 100"),
    Code("GL0102", "WeightRange", ERROR, "a weight or traffic percentage is not an integer from 0 to 100"),
    Code("GL0103", "MatchType", ERROR, "a match type is outside the enum (Kruise: Exact, PathPrefix, "
         "RegularExpression; Istio StringMatch: exact, prefix, regex)"),
    Code("GL0104", "TooManyMatches", ERROR, "more than 16 matches in a strategy or step, or more than 16 headers/"
         "query parameters in one match"),
    Code("GL0105", "HeaderNameNotLowercase", WARNING, "a matched header name is not lowercase (HTTP header names are "
         "case-insensitive; Envoy compares them in lowercase)"),
    Code("GL0106", "InvalidRegex", ERROR, "a regular expression is not valid RE2 syntax (Envoy rejects backreferences, "
         "lookarounds, possessive quantifiers, ...)"),
    Code("GL0107", "UnreachableRule", WARNING, "an http rule (or one of its matches) can never match: an earlier rule "
         "without match, or with a broader match, catches every such request first"),
    Code("GL0201", "SubsetNotFound", ERROR, "a VirtualService destination subset is not defined by the "
         "DestinationRule of that host"),
    Code("GL0202", "DestinationRuleNotFound", WARNING, "a VirtualService destination names a subset, but no "
         "DestinationRule for that host is among the inputs"),
    Code("GL0203", "DuplicateSubset", ERROR, "two subsets of a DestinationRule have the same name"),
    Code("GL0204", "SubsetWithoutLabels", WARNING, "a DestinationRule subset has no labels, so it selects every pod "
         "of the service (stable and canary alike)"),
    Code("GL0301", "NetworkRefNotFound", ERROR, "a TrafficRouting/Rollout references a network object "
         "(customNetworkRefs, ingress) that is not among the inputs"),
    Code("GL0302", "ServiceNotRouted", ERROR, "a TrafficRouting/Rollout service is not a destination host of the "
         "VirtualService it references"),
    Code("GL0303", "DestinationRuleHostMismatch", WARNING, "a DestinationRule referenced by a TrafficRouting/Rollout "
         "is for another host than its service"),
    Code("GL0304", "CanarySubsetUndefined", WARNING, "a TrafficRouting (or a Rollout with "
         "disableGenerateCanaryService) routes to the service's subset \"canary\", but no DestinationRule of the "
         "service is referenced or defines that subset (requests to it would fail with 503)"),
)}


@dataclass(frozen=True)
class Finding:
    """One problem: what (code, severity, message), and where (file, 1-based document index, JSON path)."""

    code: str
    severity: str
    message: str
    source: str
    document: int
    path: str
    object: str = ""  # "VirtualService default/vs-mocka", for humans and -o json

    def line(self) -> str:
        """``SEVERITY CODE source#doc path: message`` (the path is left out when the finding is about the object)."""
        where = f"{self.source}#{self.document}" + (f" {self.path}" if self.path else "")
        return f"{self.severity} {self.code} {where}: {self.message}"

    def to_dict(self) -> dict:
        data = asdict(self)
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


def as_map(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_kind(document: Document, group: str, kind: str) -> bool:
    return document.group == group and document.kind == kind


@lru_cache(maxsize=1024)
def _compile_re2(pattern: str) -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would otherwise log every rejected pattern on stderr
    return re2.compile(pattern, options)


def re2_error(pattern: str) -> Optional[str]:
    """Why ``pattern`` is not valid RE2 (what Envoy uses), or None when it is."""
    try:
        _compile_re2(pattern)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


def re2_fullmatch(pattern: str, text: str) -> bool:
    """Whether RE2 ``pattern`` matches all of ``text`` (Istio regex semantics); False for invalid patterns."""
    if re2_error(pattern) is not None:
        return False
    return _compile_re2(pattern).fullmatch(text) is not None


ISTIO = "networking.istio.io"
KRUISE = "rollouts.kruise.io"


def object_key(document: Document) -> tuple[str, str, Optional[str], str]:
    return document.group, document.kind, document.namespace, document.name


def find_objects(documents: list[Document], api_version: str, kind: str, name: str,
                 namespace: Optional[str]) -> list[Document]:
    """Inputs a reference points at, as render's find_object sees them (same group; namespace when both say)."""
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    return [d for d in documents if d.group == group and d.kind == kind and d.name == name
            and (namespace is None or d.namespace is None or d.namespace == namespace)]


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


def analyze(documents: list[Document]) -> list[Finding]:
    """Every analyzer over ``documents`` (single-object and cross-object checks)."""
    from . import analyzers_istio, analyzers_routing

    findings = duplicate_objects(documents)
    for document in documents:
        findings.extend(analyzers_istio.analyze_document(document))
        findings.extend(analyzers_routing.analyze_document(document))
    findings.extend(analyzers_istio.analyze_subsets(documents))
    findings.extend(analyzers_routing.analyze_references(documents))
    return findings
