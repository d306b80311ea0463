"""Analyzers for Istio VirtualServices and DestinationRules (codes GL01xx for routes, GL02xx for subsets)."""
from __future__ import annotations

from typing import Any, Iterator, Optional

from engine.checks.analyzers.common import (ISTIO, Finding, as_list, as_map, finding, is_int, is_kind, join, re2_error,
                        re2_fullmatch)
from engine.documents import Document
from engine.routing.hosts import fqdn, service_key

PROTOCOLS = ("http", "tcp", "tls")
STRING_MATCH_TYPES = ("exact", "prefix", "regex")
STRING_MATCH_FIELDS = ("uri", "scheme", "method", "authority")
STRING_MATCH_MAPS = ("headers", "queryParams", "withoutHeaders")
IGNORED_MATCH_KEYS = ("name", "statPrefix")


def is_virtual_service(document: Document) -> bool:
    return is_kind(document, ISTIO, "VirtualService")


def is_destination_rule(document: Document) -> bool:
    return is_kind(document, ISTIO, "DestinationRule")


def analyze_document(document: Document) -> list[Finding]:
    """Single-object checks: weights, match types, header case, RE2, unreachable rules, subsets."""
    if is_virtual_service(document):
        spec = as_map(document.body.get("spec"))
        return [*route_weights(document, spec), *string_matches(document, spec),
                *unreachable_rules(document, spec)]
    if is_destination_rule(document):
        return destination_rule_subsets(document)
    return []


# ---------------------------------------------------------------------------------------------- weights

def route_weights(document: Document, spec: dict, path: str = "spec") -> list[Finding]:
    """GL0102 for each weight outside 0-100; GL0101 for each rule whose (valid) weights do not sum to 100.

    As in Istio's API, a weight of 0 and no weight are the same thing; a rule with one destination and no
    weight sends it everything.
    """
    findings: list[Finding] = []
    for protocol in PROTOCOLS:
        for index, rule in enumerate(as_list(spec.get(protocol))):
            route = as_list(as_map(rule).get("route"))
            if not route:
                continue
            rule_path = join(join(join(path, protocol), index), "route")
            weights, valid = [], True
            for position, entry in enumerate(route):
                weight = as_map(entry).get("weight")
                if weight is None:
                    weights.append(0)
                elif not is_int(weight) or not 0 <= weight <= 100:
                    valid = False
                    findings.append(finding("GL0102", document, join(join(rule_path, position), "weight"),
                                            f"weight must be an integer from 0 to 100, got {weight!r}"))
                else:
                    weights.append(weight)
            if not valid:
                continue
            total = sum(weights)
            if len(route) == 1 and total in (0, 100):
                continue
            if total != 100:
                shown = " + ".join(str(w) for w in weights)
                findings.append(finding("GL0101", document, rule_path,
                                        f"route weights sum to {total} ({shown}), not 100"
                                        + (" (a destination without weight counts as 0)" if 0 in weights
                                           and len(route) > 1 else "")))
    return findings


# --------------------------------------------------------------------------------------- string matches

def _string_match(document: Document, value: Any, path: str, header: Optional[str] = None) -> Iterator[Finding]:
    """GL0103 (type outside exact/prefix/regex), GL0106 (regex not RE2), GL0105 (header name not lowercase)."""
    if header is not None and header != header.lower():
        yield finding("GL0105", document, path, f"header name {header!r} is not lowercase; write {header.lower()!r}")
    if not isinstance(value, dict):
        return
    for key in value:
        if key not in STRING_MATCH_TYPES:
            yield finding("GL0103", document, join(path, key),
                          f"match type {key!r} is not one of {', '.join(STRING_MATCH_TYPES)}")
    regex = value.get("regex")
    if isinstance(regex, str):
        reason = re2_error(regex)
        if reason:
            yield finding("GL0106", document, join(path, "regex"), f'"{regex}" is not valid RE2: {reason}')


def string_matches(document: Document, spec: dict) -> list[Finding]:
    findings: list[Finding] = []
    for index, rule in enumerate(as_list(spec.get("http"))):
        rule = as_map(rule)
        rule_path = f"spec.http[{index}]"
        for position, match in enumerate(as_list(rule.get("match"))):
            match = as_map(match)
            match_path = f"{rule_path}.match[{position}]"
            for field in STRING_MATCH_FIELDS:
                if field in match:
                    findings.extend(_string_match(document, match[field], join(match_path, field)))
            for field in STRING_MATCH_MAPS:
                for name, value in as_map(match.get(field)).items():
                    header = str(name) if field != "queryParams" else None
                    findings.extend(_string_match(document, value, join(join(match_path, field), str(name)),
                                                  header))
        regex_rewrite = as_map(as_map(rule.get("rewrite")).get("uriRegexRewrite"))
        if isinstance(regex_rewrite.get("match"), str):
            reason = re2_error(regex_rewrite["match"])
            if reason:
                findings.append(finding("GL0106", document, f"{rule_path}.rewrite.uriRegexRewrite.match",
                                        f'"{regex_rewrite["match"]}" is not valid RE2: {reason}'))
        for position, origin in enumerate(as_list(as_map(rule.get("corsPolicy")).get("allowOrigins"))):
            findings.extend(_string_match(document, origin, f"{rule_path}.corsPolicy.allowOrigins[{position}]"))
    return findings


# ------------------------------------------------------------------------------------- unreachable rules

def _string_implies(broad: Any, narrow: Any, ignore_case: bool = False) -> bool:
    """Whether every value ``narrow`` (an Istio StringMatch) matches is also matched by ``broad``."""
    broad, narrow = as_map(broad), as_map(narrow)
    if len(broad) > 1 or len(narrow) > 1 or any(k not in STRING_MATCH_TYPES for k in (*broad, *narrow)):
        return False
    if not broad:
        return True  # {}: presence (headers) or anything
    (broad_type, broad_value), = broad.items()
    if not narrow or not isinstance(broad_value, str):
        return False
    (narrow_type, narrow_value), = narrow.items()
    if not isinstance(narrow_value, str):
        return False
    if ignore_case and broad_type != "regex":
        broad_value, narrow_value = broad_value.lower(), narrow_value.lower()
    if broad_type == "exact":
        return narrow_type == "exact" and narrow_value == broad_value
    if broad_type == "prefix":
        return narrow_type in ("exact", "prefix") and narrow_value.startswith(broad_value)
    if narrow_type == "regex":
        return narrow_value == broad_value
    return narrow_type == "exact" and not ignore_case and re2_fullmatch(broad_value, narrow_value)


def _lower_keys(value: Any) -> dict:
    return {str(k).lower(): v for k, v in as_map(value).items()}


def match_covers(broad: dict, narrow: dict) -> bool:
    """Whether every request Istio HTTPMatchRequest ``narrow`` matches is also matched by ``broad``.

    Conservative: a condition graylane cannot compare makes it answer False (no warning).
    """
    for key, value in broad.items():
        if key in IGNORED_MATCH_KEYS or key == "ignoreUriCase":
            continue
        if key in STRING_MATCH_FIELDS:
            if key not in narrow:
                return False
            ignore_case = key == "uri" and bool(broad.get("ignoreUriCase"))
            if key == "uri" and narrow.get("ignoreUriCase") and not broad.get("ignoreUriCase"):
                return False
            if not _string_implies(value, narrow[key], ignore_case):
                return False
        elif key in ("headers", "queryParams"):
            fold = _lower_keys if key == "headers" else as_map
            narrow_map = fold(narrow.get(key))
            for name, condition in fold(value).items():
                if name not in narrow_map or not _string_implies(condition, narrow_map[name]):
                    return False
        elif key == "withoutHeaders":
            narrow_map = _lower_keys(narrow.get(key))
            if any(narrow_map.get(name) != condition for name, condition in _lower_keys(value).items()):
                return False
        elif key == "sourceLabels":
            narrow_labels = as_map(narrow.get(key))
            if any(narrow_labels.get(k) != v for k, v in as_map(value).items()):
                return False
        elif key == "gateways":
            narrow_gateways = as_list(narrow.get(key))
            if not narrow_gateways or not set(map(str, narrow_gateways)) <= set(map(str, as_list(value))):
                return False
        elif key in ("port", "sourceNamespace"):
            if narrow.get(key) != value:
                return False
        else:
            return False
    return True


def _is_catch_all(match: Any) -> bool:
    return isinstance(match, dict) and not (set(match) - set(IGNORED_MATCH_KEYS) - {"ignoreUriCase"})


def _rule_label(index: int, rule: dict) -> str:
    name = rule.get("name")
    return f"spec.http[{index}]" + (f" ({name})" if isinstance(name, str) and name else "")


def unreachable_rules(document: Document, spec: dict) -> list[Finding]:
    """GL0107: http rules (or single matches of a rule) shadowed by earlier rules."""
    findings: list[Finding] = []
    earlier: list[tuple[int, dict, Optional[list]]] = []  # (index, rule, matches or None for catch-all)
    for index, rule in enumerate(as_list(spec.get("http"))):
        rule = as_map(rule)
        matches = as_list(rule.get("match"))
        catch_all = not matches or any(_is_catch_all(m) for m in matches)
        catcher = next((e for e in earlier if e[2] is None), None)
        if catcher is not None:
            findings.append(finding("GL0107", document, f"spec.http[{index}]",
                                    f"this rule can never match: {_rule_label(catcher[0], catcher[1])} has no "
                                    "match and catches every request first"))
        elif not catch_all:
            shadows = []
            for match in matches:
                shadow = next(((i, r) for i, r, ms in earlier for m in ms
                               if isinstance(m, dict) and isinstance(match, dict) and match_covers(m, match)), None)
                shadows.append(shadow)
            if shadows and all(shadows):
                findings.append(finding("GL0107", document, f"spec.http[{index}]",
                                        "this rule can never match: every request it matches is matched first by "
                                        + ", ".join(dict.fromkeys(_rule_label(i, r) for i, r in shadows))))
            else:
                for position, shadow in enumerate(shadows):
                    if shadow:
                        findings.append(finding("GL0107", document, f"spec.http[{index}].match[{position}]",
                                                "this match can never be chosen: "
                                                f"{_rule_label(*shadow)} has a broader match and comes first"))
        earlier.append((index, rule, None if catch_all else matches))
    return findings


# ------------------------------------------------------------------------------------------- subsets

def destination_rule_subsets(document: Document) -> list[Finding]:
    """GL0203 duplicate subset names; GL0204 subsets without labels."""
    findings: list[Finding] = []
    seen: dict[str, int] = {}
    for index, subset in enumerate(as_list(as_map(document.body.get("spec")).get("subsets"))):
        subset = as_map(subset)
        name = subset.get("name")
        path = f"spec.subsets[{index}]"
        if isinstance(name, str):
            if name in seen:
                findings.append(finding("GL0203", document, f"{path}.name",
                                        f"subset name {name!r} is already used by spec.subsets[{seen[name]}]"))
            else:
                seen[name] = index
        if not as_map(subset.get("labels")):
            findings.append(finding("GL0204", document, path,
                                    f"subset {name!r} has no labels, so it selects every pod of the host "
                                    "(stable and canary alike)"))
    return findings


def destinations(spec: dict) -> Iterator[tuple[str, dict]]:
    """(path, destination) of every route destination and mirror of a VirtualService spec."""
    for protocol in PROTOCOLS:
        for index, rule in enumerate(as_list(spec.get(protocol))):
            rule = as_map(rule)
            rule_path = f"spec.{protocol}[{index}]"
            for position, entry in enumerate(as_list(rule.get("route"))):
                destination = as_map(entry).get("destination")
                if isinstance(destination, dict):
                    yield f"{rule_path}.route[{position}].destination", destination
            if protocol == "http":
                if isinstance(rule.get("mirror"), dict):
                    yield f"{rule_path}.mirror", rule["mirror"]
                for position, mirror in enumerate(as_list(rule.get("mirrors"))):
                    destination = as_map(mirror).get("destination")
                    if isinstance(destination, dict):
                        yield f"{rule_path}.mirrors[{position}].destination", destination


def rule_covers_host(rule_document: Document, destination_host: str, namespace: Optional[str]) -> bool:
    """Whether a DestinationRule's host is (or, as a wildcard, covers) a destination host."""
    host = as_map(rule_document.body.get("spec")).get("host")
    if not isinstance(host, str) or not host:
        return False
    text = host.strip().lower()
    if text == "*":
        return True
    if text.startswith("*."):
        return fqdn(destination_host, namespace).endswith(text[1:])
    rule_name, rule_namespace = service_key(host, rule_document.namespace or namespace)
    name, destination_namespace = service_key(destination_host, namespace)
    return rule_name == name and (rule_namespace is None or destination_namespace is None
                                  or rule_namespace == destination_namespace)


class DestinationRulesByHost:
    """DestinationRules by the Service name of their host, wildcard hosts apart, so that finding the rules that
    cover a destination (:func:`rule_covers_host`) looks at the few that can, not at every rule of a mesh."""

    def __init__(self, rules: list[Document]):
        self._by_name: dict[str, list[tuple[int, Document]]] = {}
        self._wildcards: list[tuple[int, Document]] = []
        for position, rule in enumerate(rules):
            host = as_map(rule.body.get("spec")).get("host")
            if not isinstance(host, str) or not host:
                continue  # covers nothing
            if "*" in host:
                self._wildcards.append((position, rule))
            else:
                self._by_name.setdefault(service_key(host)[0], []).append((position, rule))

    def covering(self, destination_host: str, namespace: Optional[str]) -> list[Document]:
        """The rules covering ``destination_host``, in input order."""
        candidates = self._by_name.get(service_key(destination_host, namespace)[0], []) + self._wildcards
        return [rule for _position, rule in sorted(candidates, key=lambda item: item[0])
                if rule_covers_host(rule, destination_host, namespace)]


def analyze_subsets(documents: list[Document]) -> list[Finding]:
    """GL0201 subset missing from the host's DestinationRule(s); GL0202 no DestinationRule for the host."""
    rules = DestinationRulesByHost([d for d in documents if is_destination_rule(d)])
    findings: list[Finding] = []
    for document in documents:
        if not is_virtual_service(document):
            continue
        for path, destination in destinations(as_map(document.body.get("spec"))):
            subset, host = destination.get("subset"), destination.get("host")
            if not isinstance(subset, str) or not subset or not isinstance(host, str):
                continue
            covering = rules.covering(host, document.namespace)
            if not covering:
                findings.append(finding("GL0202", document, f"{path}.subset",
                                        f"subset {subset!r} of host {host}: no DestinationRule for this host is "
                                        "among the inputs"))
                continue
            defined = [str(as_map(s).get("name")) for r in covering
                       for s in as_list(as_map(r.body.get("spec")).get("subsets"))]
            if subset not in defined:
                names = ", ".join(f"{r.kind}/{r.name}" for r in covering)
                findings.append(finding("GL0201", document, f"{path}.subset",
                                        f"subset {subset!r} is not defined by {names} (host {host}); defined: "
                                        + (", ".join(dict.fromkeys(defined)) or "none")))
    return findings
