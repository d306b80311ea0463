"""Parity check 2: graylane's built-in Istio scripts give Kruise's output on the same inputs, except for the
documented fixes (kruise_fixes.FIXES), each recognised by name; any other difference fails."""
from __future__ import annotations

import collections
from pathlib import Path

import pytest
import yaml

from paritylib import graylane_render, strategy_summary
from engine.documents import Document
from engine.lua.sandbox import LuaSandbox
from engine.lua.scripts import builtin_layer
from engine.routing.render import network_result
from engine.routing.script_input import build_script_input, original_of
from engine.routing.strategy import plan, rollout_steps
from kruise_fixes import FIXES, explain
from kruisepeer import kruise_source

pytestmark = pytest.mark.parity

#: what the generated cases must cover (the issue's list of input shapes)
REQUIRED_TAGS = {"host:0", "host:1", "host:2", "host:3", "tcp", "tls", "several-stable", "uneven-weights", "other-service",
                 "existing-match", "match:headers", "match:path", "match:queryParams", "path:Exact",
                 "path:PathPrefix", "path:RegularExpression", "modifier:set", "modifier:add", "modifier:remove",
                 "modifier:empty", "subset-level", "trafficRouting", "rollout", "dr:subsets", "dr:empty-subsets",
                 "dr:no-subsets", "dr:existing-canary", "existing-canary", "port", "rule-fields", "no-stable-route", "labels", "annotations",
                 *(f"weight:{w}" for w in (0, 1, 5, 33, 50, 99, 100))}


def test_generated_cases_cover_the_input_shapes(kruise_cases):
    seen = set().union(*(case.tags for case in kruise_cases))
    assert REQUIRED_TAGS <= seen, f"not generated: {sorted(REQUIRED_TAGS - seen)}"


def test_builtin_scripts_differ_from_kruise_only_by_documented_fixes(kruise_cases, kruise_results, builtin_engine):
    failures, used = [], collections.Counter()
    for case in kruise_cases:
        got, error = graylane_render(case, builtin_engine)
        verdict = explain(case.object, strategy_summary(case), got, error, kruise_results[case.id])
        used.update(verdict.fixes)
        if not verdict.ok:
            failures.append(f"{case.id} ({', '.join(sorted(case.tags))}):\n" + "\n".join(verdict.problems))
    assert not failures, f"{len(failures)} case(s) differ beyond the documented fixes:\n\n" + "\n\n".join(failures[:6])
    assert set(used) <= set(FIXES)
    # every documented fix is seen at work
    assert set(FIXES) <= set(used), f"documented fixes never exercised: {sorted(set(FIXES) - set(used))}"


def _kruise_test_cases() -> list[tuple[str, Path]]:
    root = kruise_source() / "lua_configuration"
    return [(path.parent.parent.name, path) for path in sorted(root.glob("networking.istio.io/*/testdata/*.yaml"))]


def test_kruise_test_data_with_builtin_scripts():
    """Kruise's own five cases, run with graylane's built-in scripts: each step equals Kruise's expected object
    or differs from it only by a documented fix."""
    sandbox, scripts = LuaSandbox(), builtin_layer().scripts
    cases = _kruise_test_cases()
    assert len(cases) == 5
    fixes_seen, failures = collections.Counter(), []
    for kind, path in cases:
        case = yaml.safe_load(path.read_text())
        routing = Document(case.get("trafficRouting") or case["rollout"], str(path), 1)
        steps = [None] if "trafficRouting" in case else list(range(1, len(rollout_steps(routing)) + 1))
        original, _ = original_of(case["original"])
        for step, expected in zip(steps, case["expected"]):
            routing_plan = plan(routing, step)
            target = routing_plan.targets[0]
            obj = build_script_input(original, routing_plan.strategy, target.stable_service, target.canary_service)
            result = network_result(scripts[f"networking.istio.io/{kind}"],
                                    sandbox.run(scripts[f"networking.istio.io/{kind}"], obj).value)
            got = {"kind": kind, "metadata": {"labels": result.labels, "annotations": result.annotations},
                   "spec": result.spec}
            want = {"kind": kind, "metadata": {key: value for key, value in (expected.get("metadata") or {}).items()
                                               if key in ("labels", "annotations")}, "spec": expected["spec"]}
            summary = {"weight": routing_plan.strategy.weight, "matches": len(routing_plan.strategy.matches),
                       "modifier": routing_plan.strategy.request_header_modifier,
                       "stable": target.stable_service, "canary": target.canary_service}
            verdict = explain({"kind": kind, "spec": original.spec}, summary, got, None,
                              {"routed": True, "object": want})
            fixes_seen.update(verdict.fixes)
            if not verdict.ok:
                failures.append(f"{path.name} step {step}:\n" + "\n".join(verdict.problems))
    assert not failures, "\n\n".join(failures)
    assert set(fixes_seen) == {"match-order-kept"}
