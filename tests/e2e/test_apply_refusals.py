"""graylane apply refuses what render refuses, against a real kube-apiserver: a result that routes requests to a
subset no DestinationRule in the namespace defines (GL0402) or that selects none of the Service's pods (GL0403)
is not written (nor shown as a client dry run); --force applies it with the problem as a warning on stderr."""
from __future__ import annotations

import pytest

from clusterlib import ORIGINAL, Kube, graylane, write_yaml

pytestmark = pytest.mark.e2e

ISTIO = "networking.istio.io/v1beta1"


@pytest.fixture
def kube(kube_env):
    return Kube(kube_env)


def setup_reviews(kube: Kube, namespace: str, tmp_path, refs: tuple = ("VirtualService",)) -> tuple:
    """VirtualService and DestinationRule reviews (subset v1) in the cluster; a TrafficRouting that sends 10% to
    the canary subset, referencing the kinds in ``refs``."""
    vs = kube.create({"apiVersion": ISTIO, "kind": "VirtualService", "metadata": {"name": "reviews", "namespace": namespace},
                      "spec": {"hosts": ["reviews"], "http": [
                          {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]}})
    kube.create({"apiVersion": ISTIO, "kind": "DestinationRule", "metadata": {"name": "reviews", "namespace": namespace},
                 "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}})
    routing = {"apiVersion": "rollouts.kruise.io/v1alpha1", "kind": "TrafficRouting",
               "metadata": {"name": "reviews", "namespace": namespace},
               "spec": {"strategy": {"weight": 10}, "objectRef": [{"service": "reviews", "customNetworkRefs": [
                   {"apiVersion": ISTIO, "kind": kind, "name": "reviews"} for kind in refs]}]}}
    return write_yaml(tmp_path / "routing.yaml", [routing]), vs


def unchanged(kube: Kube, namespace: str, created: dict) -> None:
    live = kube.get("VirtualService", namespace, "reviews")
    assert live["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert ORIGINAL not in (live["metadata"].get("annotations") or {})


def test_apply_refuses_a_subset_no_destination_rule_in_the_namespace_defines(kube, kube_env, kube_namespace,
                                                                           tmp_path):
    ns = kube_namespace
    routing, created = setup_reviews(kube, ns, tmp_path)
    for flags in ((), ("--dry-run=client",)):
        result = graylane(kube_env, "apply", "-f", str(routing), *flags)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "virtualservice.networking.istio.io/reviews failed:" in result.stdout
        assert (f"requests routed to subset 'canary' of reviews would all get 503: DestinationRule {ns}/reviews "
                "(host reviews) defines no subset 'canary'") in result.stdout
        assert "[GL0402 RenderedSubsetUndefined]" in result.stdout and "--force" in result.stdout
        unchanged(kube, ns, created)

    forced = graylane(kube_env, "apply", "-f", str(routing), "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "warning: cluster" in forced.stderr and "[GL0402 RenderedSubsetUndefined]" in forced.stderr
    routes = kube.get("VirtualService", ns, "reviews")["spec"]["http"][0]["route"]
    assert [(r["destination"].get("subset"), r.get("weight")) for r in routes] == [("v1", 90), ("canary", 10)]


def test_apply_writes_when_the_referenced_destination_rule_gains_the_subset(kube, kube_env, kube_namespace,
                                                                           tmp_path):
    ns = kube_namespace
    routing, _created = setup_reviews(kube, ns, tmp_path, ("VirtualService", "DestinationRule"))
    result = graylane(kube_env, "apply", "-f", str(routing))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    subsets = kube.get("DestinationRule", ns, "reviews")["spec"]["subsets"]
    assert [s["name"] for s in subsets] == ["v1", "canary"]


def test_apply_refuses_a_canary_subset_that_selects_none_of_the_services_pods(kube, kube_env, kube_namespace,
                                                                             tmp_path):
    ns = kube_namespace
    routing, created = setup_reviews(kube, ns, tmp_path, ("VirtualService", "DestinationRule"))
    core, apps = kube.client.CoreV1Api(kube.api), kube.client.AppsV1Api(kube.api)
    core.create_namespaced_service(ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews"},
                                        "spec": {"selector": {"app": "reviews"}, "ports": [{"port": 9080}]}})
    labels = {"app": "reviews", "version": "v1"}
    apps.create_namespaced_deployment(ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "reviews-v1"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "app", "image": "example/reviews:1"}]}}}})
    result = graylane(kube_env, "apply", "-f", str(routing), "--dry-run=client")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "requests routed to subset 'canary' of reviews would all get 503 (no healthy upstream)" in result.stdout
    assert f"Deployment {ns}/reviews-v1" in result.stdout and "[GL0403 RenderedSubsetWithoutPods]" in result.stdout
    unchanged(kube, ns, created)
    assert [s["name"] for s in kube.get("DestinationRule", ns, "reviews")["spec"]["subsets"]] == ["v1"]
