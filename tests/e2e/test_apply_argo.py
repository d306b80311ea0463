"""``graylane apply`` with Argo Rollouts (argoproj.io/v1alpha1, Istio traffic routing) against a real
kube-apiserver: each step leaves the VirtualService/DestinationRule in the cluster exactly as ``graylane render``
of the same step shows them offline, every step starts from the stored original, ``restore`` gives back the
originals, and ``--dry-run=server`` changes nothing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from clusterlib import ORIGINAL, SAMPLES, graylane, load, state, write_yaml

pytestmark = pytest.mark.e2e

ARGO = SAMPLES / "argo-rollouts"
HASHES = ("--canary-hash", "6d5c8b7f9", "--stable-hash", "58b8c9d4f7")


def create_network_objects(kube, namespace: str, path: Path) -> dict:
    """The sample's VirtualServices/DestinationRules created in ``namespace`` (hosts that name the sample's own
    namespace moved with them); by name, as the API server returned them."""
    created = {}
    for body in load(path, namespace, ("VirtualService", "DestinationRule")):
        text = json.dumps(body).replace(".shop.svc.cluster.local", f".{namespace}.svc.cluster.local")
        created[body["metadata"]["name"]] = kube.create(json.loads(text))
    return created


def exported(created: dict, tmp_path: Path) -> Path:
    """The objects as a user would export them from the cluster (no status, server-set metadata dropped)."""
    return write_yaml(tmp_path / "exported.yaml", [
        {key: value for key, value in body.items() if key != "status"}
        | {"metadata": {"name": body["metadata"]["name"], "namespace": body["metadata"]["namespace"]}}
        for body in created.values()])


def assert_cluster_equals_render(kube_env, kube, created: dict, rollout: Path, tmp_path: Path, step: int,
                                 *extra: str) -> None:
    rendered = graylane(kube_env, "render", "-f", str(exported(created, tmp_path)), "-f", str(rollout),
                        "--step", str(step), *extra, cluster=False)
    assert rendered.returncode == 0, rendered.stderr
    expected = list(yaml.safe_load_all(rendered.stdout))
    assert sorted(body["metadata"]["name"] for body in expected) == sorted(created)
    for body in expected:
        name = body["metadata"]["name"]
        live = kube.get(body["kind"], body["metadata"]["namespace"], name, created[name]["apiVersion"])
        assert live["spec"] == body["spec"], f"step {step}: {body['kind']} {name} differs from render"
        assert (live["metadata"].get("labels") or {}) == (body["metadata"].get("labels") or {})
        assert json.loads(live["metadata"]["annotations"][ORIGINAL]) == {"spec": created[name]["spec"]}


def versions(kube, created: dict) -> dict:
    return {name: kube.get(body["kind"], body["metadata"]["namespace"], name, body["apiVersion"])
            ["metadata"]["resourceVersion"] for name, body in created.items()}


def assert_restored(kube, created: dict) -> None:
    for name, body in created.items():
        live = kube.get(body["kind"], body["metadata"]["namespace"], name, body["apiVersion"])
        assert state(live) == state(body), f"{name} was not restored exactly"


def test_argo_rollout_header_and_mirror_routes_step_by_step(kube, kube_env, kube_namespace, tmp_path):
    """Host-level split with managed routes: step 1 inserts the header route, step 2 sets the weight beside
    it, step 3 adds the mirror route; then restore."""
    ns = kube_namespace
    folder = ARGO / "header-mirror"
    created = create_network_objects(kube, ns, folder / "virtualservice.yaml")
    rollout = write_yaml(tmp_path / "rollout.yaml", load(folder / "rollout.yaml", ns))

    before = versions(kube, created)
    dry = graylane(kube_env, "apply", "-f", str(rollout), "--step", "2", "--dry-run=server")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == ["virtualservice.networking.istio.io/checkout configured (server dry run)"]
    assert versions(kube, created) == before, "a server dry run must not write"

    for step in (1, 2, 3):
        applied = graylane(kube_env, "apply", "-f", str(rollout), "--step", str(step))
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.splitlines() == ["virtualservice.networking.istio.io/checkout configured"]
        assert_cluster_equals_render(kube_env, kube, created, rollout, tmp_path, step)
    http = kube.get("VirtualService", ns, "checkout")["spec"]["http"]
    assert [rule.get("name") for rule in http] == ["testers", "mirror-api", "primary"]  # managedRoutes order

    after = versions(kube, created)
    dry = graylane(kube_env, "apply", "-f", str(rollout), "--step", "5", "--dry-run=server")
    assert dry.returncode == 0, dry.stderr
    assert versions(kube, created) == after

    restored = graylane(kube_env, "restore", "--cluster", "-f", str(rollout))
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.splitlines() == ["virtualservice.networking.istio.io/checkout restored"]
    assert_restored(kube, created)


def test_argo_rollout_subset_level_split_with_hashes(kube, kube_env, kube_namespace, tmp_path):
    """Subset-level split: the weights go on the VirtualService's subsets and the DestinationRule's subsets get
    the ReplicaSets' rollouts-pod-template-hash labels; step 2 (a pause) keeps step 1's weight."""
    ns = kube_namespace
    folder = ARGO / "subset-level"
    created = create_network_objects(kube, ns, folder / "istio.yaml")
    rollout = write_yaml(tmp_path / "rollout.yaml", load(folder / "rollout.yaml", ns) + load(folder / "service.yaml", ns))

    before = versions(kube, created)
    dry = graylane(kube_env, "apply", "-f", str(rollout), *HASHES, "--dry-run=server")
    assert dry.returncode == 0, dry.stderr
    assert versions(kube, created) == before, "a server dry run must not write"

    for step in (1, 2):
        applied = graylane(kube_env, "apply", "-f", str(rollout), "--step", str(step), *HASHES)
        assert applied.returncode == 0, applied.stderr
        assert_cluster_equals_render(kube_env, kube, created, rollout, tmp_path, step, *HASHES)
    vs = kube.get("VirtualService", ns, "rollout-vsvc", created["rollout-vsvc"]["apiVersion"])
    assert [route["weight"] for route in vs["spec"]["http"][0]["route"]] == [95, 5]
    dr = kube.get("DestinationRule", ns, "rollout-destrule", created["rollout-destrule"]["apiVersion"])
    assert {s["name"]: s["labels"].get("rollouts-pod-template-hash") for s in dr["spec"]["subsets"]} == \
        {"canary": HASHES[1], "stable": HASHES[3]}

    # status reads the weight off the canary subset the Rollout names (there is no canary Service here)
    status = graylane(kube_env, "status", "-f", str(rollout), "-o", "json")
    assert status.returncode == 0, status.stderr
    rows = {row["object"]: row for row in json.loads(status.stdout)["items"]}
    assert rows["virtualservice.networking.istio.io/rollout-vsvc"]["canaryWeight"] == 5
    gray = rows["destinationrule.networking.istio.io/rollout-destrule"]["graySubset"]
    assert gray["name"] == "canary" and gray["labels"]["rollouts-pod-template-hash"] == HASHES[1]

    restored = graylane(kube_env, "restore", "--cluster", "-f", str(rollout))
    assert restored.returncode == 0, restored.stderr
    assert_restored(kube, created)
