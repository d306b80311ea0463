"""Argo Rollouts (argoproj.io/v1alpha1) with Istio, run as a user would: the Argo Rollouts guide's own examples
(samples/argo-rollouts/, from the reference document) render step by step with the weights the guide describes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import SAMPLES, run_graylane

ARGO = SAMPLES / "argo-rollouts"
ANNOTATION = "rollouts.kruise.io/original-spec-configuration"


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def render(*args: str) -> dict[str, dict]:
    result = run_graylane("render", *args)
    assert result.returncode == 0, result.stderr
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in docs(result.stdout)}


def weights(rule: dict) -> dict[str, int]:
    return {f"{e['destination']['host']}{'/' + e['destination']['subset'] if 'subset' in e['destination'] else ''}":
            e["weight"] for e in rule["route"]}


# The guide: setWeight 5 then pause 10m; the VirtualService starts at 100 stable / 0 canary.
@pytest.mark.parametrize("step", [1, 2])
def test_host_level_split_follows_the_guide(step):
    vs = render("-f", str(ARGO / "host-level"), "--step", str(step))["VirtualService/rollout-vsvc"]
    assert [r["name"] for r in vs["spec"]["http"]] == ["primary"]
    assert weights(vs["spec"]["http"][0]) == {"stable-svc": 95, "canary-svc": 5}
    assert vs["spec"]["gateways"] == ["istio-rollout-gateway"]  # nothing else of the object changes


@pytest.mark.parametrize("step", [1, 2])
def test_subset_level_split_follows_the_guide_and_writes_pod_template_hashes(step):
    objects = render("-f", str(ARGO / "subset-level"), "--step", str(step),
                     "--canary-hash", "7bf84f9696", "--stable-hash", "123746c88d")
    assert weights(objects["VirtualService/rollout-vsvc"]["spec"]["http"][0]) == \
        {"rollout-example/stable": 95, "rollout-example/canary": 5}
    dr = objects["DestinationRule/rollout-destrule"]
    assert dr["spec"]["subsets"] == [
        {"name": "canary", "labels": {"app": "rollout-example", "rollouts-pod-template-hash": "7bf84f9696"}},
        {"name": "stable", "labels": {"app": "rollout-example", "rollouts-pod-template-hash": "123746c88d"}}]
    assert dr["metadata"]["annotations"]["argo-rollouts.argoproj.io/managed-by-rollouts"] == "rollout-example"


def test_subset_level_without_hashes_leaves_the_labels_and_says_so():
    result = run_graylane("render", "-f", str(ARGO / "subset-level"))
    assert result.returncode == 0, result.stderr
    assert [o["kind"] for o in docs(result.stdout)] == ["VirtualService"]
    assert "no pod-template hashes" in result.stderr and "rollouts-pod-template-hash" in result.stderr


def test_hashes_come_from_the_rollouts_replicasets(tmp_path: Path):
    replica_sets = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                     "metadata": {"name": f"rollout-example-{h}", "labels": {"rollouts-pod-template-hash": h},
                                  "annotations": {"rollout.argoproj.io/revision": str(revision)},
                                  "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                                                       "name": "rollout-example", "uid": "1"}]}}
                    for h, revision in (("aaa111", 1), ("bbb222", 2))]
    (tmp_path / "rs.yaml").write_text(yaml.safe_dump_all(replica_sets))
    dr = render("-f", str(ARGO / "subset-level"), "-f", str(tmp_path))["DestinationRule/rollout-destrule"]
    hashes = {s["name"]: s["labels"]["rollouts-pod-template-hash"] for s in dr["spec"]["subsets"]}
    assert hashes == {"canary": "bbb222", "stable": "aaa111"}


@pytest.mark.parametrize("step", [1, 2])
def test_tcp_split_follows_the_guide(step):
    vs = render("-f", str(ARGO / "tcp"), "--step", str(step))["VirtualService/rollout-vsvc"]
    assert weights(vs["spec"]["tcp"][0]) == {"stable-svc": 95, "canary-svc": 5}
    assert vs["spec"]["tcp"][0]["match"] == [{"port": 3000}]


def test_managed_header_and_mirror_routes_accumulate_and_are_removed():
    def at(step: int) -> list[dict]:
        return render("-f", str(ARGO / "header-mirror"), "--step", str(step))["VirtualService/checkout"]["spec"]["http"]

    first = at(1)
    assert [r["name"] for r in first] == ["testers", "primary"]
    assert first[0]["match"] == [{"headers": {"x-tester": {"exact": "yes"}}}]
    assert first[0]["route"] == [{"destination": {"host": "checkout-canary", "port": {"number": 8080}}, "weight": 100}]
    third = at(3)
    assert [r["name"] for r in third] == ["testers", "mirror-api", "primary"]  # managedRoutes order, on top
    mirror = third[1]
    assert mirror["mirror"] == {"host": "checkout-canary", "port": {"number": 8080}}
    assert mirror["mirrorPercentage"] == {"value": 50}
    assert mirror["match"] == [{"method": {"exact": "GET"}, "uri": {"prefix": "/api"}}]
    assert weights(mirror) == {"checkout": 90, "checkout-canary": 10}   # the weights of the time
    assert weights(at(5)[1]) == {"checkout": 50, "checkout-canary": 50}  # and it follows setWeight
    assert [r["name"] for r in at(7)] == ["testers", "primary"]
    last = at(9)
    assert [r["name"] for r in last] == ["primary"] and last[0]["retries"] == {"attempts": 3}
    assert weights(last[0]) == {"checkout": 0, "checkout-canary": 100}


def test_plan_shows_every_step_including_the_ones_that_change_no_route():
    result = run_graylane("plan", "-f", str(ARGO / "header-mirror"), "-o", "json")
    assert result.returncode == 0, result.stderr
    plans = json.loads(result.stdout)
    assert [p["step"] for p in plans] == list(range(1, 10))
    assert plans[3]["description"] == "pause (until promoted) (weight 10%)"
    assert plans[5]["description"] == "analysis success-rate (no traffic change) (weight 50%)"
    primary = [s for s in plans[4]["split"] if s["rule"].endswith("primary")][0]
    assert (primary["stable"], primary["canary"]) == (50, 50)


@pytest.mark.parametrize("analysis", ["t", {"templates": 5}, {"templates": "success-rate"}])
def test_an_analysis_step_of_any_shape_is_described_without_a_crash(tmp_path: Path, analysis):
    """Found by the fuzz suite: ``analysis: t`` crashed the step description (validate, plan)."""
    rollout = yaml.safe_load((ARGO / "header-mirror" / "rollout.yaml").read_text())
    rollout["spec"]["strategy"]["canary"]["steps"][5] = {"analysis": analysis}
    (tmp_path / "rollout.yaml").write_text(yaml.safe_dump(rollout))
    inputs = ["-f", str(tmp_path / "rollout.yaml"), "-f", str(ARGO / "header-mirror" / "virtualservice.yaml")]
    result = run_graylane("plan", *inputs, "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[5]["description"] == "analysis (no traffic change) (weight 50%)"
    assert "Traceback" not in run_graylane("validate", *inputs).stderr


def test_route_without_canary_is_refused_with_argos_reason(tmp_path: Path):
    text = (ARGO / "host-level" / "virtualservice.yaml").read_text().replace("host: canary-svc", "host: other-svc")
    (tmp_path / "vs.yaml").write_text(text)
    result = run_graylane("render", "-f", str(ARGO / "host-level" / "rollout.yaml"), "-f", str(tmp_path / "vs.yaml"))
    assert result.returncode == 1 and result.stdout == ""
    assert "Canary Service 'canary-svc' not found in route" in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "rollout.yaml: document 1: spec.strategy.canary.trafficRouting.istio.virtualService" in result.stderr


def test_header_route_must_be_a_managed_route(tmp_path: Path):
    rollout = yaml.safe_load((ARGO / "header-mirror" / "rollout.yaml").read_text())
    del rollout["spec"]["strategy"]["canary"]["trafficRouting"]["managedRoutes"]
    (tmp_path / "rollout.yaml").write_text(yaml.safe_dump(rollout))
    result = run_graylane("render", "-f", str(tmp_path / "rollout.yaml"), "-f", str(ARGO / "header-mirror"))
    assert result.returncode == 1 and result.stdout == ""
    assert "steps[0].setHeaderRoute.name: route 'testers' must be listed in" in result.stderr


def test_rendering_a_rendered_step_gives_the_same_objects(tmp_path: Path):
    first = run_graylane("render", "-f", str(ARGO / "header-mirror"), "--step", "5")
    (tmp_path / "rendered.yaml").write_text(first.stdout)
    again = run_graylane("render", "-f", str(ARGO / "header-mirror" / "rollout.yaml"), "-f",
                         str(tmp_path / "rendered.yaml"), "--step", "5")
    assert again.returncode == 0 and again.stdout == first.stdout
    restored = run_graylane("restore", "-f", str(tmp_path / "rendered.yaml"))
    assert docs(restored.stdout) == docs((ARGO / "header-mirror" / "virtualservice.yaml").read_text())[:1]


def test_all_steps_writes_one_folder_per_step_with_deterministic_bytes(tmp_path: Path):
    for out in ("a", "b"):
        result = run_graylane("render", "-f", str(ARGO / "header-mirror"), "-f", str(SAMPLES / "weighted-canary"),
                              "--all-steps", "--output-dir", str(tmp_path / out))
        assert result.returncode == 0, result.stderr
    files = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*.yaml"))
    assert files[:2] == ["step-1/VirtualService.bookinfo.reviews.yaml", "step-1/VirtualService.shop.checkout.yaml"]
    assert len(files) == 18  # 9 steps; the 3-step Kruise Rollout stays at its last step
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    step5 = yaml.safe_load((tmp_path / "a" / "step-5" / "VirtualService.shop.checkout.yaml").read_text())
    single = render("-f", str(ARGO / "header-mirror"), "--step", "5")["VirtualService/checkout"]
    assert step5 == single
    kruise_last = yaml.safe_load((tmp_path / "a" / "step-9" / "VirtualService.bookinfo.reviews.yaml").read_text())
    assert kruise_last == render("-f", str(SAMPLES / "weighted-canary"), "--step", "3")["VirtualService/reviews"]


def test_all_steps_needs_output_dir():
    result = run_graylane("render", "-f", str(ARGO / "host-level"), "--all-steps")
    assert result.returncode == 1 and result.stdout == "" and "--output-dir" in result.stderr


def test_cluster_mode_desired_state_is_the_rendered_step(tmp_path: Path):
    """apply's offline part: from a live object (already at step 2) the desired state at step 5 is render's."""
    from engine import inputs
    from engine.documents import Document
    from engine.lua.scripts import ScriptLibrary, builtin_layer
    from engine.routing.argo.render import render_live
    from engine.routing.render import Engine
    from engine.routing.strategy import plan

    documents = inputs.read_documents([str(ARGO / "header-mirror")])
    rollout = next(d for d in documents if d.kind == "Rollout")
    live = render("-f", str(ARGO / "header-mirror"), "--step", "2")["VirtualService/checkout"]
    engine = Engine(ScriptLibrary([builtin_layer()]))
    desired = render_live(plan(rollout, 5), Document(live, "cluster", 1), engine, None)
    assert desired == render("-f", str(ARGO / "header-mirror"), "--step", "5")["VirtualService/checkout"]


def test_new_argo_rollout_validates_and_renders(tmp_path: Path):
    result = run_graylane("new", "argo-rollout", "rollout-example", "--workload", "Deployment/rollout-example",
                          "--virtual-service", "rollout-vsvc", "--route", "primary", "--destination-rule",
                          "rollout-destrule", "--steps", "5,50", "--header-route", "x-canary=yes")
    assert result.returncode == 0, result.stderr
    (tmp_path / "rollout.yaml").write_text(result.stdout)
    network = str(ARGO / "subset-level" / "istio.yaml")
    assert run_graylane("validate", "-f", str(tmp_path), "-f", network).returncode == 0
    http = render("-f", str(tmp_path), "-f", network, "--step", "2")["VirtualService/rollout-vsvc"]["spec"]["http"]
    assert [r["name"] for r in http] == ["canary-by-header", "primary"]
    assert http[0]["route"] == [{"destination": {"host": "rollout-example", "subset": "canary"}, "weight": 100}]
    assert weights(http[1]) == {"rollout-example/stable": 95, "rollout-example/canary": 5}


def test_new_argo_rollout_needs_a_split():
    result = run_graylane("new", "argo-rollout", "r", "--workload", "Deployment/r", "--virtual-service", "vs",
                          "--steps", "5")
    assert result.returncode == 1 and result.stdout == "" and "--destination-rule" in result.stderr
