"""`graylane plan` tells the truth: for every sample, every routing and every step, each row of the plan equals
the split of what `graylane render` produces for that step (computed here from render's output, with Istio's
weight rules), and the plan's objects are render's objects."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from helpers import SAMPLES, run_graylane

ROUTING_KINDS = {"TrafficRouting", "Rollout"}


def documents(directory: Path) -> list[dict]:
    found = []
    for path in sorted(directory.glob("*.yaml")):
        found += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return found


def routes_traffic(document: dict) -> bool:
    if document.get("kind") == "TrafficRouting":
        return True
    return document.get("kind") == "Rollout" and bool(
        ((document.get("spec") or {}).get("strategy") or {}).get("canary", {}).get("trafficRoutings"))


def cases() -> list:
    found = []
    for directory in sorted(p for p in SAMPLES.iterdir() if p.is_dir()):
        for routing in (d for d in documents(directory) if routes_traffic(d)):
            steps = len(routing["spec"]["strategy"]["canary"]["steps"]) if routing["kind"] == "Rollout" else 1
            for step in range(1, steps + 1):
                found.append(pytest.param(directory, routing, step,
                                          id=f"{directory.name}-{routing['metadata']['name']}-{step}"))
    return found


def services(routing: dict) -> tuple[str, str]:
    """(stable, canary) as Kruise picks them."""
    if routing["kind"] == "TrafficRouting":
        service = routing["spec"]["objectRef"][0]["service"]
        return service, service
    canary = routing["spec"]["strategy"]["canary"]
    service = canary["trafficRoutings"][0]["service"]
    return service, service if canary.get("disableGenerateCanaryService") else f"{service}-canary"


def expected_rows(objects: list[dict], routing: dict) -> list[dict]:
    """Each route rule's percent to the stable service, the canary and elsewhere, from the rendered objects."""
    stable, canary = services(routing)
    rows = []
    for body in objects:
        if body["kind"] != "VirtualService":
            continue
        for protocol in ("http", "tcp", "tls"):
            for index, rule in enumerate(body["spec"].get(protocol) or []):
                entries = rule.get("route") or []
                if not entries:
                    continue
                weights = [entry.get("weight") or 0 for entry in entries]
                if not sum(weights):
                    weights = [1] * len(entries)
                shares = {"stable": Fraction(0), "canary": Fraction(0), "other": Fraction(0)}
                for entry, weight in zip(entries, weights):
                    host = entry["destination"]["host"].split(".")[0]
                    subset = entry["destination"].get("subset")
                    if stable == canary:
                        kind = "other" if host != stable else "canary" if subset == "canary" else "stable"
                    else:
                        kind = "canary" if host == canary else "stable" if host == stable else "other"
                    shares[kind] += Fraction(100 * weight, sum(weights))
                rows.append({"object": f"VirtualService/{body['metadata']['name']}",
                             "rule": f"{protocol}[{index}]" + (f" {rule['name']}" if rule.get("name") else ""),
                             **{k: round(float(v), 2) for k, v in shares.items()}})
    return rows


@pytest.mark.parametrize("directory,routing,step", cases())
def test_every_plan_row_equals_what_render_produces(tmp_path, directory, routing, step):
    others = [d for d in documents(directory) if d.get("kind") not in ROUTING_KINDS]
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text(yaml.safe_dump_all([routing, *others], sort_keys=False))
    flags = ["--step", str(step), "--force"]  # --force: samples/misconfigured is meant to fail requests
    rendered = run_graylane("render", "-f", str(inputs), "-o", "json", *flags)
    assert rendered.returncode == 0, rendered.stderr
    data = json.loads(rendered.stdout)
    objects = data["items"] if data.get("kind") == "List" else [data]
    planned = run_graylane("plan", "-f", str(inputs), "-o", "json", *flags)
    assert planned.returncode == 0, planned.stderr
    plans = json.loads(planned.stdout)
    plan = next(p for p in plans if p["step"] in (step, None))
    rows = [{k: row[k] for k in ("object", "rule", "stable", "canary", "other")} for row in plan["split"]]
    assert rows == expected_rows(objects, routing)
    assert plan["objects"] == objects


def test_plan_counts_a_canary_destination_the_original_already_lists(tmp_path):
    """The issue's case: the original route lists subset canary with weight 0; step 10% -> 90 / 10, as render."""
    vs = {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
          "metadata": {"name": "reviews", "namespace": "bookinfo"},
          "spec": {"hosts": ["reviews"], "http": [{"route": [
              {"destination": {"host": "reviews", "subset": "stable"}, "weight": 100},
              {"destination": {"host": "reviews", "subset": "canary"}, "weight": 0}]}]}}
    rollout = {"apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout",
               "metadata": {"name": "reviews", "namespace": "bookinfo"},
               "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "reviews"},
                        "strategy": {"canary": {"disableGenerateCanaryService": True, "steps": [{"traffic": "10%"}],
                                                "trafficRoutings": [{"service": "reviews", "customNetworkRefs": [
                                                    {"apiVersion": "networking.istio.io/v1beta1",
                                                     "kind": "VirtualService", "name": "reviews"}]}]}}}}
    dr = {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
          "metadata": {"name": "reviews", "namespace": "bookinfo"},
          "spec": {"host": "reviews", "subsets": [{"name": "stable", "labels": {"version": "v1"}},
                                                  {"name": "canary", "labels": {"version": "v2"}}]}}
    (tmp_path / "in.yaml").write_text(yaml.safe_dump_all([rollout, vs, dr], sort_keys=False))
    plan = run_graylane("plan", "-f", str(tmp_path / "in.yaml"))
    assert plan.returncode == 0, plan.stderr
    assert "1/1   traffic 10%  VirtualService/reviews  http[0]  *      90%     10%" in plan.stdout
    render = run_graylane("render", "-f", str(tmp_path / "in.yaml"), "-o", "json")
    route = json.loads(render.stdout)["spec"]["http"][0]  # the one object render changes
    assert [entry["weight"] for entry in route["route"]] == [90, 10]
