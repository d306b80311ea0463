"""The fix recognisers themselves (pure Python, no Kruise code): a documented fix is recognised by name, and
the same change in the wrong place is not."""
from __future__ import annotations

import copy

from kruise_fixes import explain

ORIGINAL = {"kind": "VirtualService", "spec": {"hosts": ["reviews"], "http": [
    {"match": [{"uri": {"prefix": "/api"}}], "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
    {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]}}
STRATEGY = {"weight": None, "matches": 1, "modifier": None, "stable": "reviews", "canary": "reviews"}
LANE = {"headers": {"my-request-id": {"exact": "canary"}}}
CANARY_ROUTE = [{"destination": {"host": "reviews", "subset": "canary"}}]


def kruise_result() -> dict:
    """Kruise: one rule on top, matching the lane only."""
    spec = copy.deepcopy(ORIGINAL["spec"])
    spec["http"].insert(0, {"match": [LANE], "route": CANARY_ROUTE})
    return {"routed": True, "object": {"metadata": {}, "spec": spec}}


def graylane_lanes(scope_first: bool = True) -> dict:
    """The lanes change: a lane rule before each stable rule, scoped to that rule's matches."""
    spec = copy.deepcopy(ORIGINAL["spec"])
    scoped = {"match": [{**LANE, "uri": {"prefix": "/api"}}] if scope_first else [LANE], "route": CANARY_ROUTE}
    spec["http"] = [scoped, spec["http"][0], {"match": [LANE], "route": CANARY_ROUTE}, spec["http"][1]]
    return {"metadata": {}, "spec": spec}


def test_lane_rules_scoped_to_each_stable_rule_are_recognised():
    verdict = explain(ORIGINAL, STRATEGY, graylane_lanes(), None, kruise_result())
    assert verdict.ok, verdict.problems
    assert verdict.fixes == {"lane-rules-scoped"}


def test_unscoped_lane_rule_before_a_matching_rule_is_not_a_fix():
    verdict = explain(ORIGINAL, STRATEGY, graylane_lanes(scope_first=False), None, kruise_result())
    assert not verdict.ok


def test_identical_output_needs_no_fix():
    """A VirtualService with one catch-all route: graylane's lane rule is Kruise's, on top."""
    original = {"kind": "VirtualService", "spec": {"hosts": ["reviews"], "http": [ORIGINAL["spec"]["http"][1]]}}
    spec = copy.deepcopy(original["spec"])
    spec["http"].insert(0, {"match": [LANE], "route": CANARY_ROUTE})
    result = {"routed": True, "object": {"metadata": {}, "spec": spec}}
    verdict = explain(original, STRATEGY, copy.deepcopy(result["object"]), None, result)
    assert verdict.ok and verdict.fixes == set()


def test_kruise_layout_before_a_rule_with_matches_is_not_a_fix():
    """Kruise's own output (the bare lane on top) is not graylane's when a stable rule has matches."""
    result = kruise_result()
    assert not explain(ORIGINAL, STRATEGY, copy.deepcopy(result["object"]), None, result).ok


SHARED = {"kind": "VirtualService", "spec": {"hosts": ["reviews"], "http": [{"route": [
    {"destination": {"host": "reviews", "port": {"number": 9080}}, "weight": 80},
    {"destination": {"host": "ratings"}, "weight": 20}]}]}}
MODIFIER = {"set": [{"name": "x-lane", "value": "gray"}]}
HOST_LEVEL = {"weight": None, "matches": 1, "modifier": MODIFIER, "stable": "reviews", "canary": "reviews-canary"}


def shared_kruise() -> dict:
    spec = copy.deepcopy(SHARED["spec"])
    spec["http"].insert(0, {"match": [{"headers": {"X-Lane": {"exact": "gray"}}}],
                            "headers": {"request": {"set": {"x-lane": "gray"}}},
                            "route": [{"destination": {"host": "reviews-canary"}}]})
    return {"routed": True, "object": {"metadata": {}, "spec": spec}}


def shared_graylane(canary_weight: int = 80, modifier_on: str = "destination") -> dict:
    """The lane keeps ratings' share; the modifier goes on the canary destination; the port is copied."""
    spec = copy.deepcopy(SHARED["spec"])
    canary = {"destination": {"host": "reviews-canary", "port": {"number": 9080}}, "weight": canary_weight}
    lane = {"match": [{"headers": {"x-lane": {"exact": "gray"}}}],
            "route": [canary, {"destination": {"host": "ratings"}, "weight": 100 - canary_weight}]}
    headers = {"request": {"set": {"x-lane": "gray"}}}
    (canary if modifier_on == "destination" else lane)["headers"] = headers
    spec["http"].insert(0, lane)
    return {"metadata": {}, "spec": spec}


def test_lane_rule_keeping_other_shares_with_the_modifier_on_the_canary_is_recognised():
    verdict = explain(SHARED, HOST_LEVEL, shared_graylane(), None, shared_kruise())
    assert verdict.ok, verdict.problems
    assert verdict.fixes == {"lane-keeps-other-shares", "lane-modifier-on-canary", "canary-port",
                             "header-names-lowercased"}


def test_lane_shares_and_modifier_must_have_the_exact_shape():
    assert not explain(SHARED, HOST_LEVEL, shared_graylane(canary_weight=79), None, shared_kruise()).ok
    assert not explain(SHARED, HOST_LEVEL, shared_graylane(modifier_on="rule"), None, shared_kruise()).ok


def test_empty_modifier_written_as_an_empty_request_is_recognised():
    original = {"kind": "VirtualService", "spec": {"http": [{"route": [{"destination": {"host": "reviews"}}]}]}}
    strategy = dict(HOST_LEVEL, modifier={})
    lane = {"match": [{"headers": {"x-lane": {"exact": "gray"}}}],
            "route": [{"destination": {"host": "reviews-canary"}}]}
    kruise_spec = {"http": [dict(lane, headers={"request": None}), *original["spec"]["http"]]}
    kruise = {"routed": True, "object": {"metadata": {}, "spec": kruise_spec}}
    good = {"metadata": {}, "spec": {"http": [dict(lane, headers={"request": {}}), *original["spec"]["http"]]}}
    verdict = explain(original, strategy, good, None, kruise)
    assert verdict.ok and verdict.fixes == {"empty-modifier-request"}, verdict.problems
    bad = {"metadata": {}, "spec": {"http": [lane, *original["spec"]["http"]]}}
    assert not explain(original, strategy, bad, None, kruise).ok


def test_refusing_a_service_behind_a_catch_all_rule_is_recognised():
    original = {"kind": "VirtualService", "spec": {"http": [
        {"route": [{"destination": {"host": "ratings"}}]}, {"route": [{"destination": {"host": "reviews"}}]}]}}
    error = ("object.yaml: document 1: VirtualService default/vs: the http routes to service reviews come after "
             "http[0], which takes every request first, so no lane rule can catch a request meant for reviews")
    kruise = {"routed": True, "object": {"metadata": {}, "spec": original["spec"]}}
    verdict = explain(original, HOST_LEVEL, None, error, kruise)
    assert verdict.ok and verdict.fixes == {"refuse-unreachable-service"}
    reachable = {"kind": "VirtualService", "spec": {"http": list(reversed(original["spec"]["http"]))}}
    assert not explain(reachable, HOST_LEVEL, None, error, kruise).ok


def test_weights_that_do_not_sum_to_100_are_not_excused():
    original = {"kind": "VirtualService", "spec": {"http": [{"route": [
        {"destination": {"host": "reviews"}, "weight": 50}, {"destination": {"host": "ratings"}, "weight": 50}]}]}}
    strategy = {"weight": 33, "matches": 0, "modifier": None, "stable": "reviews", "canary": "reviews-canary"}
    kruise = {"routed": True, "object": {"metadata": {}, "spec": {"http": [{"route": [
        {"destination": {"host": "reviews"}, "weight": 33}, {"destination": {"host": "ratings"}, "weight": 33},
        {"destination": {"host": "reviews-canary"}, "weight": 33}]}]}}}
    good = copy.deepcopy(kruise["object"])
    good["spec"]["http"][0]["route"][0]["weight"] = 34
    verdict = explain(original, strategy, good, None, kruise)
    assert verdict.ok and verdict.fixes == {"weights-sum-to-100"}
    bad = copy.deepcopy(kruise["object"])
    bad["spec"]["http"][0]["route"][2]["weight"] = 34
    assert not explain(original, strategy, bad, None, kruise).ok


NAMESPACED = {"kind": "VirtualService", "spec": {"hosts": ["reviews"], "http": [
    {"route": [{"destination": {"host": "reviews.default"}}]}]}}
WEIGHT = {"weight": 20, "matches": 0, "modifier": None, "stable": "reviews", "canary": "reviews-canary"}


def namespaced_kruise() -> dict:
    """Kruise takes reviews.default for reviews (its first label) and splits it."""
    spec = copy.deepcopy(NAMESPACED["spec"])
    spec["http"][0]["route"] = [{"destination": {"host": "reviews.default"}, "weight": 80},
                                {"destination": {"host": "reviews-canary"}, "weight": 20}]
    return {"routed": True, "object": {"metadata": {}, "spec": spec}}


def test_a_host_istio_takes_literally_left_alone_is_recognised():
    graylane = {"metadata": {}, "spec": copy.deepcopy(NAMESPACED["spec"])}
    verdict = explain(NAMESPACED, WEIGHT, graylane, None, namespaced_kruise())
    assert verdict.ok and verdict.fixes == {"istio-host-resolution"}, verdict.problems


def test_a_matches_refusal_naming_the_fqdn_is_recognised_and_one_without_it_is_not():
    strategy = {**WEIGHT, "weight": None, "matches": 1}
    said = ("no route of this VirtualService sends traffic to service reviews (Istio takes host reviews.default "
            "literally, so it names no Service: write reviews.default.svc.cluster.local, or the short name reviews "
            "in the Service's namespace)")
    verdict = explain(NAMESPACED, strategy, None, said, namespaced_kruise())
    assert verdict.ok and verdict.fixes == {"istio-host-resolution"}
    bare = "no route of this VirtualService sends traffic to service reviews"
    assert not explain(NAMESPACED, strategy, None, bare, namespaced_kruise()).ok


def test_changing_a_host_istio_takes_literally_is_not_a_fix():
    """graylane splitting reviews.default as Kruise does would route to a host that names no Service."""
    result = namespaced_kruise()
    assert not explain(NAMESPACED, WEIGHT, copy.deepcopy(result["object"]), None, result).ok
