"""Istio's admission rules for the fields graylane reads and writes (codes GL0108-GL0112, GL0205).

Ported from istio.io/istio pkg/config/validation (1.31): what the validating webhook rejects in header operations
(Envoy's ``%VAR%`` header formatting, pseudo-headers and Host), header match names, string-match regexes (size,
emptiness) and label keys and values. graylane checks them on its inputs (``validate``) and on every object a
script returns (``check_rendered``), so a release never stops half-way at ``kubectl apply``.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterator, Optional

from engine.checks.analyzers.common import ISTIO, Finding, as_list, as_map, finding, is_kind, join
from engine.checks.analyzers.routing import routing_targets, service_matches, strategies
from engine.documents import Document, DocumentIndex

MAX_REGEX_LENGTH = 1024  # Istio approximates Envoy's re2.max_program_size by the pattern's length
PSEUDO_HEADERS = (":method", ":scheme", ":authority", ":path", ":status")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~A-Za-z0-9]+$")  # RFC 7230 tchar, Istio's validHeaderNameRegex
_HEADER_VALUE = re.compile(r"^[^\x00-\x08\x0a-\x1f\x7f]*$")
_DNS1123_LABEL = "[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
_QUALIFIED_NAME = "(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY = re.compile(rf"^({_DNS1123_LABEL}(?:\.{_DNS1123_LABEL})*/)?({_QUALIFIED_NAME})$")
_LABEL_VALUE = re.compile(rf"^({_QUALIFIED_NAME})?$")
SUBSET_LABELS_ANNOTATION = "graylane.io/canary-subset-labels"


# ------------------------------------------------------------------------------------ single rules

def header_value_error(value: str) -> Optional[str]:
    """Why Envoy (and so Istio) rejects ``value`` as a header value to set or add, or None.

    Control characters are refused, and ``%`` starts a ``%VARIABLE%`` or ``%VAR(args)%`` expression (Envoy's
    header formatting): a literal percent sign must be written ``%%``. A port of Istio's validateHeaderValue.
    """
    if not _HEADER_VALUE.match(value):
        return "contains a control character (newline, tab excepted)"
    state, position = "literal", 0
    while position < len(value):
        char = value[position]
        has_next = position + 1 < len(value)
        if state == "literal":
            if char == "%":
                if not has_next:
                    return "un-escaped '%' at the end (write '%%' for a literal percent sign)"
                if value[position + 1] == "%":
                    position += 1
                else:
                    state = "variable"
        elif state == "variable":
            if char == "%":
                state = "literal"
            elif char == "(":
                state = "array"
        elif state == "array":
            if char == "[":
                state = "string_start"
            elif char != " ":
                state = "string"
        elif state == "delimiter":
            if char == ",":
                state = "string_start"
            elif char == "]":
                state = "args_end"
            elif char != " ":
                return "expected ',', ']' or a space in a %VAR([...])% expression"
        elif state == "string_start":
            if char == '"':
                state = "string"
            elif char != " ":
                return "expected '\"' in a %VAR([...])% expression"
        elif state == "string":
            if char == "\\":
                if not has_next:
                    return "un-terminated backslash in a %VAR(...)% argument"
                position += 1
            elif char == ")":
                state = "variable_end"
            elif char == '"':
                state = "delimiter"
        elif state == "args_end":
            if char == ")":
                state = "variable_end"
            elif char != " ":
                return "expected ')' in a %VAR(...)% expression"
        elif state == "variable_end":
            if char == "%":
                state = "literal"
            elif char != " ":
                return "expected '%' to close a %VAR(...)% expression"
        position += 1
    if state != "literal":
        return "un-terminated %VARIABLE% expression (write '%%' for a literal percent sign)"
    return None


def is_authority_header(name: str) -> bool:
    return name.lower() in (":authority", "host")


def header_operation_error(name: str, operation: str, response: bool = False) -> Optional[str]:
    """Why Istio rejects header ``name`` in a ``set``/``add``/``remove`` operation, or None.

    Request set/add may target the authority (as ``host`` or ``:authority``); removing Host, any response Host and
    every other ``:``-prefixed pseudo-header are refused.
    """
    if not name:
        return "header name cannot be empty"
    if operation in ("set", "add") and not response:
        if name.startswith(":") and not is_authority_header(name):
            return f'header {name!r} cannot be set: names starting with ":" are pseudo-headers'
        return None
    if name.lower() == "host":
        return f"header {name!r} cannot be {'removed' if operation == 'remove' else 'set'}: Envoy owns the Host header"
    if name.startswith(":"):
        return f'header {name!r} cannot be {"removed" if operation == "remove" else "set"}: names starting with ":" ' \
               "are pseudo-headers"
    return None


def header_match_name_error(name: str) -> Optional[str]:
    """Why Istio rejects ``name`` as a matched header name (an HTTP token or pseudo-header), or None."""
    if not name:
        return "header name cannot be empty"
    if name in PSEUDO_HEADERS or name.startswith("@request.auth.claims"):
        return None
    if not _TOKEN.match(name):
        return f"header name {name!r} is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)"
    return None


def regex_limit_error(pattern: str) -> Optional[str]:
    """Why Istio rejects ``pattern`` before compiling it (empty, or longer than 1024 characters), or None."""
    if pattern == "":
        return "a regex match must not be empty"
    if len(pattern) > MAX_REGEX_LENGTH:
        return f"the regex is {len(pattern)} characters long; Istio allows at most {MAX_REGEX_LENGTH}"
    return None


def label_errors(labels: dict) -> list[tuple[str, str]]:
    """(key, reason) for each label key or value Istio's labels.Instance.Validate rejects."""
    problems = []
    for key, value in labels.items():
        key_text = str(key)
        match = _LABEL_KEY.match(key_text)
        if not match:
            problems.append((key_text, f"label key {key_text!r} is invalid (an optional DNS prefix and '/', then "
                                       "letters, digits, '-', '_' or '.', starting and ending alphanumeric)"))
        elif match.group(1) and len(match.group(1)) - 1 > 253:
            problems.append((key_text, f"label key {key_text!r} has a DNS prefix longer than 253 characters"))
        elif len(match.group(2)) > 63:
            problems.append((key_text, f"label key {key_text!r} has a name longer than 63 characters"))
        if not isinstance(value, str) or not _LABEL_VALUE.match(value):
            problems.append((key_text, f"label value {value!r} of {key_text!r} is invalid (letters, digits, '-', "
                                       "'_' or '.', starting and ending alphanumeric, or empty)"))
    return problems


def pod_label_errors(labels: dict, what: str) -> list[tuple[str, str]]:
    """:func:`label_errors`, plus Kubernetes' 63-character limit on values, for labels pods carry or that select
    pods (``what`` says what the labels are for): no pod can carry a label either rule refuses."""
    problems = [(key, f"{reason}; {what}") for key, reason in label_errors(labels)]
    for key, value in labels.items():
        if isinstance(value, str) and _LABEL_VALUE.match(value) and len(value) > 63:
            problems.append((str(key), f"label value of {str(key)!r} is {len(value)} characters long, but Kubernetes "
                                       f"allows at most 63; {what}"))
    return problems


# ------------------------------------------------------------------------------------ VirtualService

def _headers(document: Document, headers: Any, path: str) -> Iterator[Finding]:
    """GL0108/GL0109 for an Istio ``headers`` block (request and response operations)."""
    for side in ("request", "response"):
        operations = as_map(as_map(headers).get(side))
        side_path = join(path, side)
        for operation in ("set", "add"):
            for name, value in as_map(operations.get(operation)).items():
                where = join(join(side_path, operation), str(name))
                reason = header_operation_error(str(name), operation, side == "response")
                if reason:
                    yield finding("GL0109", document, where, reason)
                if isinstance(value, str):
                    reason = header_value_error(value)
                    if reason:
                        yield finding("GL0108", document, where, f"header value {value!r} {reason}")
        for position, name in enumerate(as_list(operations.get("remove"))):
            reason = header_operation_error(str(name), "remove", side == "response")
            if reason:
                yield finding("GL0109", document, join(join(side_path, "remove"), position), reason)


def _authority_twice(document: Document, rule: dict, path: str) -> Iterator[Finding]:
    """GL0109: the authority is rewritten in more than one place of one http rule (Istio refuses)."""
    places = []
    if as_map(rule.get("rewrite")).get("authority"):
        places.append(f"{path}.rewrite.authority")
    request = as_map(as_map(rule.get("headers")).get("request"))
    for operation in ("set", "add"):
        for name in as_map(request.get(operation)):
            if is_authority_header(str(name)):
                places.append(join(join(f"{path}.headers.request", operation), str(name)))
    if len(places) > 1:
        yield finding("GL0109", document, places[1], f"the authority (Host) is already set by {places[0]}; Istio "
                                                     "allows one place per rule (drop one of them)")


def _string_match_limits(document: Document, value: Any, path: str, allow_empty_prefix: bool) -> Iterator[Finding]:
    value = as_map(value)
    if isinstance(value.get("regex"), str):
        reason = regex_limit_error(value["regex"])
        if reason:
            yield finding("GL0111", document, join(path, "regex"), reason)
    if value.get("prefix") == "" and not allow_empty_prefix:
        yield finding("GL0111", document, join(path, "prefix"), "a prefix match must not be empty (leave the "
                                                                "condition out to match any value)")


def virtual_service_rules(document: Document) -> list[Finding]:
    """Istio's admission rules on a VirtualService's header operations, header names, string matches, labels."""
    spec = as_map(document.body.get("spec"))
    findings: list[Finding] = []
    for index, rule in enumerate(as_list(spec.get("http"))):
        rule = as_map(rule)
        path = f"spec.http[{index}]"
        findings.extend(_headers(document, rule.get("headers"), f"{path}.headers"))
        findings.extend(_authority_twice(document, rule, path))
        for position, entry in enumerate(as_list(rule.get("route"))):
            findings.extend(_headers(document, as_map(entry).get("headers"), f"{path}.route[{position}].headers"))
        for position, match in enumerate(as_list(rule.get("match"))):
            match = as_map(match)
            match_path = f"{path}.match[{position}]"
            for field in ("headers", "withoutHeaders"):
                for name, condition in as_map(match.get(field)).items():
                    where = join(join(match_path, field), str(name))
                    reason = header_match_name_error(str(name))
                    if reason:
                        findings.append(finding("GL0110", document, where, reason))
                    if not (field == "withoutHeaders" and as_map(condition).get("regex") == "*"):
                        findings.extend(_string_match_limits(document, condition, where, False))
            findings.extend(_string_match_limits(document, match.get("uri"), f"{match_path}.uri", True))
            for field in ("scheme", "method", "authority"):
                findings.extend(_string_match_limits(document, match.get(field), f"{match_path}.{field}", False))
            for name, condition in as_map(match.get("queryParams")).items():
                findings.extend(_string_match_limits(document, condition,
                                                     join(join(match_path, "queryParams"), str(name)), False))
            for key, reason in label_errors(as_map(match.get("sourceLabels"))):
                findings.append(finding("GL0205", document, join(f"{match_path}.sourceLabels", key), reason))
    return findings


# ----------------------------------------------------------------------------------- DestinationRule

def destination_rule_rules(document: Document) -> list[Finding]:
    """GL0205 for subset labels, and for the canary-subset-labels annotation the DestinationRule script reads."""
    findings: list[Finding] = []
    for index, subset in enumerate(as_list(as_map(document.body.get("spec")).get("subsets"))):
        for key, reason in label_errors(as_map(as_map(subset).get("labels"))):
            findings.append(finding("GL0205", document, join(f"spec.subsets[{index}].labels", key), reason))
    annotation = as_map(document.metadata.get("annotations")).get(SUBSET_LABELS_ANNOTATION)
    if isinstance(annotation, str):
        try:
            labels = json.loads(annotation)
        except ValueError:
            labels = None
        where = join("metadata.annotations", SUBSET_LABELS_ANNOTATION)
        if not isinstance(labels, dict) or not labels:
            findings.append(finding("GL0205", document, where, "must be a non-empty JSON map of labels, e.g. "
                                                               '{"version": "canary"}'))
        else:
            findings.extend(finding("GL0205", document, where, reason) for _key, reason in label_errors(labels))
    return findings


# ------------------------------------------------------------------------------ TrafficRouting, Rollout

def _strategy(document: Document, strategy: dict, path: str) -> Iterator[Finding]:
    modifier = as_map(strategy.get("requestHeaderModifier"))
    modifier_path = f"{path}.requestHeaderModifier"
    for operation in ("set", "add"):
        for position, header in enumerate(as_list(modifier.get(operation))):
            header = as_map(header)
            where = f"{modifier_path}.{operation}[{position}]"
            name, value = header.get("name"), header.get("value")
            if isinstance(name, str):
                reason = header_operation_error(name, operation)
                if reason:
                    yield finding("GL0109", document, f"{where}.name", reason)
            if isinstance(value, str):
                reason = header_value_error(value)
                if reason:
                    yield finding("GL0108", document, f"{where}.value", f"header value {value!r} {reason}")
    for position, name in enumerate(as_list(modifier.get("remove"))):
        if isinstance(name, str):
            reason = header_operation_error(name, "remove")
            if reason:
                yield finding("GL0109", document, f"{modifier_path}.remove[{position}]", reason)
    for index, match in enumerate(as_list(strategy.get("matches"))):
        match_path = f"{path}.matches[{index}]"
        seen: dict[str, tuple[int, str]] = {}
        for position, header in enumerate(as_list(as_map(match).get("headers"))):
            header = as_map(header)
            name = header.get("name")
            where = f"{match_path}.headers[{position}]"
            if isinstance(name, str):
                folded = name.lower()
                if folded in seen:
                    first, first_name = seen[folded]
                    yield finding("GL0112", document, f"{where}.name",
                                  f"header {name!r} is also matched by {match_path}.headers[{first}] "
                                  f"({first_name!r}); header names are case-insensitive, so one match cannot test "
                                  "one header twice (use a regex, or two matches for either value)")
                else:
                    seen[folded] = (position, name)
            if header.get("type") == "RegularExpression" and isinstance(header.get("value"), str):
                reason = regex_limit_error(header["value"])
                if reason:
                    yield finding("GL0111", document, f"{where}.value", reason)
        path_match = as_map(as_map(match).get("path"))
        if path_match.get("type") == "RegularExpression" and isinstance(path_match.get("value"), str):
            reason = regex_limit_error(path_match["value"])
            if reason:
                yield finding("GL0111", document, f"{match_path}.path.value", reason)
        for position, param in enumerate(as_list(as_map(match).get("queryParams"))):
            param = as_map(param)
            if param.get("type") == "RegularExpression" and isinstance(param.get("value"), str):
                reason = regex_limit_error(param["value"])
                if reason:
                    yield finding("GL0111", document, f"{match_path}.queryParams[{position}].value", reason)


def routing_rules(document: Document) -> list[Finding]:
    """The rules above for what a TrafficRouting or Rollout step makes the scripts write."""
    return [f for path, strategy in strategies(document) for f in _strategy(document, strategy, path)]


PODS_REFUSE = "the API server refuses a pod with such a label"
SELECTS_NOTHING = "no pod can carry such a label, so the selector would select none"


def _pod_labels_at(document: Document, labels: Any, path: str, what: str) -> list[Finding]:
    return [finding("GL0205", document, join(path, key), reason)
            for key, reason in pod_label_errors(as_map(labels), what)]


def fulllink_labels(document: Document) -> list[Finding]:
    """GL0205 for a FullLinkGray's grayLabels and canarySubsetLabels (they become pod labels and the canary
    subset's labels) and gateway.selector (the coloring EnvoyFilter's workloadSelector)."""
    spec = as_map(document.body.get("spec"))
    return [*(f for field in ("grayLabels", "canarySubsetLabels")
              for f in _pod_labels_at(document, spec.get(field), f"spec.{field}", PODS_REFUSE)),
            *_pod_labels_at(document, as_map(spec.get("gateway")).get("selector"), "spec.gateway.selector",
                            SELECTS_NOTHING)]


def envoy_filter_rules(document: Document) -> list[Finding]:
    """GL0205 for an EnvoyFilter's workloadSelector labels: Istio refuses an empty key or a '*', and a key or value
    no Kubernetes label can have selects no pod, so the filter would apply nowhere."""
    selector = as_map(as_map(document.body.get("spec")).get("workloadSelector"))
    return _pod_labels_at(document, selector.get("labels"), "spec.workloadSelector.labels",
                          SELECTS_NOTHING + " (the EnvoyFilter would apply nowhere)")


def rollout_labels(document: Document) -> list[Finding]:
    """GL0205 for the labels a Kruise Rollout patches onto the canary pods (patchPodTemplateMetadata): the API
    server refuses a pod with a label Kubernetes does not allow."""
    canary = as_map(as_map(as_map(document.body.get("spec")).get("strategy")).get("canary"))
    labels = as_map(canary.get("patchPodTemplateMetadata")).get("labels")
    return _pod_labels_at(document, labels, "spec.strategy.canary.patchPodTemplateMetadata.labels", PODS_REFUSE)


def analyze_document(document: Document) -> list[Finding]:
    """Every admission rule that applies to ``document``."""
    if is_kind(document, ISTIO, "VirtualService"):
        return virtual_service_rules(document)
    if is_kind(document, ISTIO, "DestinationRule"):
        return destination_rule_rules(document)
    if is_kind(document, ISTIO, "EnvoyFilter"):
        return envoy_filter_rules(document)
    if is_kind(document, "graylane.io", "FullLinkGray"):
        return fulllink_labels(document)
    if is_kind(document, "rollouts.kruise.io", "Rollout"):
        return [*routing_rules(document), *rollout_labels(document)]
    return routing_rules(document)


def _sets_authority(headers: Any) -> bool:
    request = as_map(as_map(headers).get("request"))
    return any(is_authority_header(str(name)) for op in ("set", "add") for name in as_map(request.get(op)))


def _template_rule(spec: dict, service: str, namespace: Optional[str]) -> Optional[dict]:
    """The http rule the built-in script copies into lane rules: the first routing to ``service`` without a match,
    else the first routing to it at all."""
    fallback = None
    for rule in as_list(spec.get("http")):
        rule = as_map(rule)
        hosts = [as_map(as_map(entry).get("destination")).get("host") for entry in as_list(rule.get("route"))]
        if any(isinstance(h, str) and service_matches(service, namespace, h, namespace) for h in hosts):
            if "match" not in rule:
                return rule
            fallback = fallback or rule
    return fallback


def authority_conflicts(documents: list[Document]) -> list[Finding]:
    """GL0109: a lane's requestHeaderModifier sets the Host (authority) while the VirtualService rule the lane rules
    copy already rewrites it, so the rendered rule would set the authority twice (Istio refuses)."""
    findings: list[Finding] = []
    inputs = DocumentIndex(documents)
    for document in documents:
        for path, strategy in strategies(document):
            modifier = as_map(strategy.get("requestHeaderModifier"))
            setting = [(f"{path}.requestHeaderModifier.{op}[{i}].name", as_map(h).get("name"))
                       for op in ("set", "add") for i, h in enumerate(as_list(modifier.get(op)))
                       if is_authority_header(str(as_map(h).get("name", "")))]
            if not setting or not as_list(strategy.get("matches")):
                continue
            for _target_path, target in routing_targets(document):
                service = target.get("service")
                if not isinstance(service, str):
                    continue
                for ref in as_list(target.get("customNetworkRefs")):
                    ref = as_map(ref)
                    if ref.get("kind") != "VirtualService" or not isinstance(ref.get("apiVersion"), str):
                        continue
                    for found in inputs.matching(ref["apiVersion"], "VirtualService", str(ref.get("name")),
                                                 document.namespace):
                        rule = _template_rule(as_map(found.body.get("spec")), service,
                                              found.namespace or document.namespace)
                        rewrites = rule and (as_map(rule.get("rewrite")).get("authority")
                                             or _sets_authority(rule.get("headers")))
                        if rewrites:
                            findings.append(finding(
                                "GL0109", document, setting[0][0],
                                f"sets the authority (Host), but the rule of VirtualService/{found.name} that the lane "
                                "rules copy already sets it (rewrite.authority or a Host header); Istio allows one "
                                "place per rule: drop one of them"))
    return findings
