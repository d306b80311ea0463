"""The documented differences between graylane's built-in Istio scripts and Kruise's, recognised by name.

``explain(case, graylane, kruise)`` compares one case's outputs. Every difference must be one of FIXES (each a
deliberate fix of a Kruise defect, listed in the README's "Compatibility with Kruise" section) and hold exactly
as documented; anything else is reported as unexplained. The recognisers rebuild one side in the other's form
one fix at a time and then demand equality, so a fix can only excuse its own difference: Kruise's split from
graylane's, and graylane's lane rules from Kruise's match rule and the original rule each is placed before
(the script's lane model: scoping, shares, modifier placement, copied fields). Lane combinations that no
request can satisfy (the script leaves them out) are not modelled: a case with one would fail here.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Optional

from engine.routing.harness import same_value, value_diff

ORIGINAL = "rollouts.kruise.io/original-spec-configuration"
CANARY = "canary"
COPIED_RULE_FIELDS = ("rewrite", "timeout", "retries", "corsPolicy", "fault", "mirror", "mirrors", "mirrorPercentage",
                      "mirrorPercent")

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
    "refuse-unrouted-service": "a VirtualService with no route to the service is refused (Kruise returns it "
                               "unchanged, so the release shifts nothing; validate reports GL0302)",
    "refuse-unreachable-service": "a VirtualService whose http routes to the service all come after a rule "
                                  "taking every request is refused for matches",
    "lane-rules-scoped": "lane rules are placed before each rule that routes to the stable service and scoped "
                         "to that rule's own matches",
    "lane-keeps-other-shares": "a lane rule routes the stable service's share of its rule to the canary and keeps "
                               "other services' shares (Kruise sends all of the lane to the canary)",
    "lane-modifier-on-canary": "in a lane rule that keeps other services' shares, the requestHeaderModifier goes on "
                               "the canary destination's headers, not the rule's",
    "empty-modifier-request": "an empty requestHeaderModifier gives headers: {request: {}} (Kruise's JSON encoder "
                              "writes the empty table as request: null)",
    "weighted-canary-headers": "the weighted canary destination carries the requestHeaderModifier (Kruise applies "
                               "it to match rules only)",
    "istio-host-resolution": "a destination host name.ns or name.ns.svc is not the stable service (Istio takes a "
                             "host with a dot literally, so it names no Service): weights leave it alone, and a "
                             "VirtualService that routes the service only so is refused with the host to write "
                             "(Kruise compares the first label)",
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


def _unexpanded(host: Any, service: str) -> Optional[str]:
    """``service.ns`` or ``service.ns.svc`` (Kruise's first-label view names the service; Istio's names none): the
    FQDN to write, else None."""
    labels = host.split(".") if isinstance(host, str) else []
    if labels[:1] != [service] or not (len(labels) == 2 or (len(labels) == 3 and labels[2] == "svc")):
        return None
    return f"{labels[0]}.{labels[1]}.svc.cluster.local"


def _unexpanded_stable_only(spec: dict, stable: str) -> Optional[str]:
    """The FQDN to write when every destination Kruise takes for the stable service is written ``name.ns`` or
    ``name.ns.svc`` (so under Istio's rules none is), else None."""
    hosts = [(entry.get("destination") or {}).get("host") for protocol in ("http", "tcp", "tls")
             for rule in spec.get(protocol) or [] if isinstance(rule, dict)
             for entry in rule.get("route") or [] if isinstance(entry, dict)]
    stable_hosts = [h for h in hosts if service_of(h) == stable]
    written = [_unexpanded(h, stable) for h in stable_hosts]
    return written[0] if written and all(written) else None


def _routes_to(rule: dict, service: str) -> bool:
    return any(service_of((entry.get("destination") or {}).get("host")) == service
               for entry in rule.get("route") or [] if isinstance(entry, dict))


def _is_canary(destination: dict, stable: str, canary: str) -> bool:
    if stable == canary:
        return service_of(destination.get("host")) == stable and destination.get("subset") == CANARY
    return service_of(destination.get("host")) == canary


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


def _routes_to_stable(rule: dict, stable: str, canary: str) -> bool:
    """graylane's routesToStable: a destination of the stable service that is not the canary."""
    return any(service_of((e.get("destination") or {}).get("host")) == stable
               and not _is_canary(e.get("destination") or {}, stable, canary)
               for e in rule.get("route") or [] if isinstance(e, dict))


def _catches_all(rule: dict) -> bool:
    """A rule Istio never looks past: no match, or a match without conditions."""
    matches = rule.get("match")
    return not matches or any(not (set(m) - {"name", "statPrefix", "ignoreUriCase"}) for m in matches)


def largest_remainder(weights: list, target: int) -> list[int]:
    """Integer weights proportional to ``weights`` summing to ``target`` (the script's rounding)."""
    total = sum(weights)
    if total <= 0:
        weights, total = [1] * len(weights), len(weights)
    exact = [w * target / total for w in weights]
    result = [int(x // 1) for x in exact]
    order = sorted(range(len(weights)), key=lambda k: (-(exact[k] - result[k]), k))
    for k in order[:target - sum(result)]:
        result[k] += 1
    return result


def apply_modifier(headers: Optional[dict], modifier: Optional[dict]) -> Optional[dict]:
    """The script's applyModifier: the requestHeaderModifier written on top of Istio ``headers``."""
    if modifier is None:
        return headers
    headers = copy.deepcopy(headers) or {}
    request = headers.get("request") or {}
    for action in ("set", "add"):
        if modifier.get(action):
            request[action] = {**(request.get(action) or {}),
                               **{item["name"]: item["value"] for item in modifier[action]}}
    if modifier.get("remove"):
        request["remove"] = list(request.get("remove") or []) + list(modifier["remove"])
    headers["request"] = request
    return headers


def _lane_route(rule: dict, kruise_destination: dict, stable: str, canary: str, verdict: Verdict) -> tuple[list, dict]:
    """graylane's lane route for ``rule``: the stable service's share (and an existing canary's) on one canary
    destination where the first of them stood, other services' shares kept, weights summing to 100."""
    route = rule.get("route") or []
    explicit = any(e.get("weight") is not None for e in route)
    entries, weights, canary_index = [], [], None
    for entry in route:
        destination = entry.get("destination") or {}
        weight = (entry.get("weight") if isinstance(entry.get("weight"), (int, float)) else 0) if explicit else 1
        if service_of(destination.get("host")) == stable or _is_canary(destination, stable, canary):
            if canary_index is None:
                lane_destination = _graylane_destination(kruise_destination, destination, stable, canary, verdict)
                entries.append({"destination": lane_destination, "headers": copy.deepcopy(entry.get("headers"))})
                canary_index = len(entries) - 1
                weights.append(0)
            weights[canary_index] += weight
        else:
            entries.append(copy.deepcopy(entry))
            weights.append(weight)
    for entry in entries:
        if entry.get("headers") is None:
            entry.pop("headers", None)
    if len(entries) == 1:
        entries[0].pop("weight", None)
    else:
        verdict.fixes.add("lane-keeps-other-shares")
        for entry, weight in zip(entries, largest_remainder(weights, 100)):
            entry["weight"] = weight
    return entries, entries[canary_index]


def _graylane_destination(kruise_destination: dict, stable_destination: dict, stable: str, canary: str,
                          verdict: Verdict) -> dict:
    """Kruise's canary destination as graylane writes it beside ``stable_destination``: the stable host's form
    (canary-host-form) and port (canary-port)."""
    result = dict(kruise_destination)
    stable_host = stable_destination.get("host") or ""
    if stable == canary:
        host = stable_host
    elif "." in canary:
        host = canary
    else:
        host = canary + (stable_host[len(stable_host.split(".", 1)[0]):])
    if host != result.get("host"):
        verdict.fixes.add("canary-host-form")
        result["host"] = host
    if stable_destination.get("port") is not None:
        verdict.fixes.add("canary-port")
        result["port"] = copy.deepcopy(stable_destination["port"])
    return result


def _lowercased_match(kruise_match: dict, verdict: Verdict) -> dict:
    match = copy.deepcopy(kruise_match)
    headers = match.get("headers")
    if isinstance(headers, dict) and any(name != name.lower() for name in headers):
        verdict.fixes.add("header-names-lowercased")
        match["headers"] = {name.lower(): value for name, value in headers.items()}
    return match


def _expected_lane_rule(kruise_rule: dict, rule: dict, scope: dict, strategy: dict, stable: str, canary: str,
                        verdict: Verdict) -> dict:
    """Kruise's match rule as graylane writes it before ``rule``, each difference named as it is made."""
    modifier = strategy.get("modifier")
    kruise_headers = None if modifier is None else {"request": None} if modifier == {} else modifier_headers(modifier)
    kruise_shape = {"match": kruise_rule.get("match"),
                    "route": [{"destination": kruise_rule["route"][0]["destination"]}]}
    if kruise_headers is not None:
        kruise_shape["headers"] = kruise_headers
    if len(kruise_rule.get("match") or []) != 1 or not same_value(kruise_rule, kruise_shape):
        verdict.problems.append("Kruise's match rule is not one match, one destination and the modifier: "
                                + json.dumps(kruise_rule))
    kruise_destination = kruise_rule["route"][0]["destination"]
    route, canary_entry = _lane_route(rule, kruise_destination, stable, canary, verdict)
    expected: dict = {}
    for key in COPIED_RULE_FIELDS:
        if rule.get(key) is not None:
            verdict.fixes.add("copied-rule-fields")
            expected[key] = copy.deepcopy(rule[key])
    if len(route) == 1:
        headers = apply_modifier(rule.get("headers"), modifier)
    else:
        headers = copy.deepcopy(rule.get("headers"))
        canary_headers = apply_modifier(canary_entry.get("headers"), modifier)
        if canary_headers is not None:
            canary_entry["headers"] = canary_headers
        if modifier is not None:
            verdict.fixes.add("lane-modifier-on-canary")
    if rule.get("headers") is not None:
        verdict.fixes.add("copied-rule-fields")
    if headers is not None:
        expected["headers"] = headers
    if modifier == {} and len(route) == 1 and rule.get("headers") is None \
            and same_value(kruise_rule.get("headers"), {"request": None}):
        verdict.fixes.add("empty-modifier-request")  # Kruise's encoder writes the empty table as null
    match = _lowercased_match(kruise_rule["match"][0], verdict)
    expected["match"] = [_merge_match(match, scope)]
    expected["route"] = route
    return expected


def _compare_matches(original: dict, got: dict, want: dict, strategy_matches: int, strategy: dict, stable: str,
                     canary: str, verdict: Verdict) -> None:
    original_http, got_http, want_http = (original.get("http") or []), (got.get("http") or []), \
        (want.get("http") or [])
    kruise_rules = list(reversed(want_http[:strategy_matches]))
    if strategy_matches > 1 and not same_value(kruise_rules, want_http[:strategy_matches]):
        verdict.fixes.add("match-order-kept")
    if not same_value(want_http[strategy_matches:], original_http):
        verdict.problems.append("Kruise changed rules it did not insert (unexpected in the recogniser)")
        return
    expected, catch_all, kruise_layout = [], False, True
    for index, rule in enumerate(original_http):
        if not catch_all and _routes_to_stable(rule, stable, canary):
            if index > 0 or rule.get("match"):
                kruise_layout = False
            for scope in rule.get("match") or [{}]:
                for kruise_rule in kruise_rules:
                    expected.append(_expected_lane_rule(kruise_rule, rule, scope, strategy, stable, canary, verdict))
        expected.append(rule)
        catch_all = catch_all or _catches_all(rule)
    if not kruise_layout:
        verdict.fixes.add("lane-rules-scoped")
    diff = value_diff(expected, got_http, "expected spec.http", "graylane spec.http")
    if diff:
        verdict.problems.append(diff)


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
    unexpanded = _unexpanded_stable_only(original_spec, stable) if original["kind"] == "VirtualService" else None
    if unexpanded and not kruise.get("error"):
        if graylane_error is not None:  # refused: the routes name the service only so, and the error says how
            if "sends traffic to service" in graylane_error and unexpanded in graylane_error:
                verdict.fixes.add("istio-host-resolution")
            else:
                verdict.problems.append(f"graylane failed: {graylane_error}; Kruise: ok")
        elif graylane is not None and same_value(graylane.get("spec"), original_spec) and not strategy["matches"]:
            verdict.fixes.add("istio-host-resolution")
            verdict.problems.extend(_metadata_diff(graylane, kruise["object"]))
        else:
            verdict.problems.append("the stable service's hosts are all written name.ns or name.ns.svc, but "
                                    "graylane changed the object: " + value_diff(original_spec, (graylane or {})
                                                                                 .get("spec"), "original", "graylane"))
        return verdict
    if graylane_error is not None:
        http = original_spec.get("http") or []
        first_stable = next((i for i, r in enumerate(http) if _routes_to_stable(r, stable, canary)), None)
        protocols = ("http",) if "no http route" in graylane_error else ("http", "tcp", "tls")
        if "sends traffic to service" in graylane_error \
                and not any(_routes_to(r, stable) for protocol in protocols for r in original_spec.get(protocol) or []):
            verdict.fixes.add("refuse-unrouted-service")
        elif strategy["matches"] and first_stable is not None and any(_catches_all(r) for r in http[:first_stable]) \
                and f"the http routes to service {stable} come after http[" in graylane_error \
                and "which takes every request first" in graylane_error:
            verdict.fixes.add("refuse-unreachable-service")
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
            _compare_matches(original_spec, got["spec"], want["spec"], strategy["matches"], strategy, stable, canary,
                             verdict)
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
