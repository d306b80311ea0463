"""The documented differences between graylane's built-in Istio scripts and Kruise's, recognised by name.

``explain(case, graylane, kruise)`` compares one case's outputs. Every difference must be one of FIXES (each a
deliberate fix of a Kruise defect, listed in the README's "Compatibility with Kruise" section) and hold exactly
as documented; anything else is reported as unexplained. The recognisers rebuild Kruise's form from
graylane's output one fix at a time and then demand equality, so a fix can only excuse its own difference.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Optional

from engine.routing.harness import same_value, value_diff

ORIGINAL = "rollouts.kruise.io/original-spec-configuration"
CANARY = "canary"
COPIED_RULE_FIELDS = ("rewrite", "timeout", "retries", "corsPolicy")

FIXES = {
    "weights-sum-to-100": "weights of a split rule sum to exactly 100 (largest remainder; Kruise floors each)",
    "canary-host-form": "the canary host is written in the stable host's form (Kruise writes the bare name)",
    "match-order-kept": "match rules keep the order of the matches (Kruise inserts each on top, reversing them)",
    "header-names-lowercased": "matched header names are lower-cased (Istio requires lowercase header keys)",
    "canary-port": "the canary destination carries the stable destination's port",
    "copied-rule-fields": "match rules copy the stable rule's rewrite/timeout/retries/corsPolicy/headers",
    "one-canary-per-rule": "a rule with several stable destinations gets one canary destination (Kruise adds one "
                           "per stable destination and scales the weights again for each)",
    "existing-canary-updated": "an existing canary destination or subset is updated, not duplicated; a "
                               "DestinationRule without subsets gets the list",
    "refuse-unrouted-service": "a VirtualService with no http route to the service is refused for matches",
    "lane-rules-scoped": "lane rules are placed before each rule that routes to the stable service and scoped "
                         "to that rule's own matches",
    "weighted-canary-headers": "the weighted canary destination carries the requestHeaderModifier (Kruise applies "
                               "it to match rules only)",
}


@dataclass
class Verdict:
    fixes: set = field(default_factory=set)
    problems: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def service_of(host: Any) -> Optional[str]:
    return host.split(".", 1)[0] if isinstance(host, str) else None


def _routes_to(rule: dict, service: str) -> bool:
    return any(service_of((entry.get("destination") or {}).get("host")) == service
               for entry in rule.get("route") or [] if isinstance(entry, dict))


def _is_canary(destination: dict, stable: str, canary: str) -> bool:
    if stable == canary:
        return service_of(destination.get("host")) == stable and destination.get("subset") == CANARY
    return service_of(destination.get("host")) == canary


def _template(rules: list, stable: str) -> Optional[dict]:
    """The rule graylane's match rules copy: the first stable rule without match, else the first stable rule."""
    with_match = [r for r in rules if _routes_to(r, stable)]
    without = [r for r in with_match if r.get("match") is None]
    return (without or with_match or [None])[0]


def _stable_destination(rule: dict, stable: str, canary: str) -> dict:
    for entry in rule.get("route") or []:
        destination = entry.get("destination") or {}
        if service_of(destination.get("host")) == stable and not _is_canary(destination, stable, canary):
            return destination
    return {}


def _kruise_destination(destination: dict, template: dict, stable: str, canary: str, verdict: Verdict) -> dict:
    """graylane's canary destination turned back into Kruise's: bare host, no port."""
    result = dict(destination)
    bare = stable if stable == canary else canary
    if result.get("host") != bare and service_of(result.get("host")) == bare:
        expected_host = template.get("host") if stable == canary else \
            bare + (template.get("host", "")[len(stable):] if "." not in canary else "")
        if result.get("host") == expected_host:
            verdict.fixes.add("canary-host-form")
            result["host"] = bare
    if "port" in result and same_value(result["port"], template.get("port")):
        verdict.fixes.add("canary-port")
        del result["port"]
    return result


def modifier_headers(modifier: dict) -> Optional[dict]:
    """Istio ``headers`` for a requestHeaderModifier: ``{request: {set: {name: value}, add: ..., remove: [..]}}``."""
    request: dict = {}
    for action in ("set", "add"):
        if modifier.get(action):
            request[action] = {item["name"]: item["value"] for item in modifier[action]}
    if modifier.get("remove"):
        request["remove"] = list(modifier["remove"])
    return {"request": request}


def _merge_match(kruise_match: dict, rule_match: dict) -> dict:
    merged = copy.deepcopy(rule_match)
    for key, value in kruise_match.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _compare_match_rule(got: dict, want: dict, template_rule: dict, stable: str, canary: str,
                        verdict: Verdict, where: str) -> None:
    got, want = copy.deepcopy(got), copy.deepcopy(want)
    for match in want.get("match") or []:
        headers = match.get("headers")
        if isinstance(headers, dict) and any(name != name.lower() for name in headers):
            verdict.fixes.add("header-names-lowercased")
            match["headers"] = {name.lower(): value for name, value in headers.items()}
    template_destination = _stable_destination(template_rule, stable, canary)
    got["route"] = [dict(entry, destination=_kruise_destination(entry.get("destination") or {},
                                                                template_destination, stable, canary, verdict))
                    for entry in got.get("route") or []]
    for key in COPIED_RULE_FIELDS:
        if key in got and key not in want and same_value(got[key], template_rule.get(key)):
            verdict.fixes.add("copied-rule-fields")
            del got[key]
    if template_rule.get("headers") is not None and not same_value(got.get("headers"), want.get("headers")):
        # graylane: the stable rule's headers with the modifier applied on top; Kruise: the modifier alone
        template_request = (template_rule["headers"].get("request") or {})
        got_request = (got.get("headers") or {}).get("request") or {}
        if all(got_request.get(action, {}).get(name) == value for action in ("set", "add")
               for name, value in (template_request.get(action) or {}).items()
               if name not in ((want.get("headers") or {}).get("request") or {}).get(action, {})):
            verdict.fixes.add("copied-rule-fields")
            got.pop("headers", None)
            want.pop("headers", None)
    diff = value_diff(want, got, f"kruise {where}", f"graylane {where}")
    if diff:
        verdict.problems.append(diff)


def _split_match_rules(graylane_http: list, original_http: list, count: int, stable: str,
                       verdict: Verdict) -> Optional[list[tuple[dict, Optional[dict]]]]:
    """graylane's inserted match rules as (rule, scoping rule) pairs, in order; None if the rest moved."""
    if same_value(graylane_http[count:], original_http):
        return [(rule, None) for rule in graylane_http[:count]]
    # lanes: a group of inserted rules before each original rule that routes to the stable service
    inserted, position = [], 0
    for rule in original_http:
        if _routes_to(rule, stable):
            group = graylane_http[position:position + count]
            inserted.append([(r, rule if rule.get("match") is not None else None) for r in group])
            position += count
        if position >= len(graylane_http) or not same_value(graylane_http[position], rule):
            return None
        position += 1
    if position != len(graylane_http) or not inserted:
        return None
    verdict.fixes.add("lane-rules-scoped")
    return [pair for group in inserted for pair in group]


def _compare_matches(original: dict, got: dict, want: dict, strategy_matches: int, stable: str, canary: str,
                     verdict: Verdict) -> None:
    original_http, got_http, want_http = (original.get("http") or []), (got.get("http") or []), \
        (want.get("http") or [])
    kruise_rules = list(reversed(want_http[:strategy_matches]))
    if strategy_matches > 1 and not same_value(kruise_rules, want_http[:strategy_matches]):
        verdict.fixes.add("match-order-kept")
    if not same_value(want_http[strategy_matches:], original_http):
        verdict.problems.append("Kruise changed rules it did not insert (unexpected in the recogniser)")
        return
    pairs = _split_match_rules(got_http, original_http, strategy_matches, stable, verdict)
    if pairs is None:
        verdict.problems.append(value_diff(want_http, got_http, "kruise spec.http", "graylane spec.http")
                                or "graylane's rules do not follow the original rules")
        return
    template_rule = _template(original_http, stable) or {}
    for index, (rule, scope) in enumerate(pairs):
        kruise_rule = kruise_rules[index % strategy_matches]
        if scope is not None:  # undo the lane scoping: each match is the Kruise match joined with scope's
            expected = [_merge_match(kruise_rule["match"][0], m) for m in scope["match"]]
            if not same_value(rule.get("match"), expected):
                verdict.problems.append(f"spec.http: a lane rule before a rule with matches is not scoped to them:"
                                        f"\n{value_diff(expected, rule.get('match'), 'scoped', 'graylane')}")
                continue
            rule = dict(rule, match=kruise_rule["match"])
        _compare_match_rule(rule, kruise_rule, template_rule, stable, canary, verdict, f"spec.http[{index}]")


def _compare_split(original_rule: dict, got: dict, want: dict, strategy: dict, stable: str, canary: str,
                   verdict: Verdict, where: str) -> None:
    stable_count = sum(1 for e in original_rule.get("route") or []
                       if service_of((e.get("destination") or {}).get("host")) == stable)
    got_route, want_route = got.get("route") or [], want.get("route") or []
    rest = lambda rule: {k: v for k, v in rule.items() if k != "route"}  # noqa: E731
    diff = value_diff(rest(want), rest(got), f"kruise {where}", f"graylane {where}")
    if diff:
        verdict.problems.append(diff)
    canaries = [e for e in got_route if _is_canary(e.get("destination") or {}, stable, canary)]
    weights = [e.get("weight", 0) for e in got_route]
    if sum(weights) != 100 or len(canaries) != 1 or canaries[0].get("weight") != strategy["weight"]:
        verdict.problems.append(f"{where}: graylane's split is not one canary at {strategy['weight']} "
                                f"with weights summing to 100: {weights}")
        return
    template = _stable_destination(original_rule, stable, canary)
    without_weight = lambda entries: [{k: v for k, v in e.items() if k != "weight"} for e in entries]  # noqa: E731
    if any(_is_canary(e.get("destination") or {}, stable, canary) for e in original_rule.get("route") or []):
        verdict.fixes.add("existing-canary-updated")
        if not same_value(without_weight(got_route), without_weight(original_rule.get("route") or [])):
            verdict.problems.append(f"{where}: graylane changed the destinations of a rule with a canary")
        return
    got_route = copy.deepcopy(got_route)
    canary_entry = got_route[-1]
    canary_entry["destination"] = _kruise_destination(canary_entry["destination"], template, stable, canary, verdict)
    if "headers" in canary_entry and strategy.get("modifier") is not None and \
            same_value(canary_entry["headers"], modifier_headers(strategy["modifier"])):
        verdict.fixes.add("weighted-canary-headers")
        del canary_entry["headers"]
    if stable_count > 1:
        verdict.fixes.add("one-canary-per-rule")
        kruise_canary = [e for e in want_route if _is_canary(e.get("destination") or {}, stable, canary)][:1]
        if not same_value(without_weight(got_route), without_weight((original_rule.get("route") or [])
                                                                     + kruise_canary)):
            verdict.problems.append(f"{where}: graylane's destinations are not the rule's plus one canary")
        return
    if len(got_route) == len(want_route):
        for mine, theirs in zip(got_route, want_route):
            if mine.get("weight") != theirs.get("weight") and isinstance(theirs.get("weight"), (int, float)) \
                    and 0 <= mine.get("weight", 0) - theirs["weight"] <= 1:
                verdict.fixes.add("weights-sum-to-100")
                mine["weight"] = theirs["weight"]
    diff = value_diff(want_route, got_route, f"kruise {where}.route", f"graylane {where}.route")
    if diff:
        verdict.problems.append(diff)


def _compare_weights(original: dict, got: dict, want: dict, strategy: dict, stable: str, canary: str,
                     verdict: Verdict) -> None:
    for protocol in ("http", "tcp", "tls"):
        rules = original.get(protocol) or []
        got_rules, want_rules = got.get(protocol) or [], want.get(protocol) or []
        if len(got_rules) != len(rules) or len(want_rules) != len(rules):
            verdict.problems.append(f"spec.{protocol}: rule count changed")
            continue
        for index, (rule, mine, theirs) in enumerate(zip(rules, got_rules, want_rules)):
            where = f"spec.{protocol}[{index}]"
            if rule.get("match") is None and _routes_to(rule, stable):
                _compare_split(rule, mine, theirs, strategy, stable, canary, verdict, where)
                continue
            diff = value_diff(theirs, mine, f"kruise {where}", f"graylane {where}")
            if diff:
                verdict.problems.append(diff)
    rest = lambda spec: {k: v for k, v in spec.items() if k not in ("http", "tcp", "tls")}  # noqa: E731
    diff = value_diff(rest(want), rest(got), "kruise spec", "graylane spec")
    if diff:
        verdict.problems.append(diff)


def _metadata_diff(got: dict, want: dict) -> list[str]:
    def part(body: dict) -> dict:
        metadata = body.get("metadata") or {}
        annotations = dict(metadata.get("annotations") or {})
        stored = annotations.pop(ORIGINAL, None)
        return {"labels": metadata.get("labels") or {}, "annotations": annotations,
                "original": json.loads(stored) if stored else None}
    diff = value_diff(part(want), part(got), "kruise metadata", "graylane metadata")
    return [diff] if diff else []


def explain(original: dict, strategy: dict, graylane: Optional[dict], graylane_error: Optional[str],
            kruise: dict) -> Verdict:
    """Compare graylane's rendered object with Kruise's result for one case.

    ``strategy``: {"weight": int|None, "matches": int (how many), "modifier": dict|None, "stable": str,
    "canary": str}; ``kruise``: the peer's result (routed, object, error).
    """
    verdict = Verdict()
    stable, canary = strategy["stable"], strategy["canary"]
    if not kruise.get("routed"):
        if graylane_error or not same_value(graylane, original):
            verdict.problems.append("Kruise leaves the object alone (no weight, no matches); graylane changed it: "
                                    + (graylane_error or value_diff(original, graylane, "original", "graylane")))
        return verdict
    original_spec = original.get("spec") or {}
    if original["kind"] == "DestinationRule":
        if kruise.get("error") and not isinstance(original_spec.get("subsets"), list) and graylane is not None \
                and [s.get("name") for s in graylane["spec"].get("subsets") or []] == [CANARY]:
            verdict.fixes.add("existing-canary-updated")
            return verdict
        subsets = original_spec.get("subsets")
        if isinstance(subsets, list) and any(s.get("name") == CANARY for s in subsets) and graylane is not None \
                and not kruise.get("error"):
            # Kruise appends a second "canary"; graylane gives the existing one Kruise's labels
            verdict.fixes.add("existing-canary-updated")
            added = kruise["object"]["spec"]["subsets"][-1]
            expected = [added if s.get("name") == CANARY else s for s in subsets]
            diff = value_diff(dict(kruise["object"]["spec"], subsets=expected), graylane["spec"],
                              "kruise spec (one canary)", "graylane spec")
            if diff:
                verdict.problems.append(diff)
            return verdict
    if graylane_error is not None:
        if strategy["matches"] and "sends traffic to service" in graylane_error \
                and not any(_routes_to(r, stable) for r in original_spec.get("http") or []):
            verdict.fixes.add("refuse-unrouted-service")
        else:
            verdict.problems.append(f"graylane failed: {graylane_error}; Kruise: {kruise.get('error') or 'ok'}")
        return verdict
    if kruise.get("error"):
        verdict.problems.append(f"Kruise failed: {kruise['error']}; graylane rendered the object")
        return verdict
    want, got = kruise["object"], graylane
    verdict.problems.extend(_metadata_diff(got, want))
    if original["kind"] == "VirtualService":
        if strategy["matches"]:
            _compare_matches(original_spec, got["spec"], want["spec"], strategy["matches"], stable, canary, verdict)
            rest = lambda spec: {k: v for k, v in spec.items() if k != "http"}  # noqa: E731
            diff = value_diff(rest(want["spec"]), rest(got["spec"]), "kruise spec", "graylane spec")
            if diff:
                verdict.problems.append(diff)
        else:
            _compare_weights(original_spec, got["spec"], want["spec"], strategy, stable, canary, verdict)
        return verdict
    diff = value_diff(want["spec"], got["spec"], "kruise spec", "graylane spec")
    if diff:
        verdict.problems.append(diff)
    return verdict
