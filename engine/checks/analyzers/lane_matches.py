"""Lane matches the built-in VirtualService script cannot combine with a rule's match (GL0404).

The built-in script scopes a lane: before each http rule that routes to the stable service it inserts one rule
per (rule match, lane match), each the two ANDed into one Istio match. Some pairs have no single Istio match
(a regex against a prefix, a lane path against a rule with ``ignoreUriCase``), and the script refuses them.
``combine`` mirrors the script's ``combineMatch`` (lua_configuration/networking.istio.io/VirtualService/
trafficRouting.lua) rule for rule, so ``graylane validate`` finds what ``render`` would refuse; the validate/render
agreement test holds the two together.
"""
from __future__ import annotations

import copy
from typing import Any, Iterator, Optional

from engine.checks.analyzers.common import Finding, as_list, as_map, finding
from engine.checks.analyzers.routing import is_rollout, is_traffic_routing
from engine.documents import Document, DocumentIndex
from engine.errors import InvalidInputError
from engine.routing.ownership import is_canary_destination, same_service
from engine.routing.script_input import original_of
from engine.routing.strategy import plan, step_count

CONTRADICTION, UNSUPPORTED = "contradiction", "unsupported"
MATCH_LABELS = ("name", "statPrefix", "ignoreUriCase")


# ------------------------------------------------------------------------------ the script's combineMatch

def _kind(condition: Any, presence_regex: bool) -> tuple[Optional[str], Any]:
    """(kind, value) of an Istio StringMatch: "any" for {} (and regex "*" in a header), None when unusable."""
    if not isinstance(condition, dict) or not condition:
        return "any", None
    if len(condition) != 1:
        return None, None
    kind, value = next(iter(condition.items()))
    if not isinstance(value, str):
        return None, None
    if kind == "regex" and presence_regex and value == "*":
        return "any", None
    return (kind, value) if kind in ("exact", "prefix", "regex") else (None, None)


def _describe(condition: Any) -> str:
    kind, value = _kind(condition, True)
    return "present" if kind == "any" else f"{kind} '{value}'" if kind else str(condition)


def _intersect(a: Any, b: Any, presence_regex: bool) -> tuple[Any, Optional[str]]:
    """(the StringMatch both accept, None) or (None, CONTRADICTION/UNSUPPORTED)."""
    (kind_a, value_a), (kind_b, value_b) = _kind(a, presence_regex), _kind(b, presence_regex)
    if kind_a is None or kind_b is None:
        return None, UNSUPPORTED
    if kind_a == "any":
        return copy.deepcopy(b), None
    if kind_b == "any":
        return copy.deepcopy(a), None
    if "regex" in (kind_a, kind_b):
        return (copy.deepcopy(a), None) if (kind_a, value_a) == (kind_b, value_b) else (None, UNSUPPORTED)
    if kind_a == kind_b == "exact":
        return (copy.deepcopy(a), None) if value_a == value_b else (None, CONTRADICTION)
    if kind_a == kind_b == "prefix":
        if value_a.startswith(value_b):
            return copy.deepcopy(a), None
        return (copy.deepcopy(b), None) if value_b.startswith(value_a) else (None, CONTRADICTION)
    exact, prefix = (value_b, value_a) if kind_a == "prefix" else (value_a, value_b)
    return ({"exact": exact}, None) if exact.startswith(prefix) else (None, CONTRADICTION)


def _intersect_ignoring_case(rule_uri: Any, lane_uri: Any) -> tuple[Any, Optional[str]]:
    lane_kind, lane_value = _kind(lane_uri, False)
    if rule_uri is None:
        return copy.deepcopy(lane_uri), None
    rule_kind, rule_value = _kind(rule_uri, False)
    if lane_kind != "exact" or rule_kind not in ("exact", "prefix", "any"):
        return None, UNSUPPORTED
    if rule_kind == "any" or (rule_kind == "exact" and lane_value.lower() == rule_value.lower()) or (
            rule_kind == "prefix" and lane_value.lower().startswith(rule_value.lower())):
        return {"exact": lane_value}, None
    return None, CONTRADICTION


def _excluded_by(condition: Any, excluded: Any) -> bool:
    (kind, value), (excluded_kind, excluded_value) = _kind(condition, True), _kind(excluded, True)
    if excluded_kind == "any":
        return True
    if kind == "exact" and excluded_kind == "exact":
        return value == excluded_value
    return kind in ("exact", "prefix") and excluded_kind == "prefix" and value.startswith(excluded_value)


def _find_key(mapping: Any, name: str, fold_case: bool) -> Optional[str]:
    if not isinstance(mapping, dict):
        return None
    return next((k for k in mapping if k == name or (fold_case and isinstance(k, str) and k.lower() == name.lower())),
                None)


def combine(rule_match: dict, lane_match: dict) -> tuple[Optional[dict], Optional[str]]:
    """A rule's match ANDed with a lane match, as the built-in script computes it: (match, None), or (None,
    "contradiction: ...") when no request satisfies both (no lane rule), or (None, "unsupported: ...") when no one
    Istio match expresses it (the script refuses). A contradiction anywhere wins over an inexpressible field."""
    combined = copy.deepcopy(rule_match)
    unsupported = None
    if "uri" in lane_match:
        if combined.get("ignoreUriCase"):
            uri, problem = _intersect_ignoring_case(combined.get("uri"), lane_match["uri"])
            combined.pop("ignoreUriCase")
        else:
            uri, problem = _intersect(combined.get("uri"), lane_match["uri"], False)
        if uri is None:
            reason = (f"{problem}: the rule's uri {_describe(combined.get('uri') or {})}"
                      + (" (ignoreUriCase)" if rule_match.get("ignoreUriCase") else "")
                      + f" and the lane's uri {_describe(lane_match['uri'])}")
            if problem == CONTRADICTION:
                return None, reason
            unsupported = reason
        else:
            combined["uri"] = uri
    for field in ("headers", "queryParams"):
        fold_case = field == "headers"
        for name in sorted(as_map(lane_match.get(field))):
            condition = lane_match[field][name]
            conditions = combined.setdefault(field, {})
            key = _find_key(conditions, name, fold_case)
            value, problem = (condition, None) if key is None else _intersect(conditions[key], condition, True)
            if value is None:
                what = f"{'header' if fold_case else 'query parameter'} {name} "
                reason = (f"{problem}: the rule's {what}{_describe(conditions[key])} and the lane's "
                          f"{what}{_describe(condition)}")
                if problem == CONTRADICTION:
                    return None, reason
                unsupported = unsupported or reason
                continue
            if key is not None:
                del conditions[key]
            conditions[name] = copy.deepcopy(value)
            excluded = _find_key(combined.get("withoutHeaders"), name, True) if fold_case else None
            if excluded is not None and _excluded_by(value, combined["withoutHeaders"][excluded]):
                return None, (f"{CONTRADICTION}: the rule's withoutHeaders {name} "
                              f"{_describe(combined['withoutHeaders'][excluded])} and the lane's header {name} "
                              f"{_describe(value)}")
    return (None, unsupported) if unsupported else (combined, None)


def _string_match(match_type: Any, value: Any) -> dict:
    if match_type == "RegularExpression":
        return {"regex": value}
    return {"prefix": value} if match_type in ("PathPrefix", "Prefix") else {"exact": value}


def lane_match(match: dict) -> dict:
    """A Kruise match (as the routing plan holds it) as the Istio match the script builds (its ``istioMatch``)."""
    result: dict = {}
    path = match.get("path")
    if path:
        result["uri"] = _string_match(path.get("type") or "PathPrefix", path.get("value") or "/")
    if match.get("headers"):
        result["headers"] = {str(h["name"]).lower(): _string_match(h.get("type"), h.get("value"))
                             for h in match["headers"]}
    if match.get("queryParams"):
        result["queryParams"] = {p["name"]: _string_match(p.get("type"), p.get("value")) for p in match["queryParams"]}
    return result


# ------------------------------------------------------------------------------ where the script combines

def _routes_to_stable(rule: Any, stable: str, canary: str, namespace: Optional[str]) -> bool:
    return isinstance(rule, dict) and any(
        isinstance(entry, dict) and isinstance(entry.get("destination"), dict)
        and not is_canary_destination(entry["destination"], stable, canary, namespace)
        and same_service(entry["destination"].get("host"), stable, namespace) for entry in as_list(rule.get("route")))


def _catches_all(rule: Any) -> bool:
    matches = as_list(as_map(rule).get("match"))
    return not matches or any(not (set(as_map(m)) - set(MATCH_LABELS)) for m in matches)


def _rule_name(index: int, rule: dict) -> str:
    name = rule.get("name")
    return f"http[{index}] ({name})" if isinstance(name, str) and name else f"http[{index}]"


def inexpressible(http: list, lane_matches: list[dict], stable: str, canary: str,
                  namespace: Optional[str] = None) -> Iterator[tuple[int, str, str]]:
    """(lane match index, the rule and match it meets, why) for every pair the script cannot combine, in the
    order the script meets them (it stops at the first); ``namespace``: the VirtualService's (``obj.namespace``)."""
    catch_all = None
    for index, rule in enumerate(http):
        rule = as_map(rule)
        if catch_all is None and _routes_to_stable(rule, stable, canary, namespace):
            rule_matches = as_list(rule.get("match")) or [{}]
            for position, rule_match in enumerate(rule_matches):
                for lane_index, lane in enumerate(lane_matches):
                    _combined, problem = combine(as_map(rule_match), lane)
                    if problem and problem.startswith(UNSUPPORTED):
                        where = _rule_name(index, rule) + (f" match[{position}]" if rule.get("match") else "")
                        yield lane_index, where, problem[len(UNSUPPORTED) + 2:]
        if catch_all is None and _catches_all(rule):
            catch_all = index


def inexpressible_lanes(documents: list[Document]) -> list[Finding]:
    """GL0404 for each TrafficRouting strategy or Rollout step whose lane match the built-in script cannot combine
    with the match of a rule of the referenced VirtualService (render would stop there)."""
    findings: list[Finding] = []
    inputs = DocumentIndex(documents)
    for document in documents:
        if not (is_traffic_routing(document) or is_rollout(document)):  # Kruise's (Argo's lanes are header routes)
            continue
        try:
            plans = [plan(document, step) for step in range(1, max(step_count(document), 1) + 1)]
        except InvalidInputError:
            continue  # other analyzers (and the schema) report what is wrong with the routing itself
        for routing in plans:
            if not routing.strategy.matches:
                continue
            path = "spec.strategy" if routing.step is None else f"spec.strategy.canary.steps[{routing.step - 1}]"
            lanes = [lane_match(m) for m in routing.strategy.matches]
            for target in routing.targets:
                for ref in target.network_refs:
                    if ref.kind != "VirtualService":
                        continue
                    for found in inputs.matching(ref.api_version, ref.kind, ref.name, document.namespace):
                        try:
                            spec = as_map(original_of(found.body)[0].spec)
                        except ValueError:
                            continue
                        for lane_index, where, why in inexpressible(as_list(spec.get("http")), lanes,
                                                                    target.stable_service, target.canary_service,
                                                                    found.namespace):  # as render passes it
                            findings.append(finding(
                                "GL0404", document, f"{path}.matches[{lane_index}]",
                                f"the lane match cannot be combined with {where} of VirtualService "
                                f"{found.namespace or document.namespace or 'default'}/{found.name} into one Istio "
                                f"match ({why}): graylane intersects exact and prefix matches, and a regex only with "
                                "an identical one; use an exact or prefix lane match there, or the rule's own regex"))
                            break  # render stops at the first: one finding per step and VirtualService
    return list(dict.fromkeys(findings))
