"""The Kruise peer itself: its timing mode (used by the benchmark) repeats exactly the provider's Lua path."""
from __future__ import annotations

import pytest

from engine.routing.harness import value_diff
from kruisepeer import peer_case, run_peer
from peerlib import peer_binary

pytestmark = pytest.mark.parity


def test_timing_mode_gives_ensure_routes_result(kruise_cases):
    binary = peer_binary("kruise")
    routed = [c for c in kruise_cases[:60]]
    inputs = [peer_case(c.id, c.routing, c.object, c.step) for c in routed]
    ensured, timed = run_peer(binary, inputs), run_peer(binary, inputs, mode="time", iterations=3)
    compared = 0
    for case in routed:
        full, fast = ensured[case.id], timed[case.id]
        if not full["routed"] or full.get("error"):
            continue
        assert not fast.get("error") and fast["nsPerCall"] > 0 and fast["iterations"] == 3
        metadata = full["object"]["metadata"]
        labels, annotations = metadata.get("labels"), dict(metadata.get("annotations") or {})
        annotations.pop("rollouts.kruise.io/original-spec-configuration")
        want = {"spec": full["object"]["spec"], "labels": labels, "annotations": annotations or None}
        got = {key: fast["object"].get(key) for key in ("spec", "labels", "annotations")}
        assert not value_diff(want, got), value_diff(want, got)
        compared += 1
    assert compared >= 30
