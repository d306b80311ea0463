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
    result = kruise_result()
    verdict = explain(ORIGINAL, STRATEGY, copy.deepcopy(result["object"]), None, result)
    assert verdict.ok and verdict.fixes == set()


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
