"""Kruise compatibility without Kruise's code: the harness compares decoded values, matches take precedence
over weight (render, plan, validate), v1alpha1 path/queryParams are flagged, steps without weight or
matches change nothing. (The parity suite in tests/parity/ checks the same against Kruise's own code.)"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from engine.routing.harness import canonical, same_value, value_diff
from helpers import run_graylane

VS = {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
      "metadata": {"name": "web", "namespace": "default"},
      "spec": {"hosts": ["web"], "http": [{"route": [{"destination": {"host": "web"}}]}]}}


def traffic_routing(strategy: dict, api_version: str = "rollouts.kruise.io/v1alpha1") -> dict:
    return {"apiVersion": api_version, "kind": "TrafficRouting", "metadata": {"name": "tr", "namespace": "default"},
            "spec": {"objectRef": [{"service": "web", "customNetworkRefs": [
                {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "name": "web"}]}],
                "strategy": strategy}}


def write(tmp_path: Path, *objects: dict) -> str:
    path = tmp_path / "in.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    return str(path)


def test_same_value_is_semantic():
    assert same_value({"a": 1, "b": [1, {"c": 2.0}]}, {"b": [1.0, {"c": 2}], "a": 1})
    assert not same_value([1, 2], [2, 1])
    assert not same_value(True, 1) and not same_value(0, False) and not same_value("1", 1)
    assert not same_value({"a": None}, {}) and not same_value({}, [])


def test_value_diff_is_readable_and_key_order_free():
    assert value_diff({"match": 1, "headers": 2}, {"headers": 2, "match": 1}) == ""
    diff = value_diff({"b": 1, "a": [1, 2]}, {"a": [1, 3], "b": 1}, "want", "got")
    assert diff.splitlines()[:2] == ["--- want", "+++ got"] and "-- 2" in diff and "+- 3" in diff
    assert "1" in value_diff({"a": 1}, {"a": True}) and canonical({"b": 2.0, "a": 1}) == {"a": 1, "b": 2}


def test_harness_ignores_map_key_order(tmp_path: Path):
    script = tmp_path / "networking.istio.io" / "VirtualService"
    (script / "testdata").mkdir(parents=True)
    (script / "trafficRouting.lua").write_text(
        "local spec = obj.data.spec\n"
        "table.insert(spec.http, 1, {match = {{headers = {a = {exact = 'b'}}}}, route = {{destination = "
        "{host = obj.canaryService, subset = 'canary'}}}})\nreturn obj.data\n")
    expected = json.loads(json.dumps(VS))
    expected["spec"]["http"].insert(0, {"route": [{"destination": {"subset": "canary", "host": "web"}}],
                                        "match": [{"headers": {"a": {"exact": "b"}}}]})
    case = {"trafficRouting": traffic_routing({"matches": [{"headers": [{"name": "a", "value": "b"}]}]}),
            "original": VS, "expected": [expected]}
    (script / "testdata" / "case.yaml").write_text(yaml.safe_dump(case, sort_keys=False))
    result = run_graylane("test", str(tmp_path))
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip().endswith("1 passed, 0 failed")
    expected["spec"]["http"][0]["route"][0]["destination"]["subset"] = "other"
    (script / "testdata" / "case.yaml").write_text(yaml.safe_dump(case, sort_keys=False))
    result = run_graylane("test", str(tmp_path))
    assert result.returncode == 1
    assert "-        subset: other" in result.stdout and "+        subset: canary" in result.stdout


def test_matches_take_precedence_over_weight(tmp_path: Path):
    strategy = {"weight": 10, "matches": [{"headers": [{"name": "x-canary", "value": "always"}]}]}
    path = write(tmp_path, traffic_routing(strategy), VS)
    # --force: the inputs hold no DestinationRule defining subset canary (GL0402), beside the point here
    result = run_graylane("render", "-f", path, "--force")
    assert result.returncode == 0, result.stderr
    http = [d for d in yaml.safe_load_all(result.stdout)][0]["spec"]["http"]
    assert http == [{"match": [{"headers": {"x-canary": {"exact": "always"}}}],
                     "route": [{"destination": {"host": "web", "subset": "canary"}}]},
                    {"route": [{"destination": {"host": "web"}}]}]
    plan = run_graylane("plan", "-f", path, "--color", "never", "--force")
    assert "traffic 10% ignored (matches take precedence)" in plan.stdout
    validate = run_graylane("validate", "-f", path, "-o", "json")
    found = [(f["code"], f["path"]) for f in json.loads(validate.stdout)]
    assert ("GL0305", "spec.strategy.weight") in found


def test_weight_alone_or_matches_alone_give_no_precedence_warning(tmp_path: Path):
    for strategy in ({"weight": 10}, {"matches": [{"headers": [{"name": "a", "value": "b"}]}]}):
        validate = run_graylane("validate", "-f", write(tmp_path, traffic_routing(strategy), VS), "-o", "json")
        assert "GL0305" not in {f["code"] for f in json.loads(validate.stdout)}


def test_rollout_step_traffic_with_matches_warns(tmp_path: Path):
    rollout = {"apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout",
               "metadata": {"name": "ro", "namespace": "default"},
               "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                        "strategy": {"canary": {"steps": [
                            {"traffic": "20%"},
                            {"traffic": "50%", "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}]}],
                            "trafficRoutings": [{"service": "web", "customNetworkRefs": [
                                {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                                 "name": "web"}]}]}}}}
    validate = run_graylane("validate", "-f", write(tmp_path, rollout, VS), "-o", "json")
    found = {(f["code"], f["path"]) for f in json.loads(validate.stdout)}
    assert found & {("GL0305", "spec.strategy.canary.steps[1].traffic")}
    assert not {code for code, _ in found} & {"GL0306"}  # v1beta1 keeps path matches


def test_v1alpha1_path_and_query_are_flagged_not_portable(tmp_path: Path):
    strategy = {"matches": [{"headers": [{"name": "a", "value": "b"}], "queryParams": [{"name": "q", "value": "1"}]},
                            {"path": {"value": "/api"}}]}
    validate = run_graylane("validate", "-f", write(tmp_path, traffic_routing(strategy), VS))
    assert validate.returncode == 0
    lines = [line for line in validate.stdout.splitlines() if " GL0306 " in line]
    assert [line.split()[3] for line in lines] == ["spec.strategy.matches[0].queryParams:",
                                                    "spec.strategy.matches[1].path:"]
    assert all(line.startswith("warning ") and "Kruise" in line for line in lines)


def test_step_without_weight_or_matches_leaves_objects_alone(tmp_path: Path):
    result = run_graylane("render", "-f", write(tmp_path, traffic_routing({}), VS), "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == VS
