"""Render (and plan, diff) refuse a result that would fail requests, name the fix, and render it with --force
(warnings on stderr, never on stdout); script errors name the input object. Through the real ``graylane``."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from helpers import SAMPLES, run_graylane

FULLLINK = SAMPLES / "fulllink"


def write(tmp_path: Path, name: str, documents: list[dict]) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def mocka_only_vs_routing(tmp_path: Path) -> Path:
    """The sample's TrafficRouting for mocka, referencing only the VirtualService (no DestinationRule)."""
    routing = yaml.safe_load((FULLLINK / "trafficrouting.yaml").read_text().split("\n---\n")[0])
    routing["spec"]["objectRef"][0]["customNetworkRefs"] = routing["spec"]["objectRef"][0]["customNetworkRefs"][:1]
    return write(tmp_path, "tr.yaml", [routing])


def sample_objects(tmp_path: Path, *, drop_kinds: tuple = (), with_gray: bool = True) -> Path:
    documents = [d for d in yaml.safe_load_all((FULLLINK / "mocka.yaml").read_text()) if d["kind"] not in drop_kinds]
    if with_gray:
        documents += [d for d in yaml.safe_load_all((FULLLINK / "gray.yaml").read_text())
                      if d["metadata"]["name"] == "mocka-gray"]
    return write(tmp_path, "mocka.yaml", documents)


def test_a_subset_no_destination_rule_defines_is_refused_with_the_fix(tmp_path):
    routing = mocka_only_vs_routing(tmp_path)
    objects = sample_objects(tmp_path, drop_kinds=("DestinationRule",))
    result = run_graylane("render", "-f", str(routing), "-f", str(objects))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        f"error: {objects}: document 3: spec.http[0].route[0].destination.subset: the traffic-routing script's output "
        "for VirtualService default/vs-mocka would fail requests: requests routed to subset 'canary' of mocka would all "
        "get 503: no DestinationRule for host mocka is among the inputs; reference the DestinationRule of mocka in the "
        "routing's customNetworkRefs (its script adds the canary subset) and give it among the inputs "
        "[GL0402 RenderedSubsetUndefined]; --force renders it anyway\n")
    forced = run_graylane("render", "-f", str(routing), "-f", str(objects), "--force", "-o", "json")
    assert forced.returncode == 0
    assert json.loads(forced.stdout)["spec"]["http"][0]["route"][0]["destination"] == {
        "host": "mocka", "subset": "canary"}
    assert forced.stderr.startswith(f"warning: {objects}: document 3: spec.http[0].route[0].destination.subset: ")
    assert forced.stderr.count("\n") == 1 and "[GL0402 RenderedSubsetUndefined]" in forced.stderr


def test_a_destination_rule_that_is_not_referenced_does_not_get_the_subset(tmp_path):
    routing = mocka_only_vs_routing(tmp_path)
    objects = sample_objects(tmp_path)
    result = run_graylane("render", "-f", str(routing), "-f", str(objects))
    assert result.returncode == 1 and result.stdout == ""
    assert "DestinationRule default/dr-mocka (host mocka) defines no subset 'canary'" in result.stderr
    # referencing it (as the sample does) adds the subset, and render goes through
    full = run_graylane("render", "-f", str(FULLLINK / "trafficrouting.yaml"), "-f", str(objects), "-f",
                        str(FULLLINK / "mockb.yaml"), "-f", str(FULLLINK / "gray.yaml"))
    assert full.returncode == 0, full.stderr
    assert full.stderr == ""


def test_a_subset_selecting_no_pods_is_refused_when_the_workloads_are_given(tmp_path):
    routing = FULLLINK / "trafficrouting.yaml"
    without_gray = sample_objects(tmp_path, with_gray=False)
    mockb = FULLLINK / "mockb.yaml"
    result = run_graylane("render", "-f", str(routing), "-f", str(without_gray), "-f", str(mockb))
    assert result.returncode == 1 and result.stdout == ""
    assert ("requests routed to subset 'canary' of mocka would all get 503 (no healthy upstream): it selects pods "
            "labelled {istio.service.tag: gray}, and no pod of the Service's workloads among the inputs has them "
            "(Deployment default/mocka-base {app: mocka, version: base})") in result.stderr
    assert "[GL0403 RenderedSubsetWithoutPods]; --force renders it anyway" in result.stderr
    # plan and diff refuse it the same way
    plan = run_graylane("plan", "-f", str(routing), "-f", str(without_gray), "-f", str(mockb))
    assert plan.returncode == 1 and plan.stdout == "" and "[GL0403" in plan.stderr
    diff = run_graylane("diff", "-f", str(routing), "-f", str(without_gray), "-f", str(mockb))
    assert diff.returncode == 2 and diff.stdout == "" and "[GL0403" in diff.stderr


def test_the_canary_pods_a_rollout_would_create_count(tmp_path):
    """A Rollout whose patchPodTemplateMetadata labels the canary pods istio.service.tag: gray makes them exist."""
    without_gray = sample_objects(tmp_path, with_gray=False)
    rollout = {"apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout",
               "metadata": {"name": "mocka", "namespace": "default"},
               "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mocka-base"},
                        "strategy": {"canary": {"steps": [{"replicas": 1}], "trafficRoutingRef": "mocka-tr",
                                                "patchPodTemplateMetadata": {"labels": {"istio.service.tag": "gray"}}}}}}
    rollouts = write(tmp_path, "rollout.yaml", [rollout])
    result = run_graylane("render", "-f", str(FULLLINK / "trafficrouting.yaml"), "-f", str(without_gray),
                          "-f", str(FULLLINK / "mockb.yaml"), "-f", str(FULLLINK / "gray.yaml"), "-f", str(rollouts))
    assert result.returncode == 0, result.stderr


def test_script_errors_name_the_input_object(tmp_path):
    scripts = tmp_path / "scripts" / "networking.istio.io" / "VirtualService"
    scripts.mkdir(parents=True)
    (scripts / "trafficRouting.lua").write_text("local spec = obj.data.spec\n\nerror('no routes for ' .. obj.stableService)\n")
    for command in ("render", "plan", "diff"):
        result = run_graylane(command, "-f", str(FULLLINK / "trafficrouting.yaml"), "-f", str(FULLLINK / "mocka.yaml"),
                              "-f", str(FULLLINK / "mockb.yaml"), "--lua-dir", str(tmp_path / "scripts"))
        assert result.returncode == (2 if command == "diff" else 1) and result.stdout == ""
        first, *details = result.stderr.splitlines()
        assert first == (f"error: {FULLLINK / 'mocka.yaml'}: document 3: VirtualService default/vs-mocka: "
                         f"script {scripts / 'trafficRouting.lua'}:3: no routes for mocka"), command
        assert details[0] == "  routed by TrafficRouting/mocka-tr", command  # then the line with a caret
