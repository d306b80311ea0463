"""Validation: JSON Schemas plus the semantic analyzers, and the check render applies to script output.

Pure: documents in, findings out. ``check_rendered`` is the :data:`engine.routing.render.OutputCheck` hook that makes
``render`` refuse an object a script made invalid (schema or route weights).
"""
from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional

from engine.checks.analyzers import CODES, ERROR, Finding, admission, analyze, describe, finding, path_of
from engine.checks.analyzers.istio import is_virtual_service, route_weights, string_matches
from engine.checks.analyzers.rendered import request_failures
from engine.documents import Document
from engine.errors import ValidationFailed
from engine.checks.schemas import passes_compiled, schema_for, validator_for

if TYPE_CHECKING:
    from jsonschema import ValidationError

_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number",
               type(None): "null"}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _required_only(schemas: Any) -> Optional[list[str]]:
    """The field names of ``anyOf``/``oneOf`` branches that are each just ``{"required": [one]}``."""
    names = []
    for branch in schemas if isinstance(schemas, list) else []:
        if not isinstance(branch, dict) or set(branch) != {"required"} or len(branch["required"]) != 1:
            return None
        names.append(branch["required"][0])
    return names or None


def explain(error: ValidationError) -> Iterator[tuple[str, str]]:
    """(JSON path, readable message) for one jsonschema error, kubectl-style ("unknown field", "is required")."""
    path = list(error.absolute_path)
    keyword, value, instance = error.validator, error.validator_value, error.instance
    if keyword == "additionalProperties" and isinstance(instance, dict):
        known = set((error.schema or {}).get("properties", {}))
        patterns = list((error.schema or {}).get("patternProperties", {}))
        for key in instance:
            if key not in known and not any(re.search(p, key) for p in patterns):
                yield path_of([*path, key]), f'unknown field "{key}"'
        return
    if keyword == "required" and isinstance(instance, dict):
        for key in value:
            if key not in instance:
                yield path_of([*path, key]), "is required"
        return
    where = path_of(path)
    if keyword in ("anyOf", "oneOf"):
        names = _required_only(value)
        if names is not None and isinstance(instance, dict):
            present = [n for n in names if n in instance]
            if keyword == "oneOf" and len(present) > 1:
                yield where, f"set only one of {', '.join(present)}"
            else:
                yield where, f"must set {'exactly ' if keyword == 'oneOf' else ''}one of {', '.join(names)}"
            return
        if error.context:
            if isinstance(instance, (dict, list)):
                from jsonschema.exceptions import best_match
                yield from explain(best_match(error.context))
                return
            reasons = list(dict.fromkeys(message for sub in error.context for _p, message in explain(sub)))
            yield where, f"{_short(instance)} is not valid: " + "; or ".join(reasons)
            return
        yield where, f"{_short(instance)} is not valid" + (" (it matches more than one allowed form)"
                                                           if keyword == "oneOf" else "")
        return
    messages = {
        "type": lambda: f"must be {' or '.join(value) if isinstance(value, list) else value}, "
                        f"got {_json_type(instance)}",
        "enum": lambda: f"must be one of {', '.join(_short(v) for v in value)}, got {_short(instance)}",
        "const": lambda: f"must be {_short(value)}, got {_short(instance)}",
        "pattern": lambda: f"{_short(instance)} does not match {value}",
        "minimum": lambda: f"must be at least {value}, got {_short(instance)}",
        "maximum": lambda: f"must be at most {value}, got {_short(instance)}",
        "exclusiveMinimum": lambda: f"must be more than {value}, got {_short(instance)}",
        "exclusiveMaximum": lambda: f"must be less than {value}, got {_short(instance)}",
        "minLength": lambda: "must not be empty" if value == 1 else f"must be at least {value} characters long",
        "maxLength": lambda: f"must be at most {value} characters long, got {len(instance)}",
        "minItems": lambda: "must not be empty" if value == 1 else f"must have at least {value} items",
        "maxItems": lambda: f"must have at most {value} items, got {len(instance)}",
        "minProperties": lambda: "must not be empty" if value == 1 else f"must have at least {value} fields",
        "maxProperties": lambda: f"can have at most {value} field(s), got {', '.join(map(str, instance))}",
        "uniqueItems": lambda: "must not contain duplicate items",
    }
    message = messages.get(keyword)
    text = message() if message else error.message
    yield where, text if len(text) <= 300 else text[:297] + "..."


DRAFT_07 = "http://json-schema.org/draft-07/schema#"


def draft07(schema: Any) -> Any:
    """The same schema for draft-07 tools (yaml-language-server, VS Code): ``$defs`` become ``definitions``, and a
    ``$ref`` with sibling keywords (which draft-07 would ignore) moves into an ``allOf``.

    Lossless for graylane's schemas, which use no keyword newer than draft-07.
    """
    if isinstance(schema, list):
        return [draft07(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {}
    for key, value in schema.items():
        if key == "$schema":
            result[key] = DRAFT_07
        elif key == "$defs":
            result["definitions"] = {name: draft07(item) for name, item in value.items()}
        elif key in ("properties", "patternProperties"):
            result[key] = {name: draft07(item) for name, item in value.items()}
        elif key == "$ref" and isinstance(value, str):
            result[key] = value.replace("#/$defs/", "#/definitions/")
        else:
            result[key] = draft07(value)
    annotations = {"$ref", "description", "title", "default", "examples", "$comment"}
    if "$ref" in result and set(result) - annotations:
        reference = {"$ref": result.pop("$ref")}
        result["allOf"] = [reference, *result.get("allOf", [])]
    return result


def schema_name(document: Document) -> Optional[str]:
    return schema_for(document.api_version, document.kind)


def schema_findings(document: Document) -> list[Finding]:
    """GL0001 for every way ``document`` breaks its kind's JSON Schema (none when graylane has no schema)."""
    name = schema_name(document)
    if name is None or passes_compiled(name, document.body):
        return []
    findings, seen = [], set()
    for error in validator_for(name).iter_errors(document.body):
        for path, message in explain(error):
            if (path, message) not in seen:
                seen.add((path, message))
                findings.append(finding("GL0001", document, path, f"{message} (schema {name})"))
    return findings


def _path_key(path: str) -> list:
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.\[\]]+", path) if p]


def merge(documents: list[Document], schema: list[Finding], analyzers: list[Finding]) -> list[Finding]:
    """Schema and analyzer findings, without schema findings an analyzer already explains at the same path,
    in input order (document, then path, then code)."""
    explained = {(f.source, f.document, f.path) for f in analyzers}
    kept = [f for f in schema if (f.source, f.document, f.path) not in explained] + analyzers
    order = {(d.source, d.index): position for position, d in enumerate(documents)}
    unique = list(dict.fromkeys(kept))
    return sorted(unique, key=lambda f: (order.get((f.source, f.document), len(order)), _path_key(f.path), f.code))


def validate_documents(documents: list[Document], ignore: Iterable[str] = ()) -> list[Finding]:
    """Every finding for ``documents``: schemas, then the analyzers; codes in ``ignore`` left out."""
    schema = [f for d in documents for f in schema_findings(d)]
    findings = merge(documents, schema, analyze(documents))
    skipped = {code.upper() for code in ignore}
    return [f for f in findings if f.code not in skipped]


def has_errors(findings: Iterable[Finding], strict: bool = False) -> bool:
    return any(f.severity == ERROR or strict for f in findings)


def _output_findings(document: Document) -> list[Finding]:
    """The errors render refuses: the schema of the kind, route weights and string matches (GL01xx) of
    VirtualServices, and Istio's admission rules (header operations, regexes, labels)."""
    spec = document.body.get("spec")
    found = admission.analyze_document(document)
    if is_virtual_service(document) and isinstance(spec, dict):
        found = [*route_weights(document, spec), *string_matches(document, spec), *found]
    return [f for f in merge([document], schema_findings(document), found) if f.severity == ERROR]


def _refusal(document: Document, findings: list[Finding], what: str, already: list[Finding],
             hint: str = "") -> ValidationFailed:
    first = findings[0]
    note = " (the input object already has this problem)" \
        if (first.code, first.path, first.message) in {(f.code, f.path, f.message) for f in already} else ""
    more = f" (and {len(findings) - 1} more problem{'s' if len(findings) > 2 else ''})" if len(findings) > 1 else ""
    where = f"{document.source}: document {document.index}: " + (f"{first.path}: " if first.path else "")
    return ValidationFailed(f"{where}the traffic-routing script's output for {describe(document)} {what}: "
                            f"{first.message} [{first.code} {CODES[first.code].name}]{note}{more}{hint}", findings)


def check_rendered(document: Document, body: dict, state: Optional[list[Document]] = None,
                   force: bool = False) -> list[Finding]:
    """Refuse a script's output that breaks the schema of its kind, the route rules (GL01xx) or Istio's admission
    rules (GL0108-GL0112, GL0205), so nothing graylane prints or applies is an object Istio would reject; or
    that would fail requests (GL04xx: a lane leak; with ``state``, the inputs as rendered, also a route render
    added to a subset no DestinationRule defines or that selects no pods).

    Raises :class:`ValidationFailed` naming the input file, document, object, field and code. With ``force``,
    requests-would-fail findings do not raise but come back, for the caller to show as warnings.
    """
    rendered = Document(body, document.source, document.index)
    findings = _output_findings(rendered)
    if findings:
        raise _refusal(document, findings, "is invalid", _output_findings(document))
    failures = request_failures(document, rendered, state)
    if failures and not force:
        raise _refusal(document, failures, "would fail requests", request_failures(document, document, None),
                       "; --force renders it anyway")
    return failures
