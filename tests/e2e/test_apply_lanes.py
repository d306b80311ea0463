"""graylane apply and lanes against a real kube-apiserver: the built-in script's scoped lane is applied; a script
whose lane leaks into another service's routes (GL0401) is refused before anything is written; --force applies
it with the problem as a warning on stderr."""
from __future__ import annotations

import pytest

from clusterlib import ORIGINAL, Kube, graylane, write_yaml

pytestmark = pytest.mark.e2e

LEAKY_SCRIPT = """
-- Kruise's way: the bare lane match on top of spec.http
local spec = obj.data.spec
local headers = {}
for _, h in ipairs(obj.matches[1].headers) do headers[h.name] = {exact = h.value} end
table.insert(spec.http, 1, {match = {{headers = headers}}, route = {{destination = {host = obj.canaryService}}}})
return obj.data
"""


@pytest.fixture
def kube(kube_env):
    return Kube(kube_env)


def setup_edge(kube: Kube, namespace: str, tmp_path) -> tuple:
    vs = kube.create({
        "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
        "metadata": {"name": "edge", "namespace": namespace},
        "spec": {"hosts": ["shop.example.com"], "http": [
            {"match": [{"uri": {"prefix": "/cart"}}], "route": [{"destination": {"host": "cart"}}]},
            {"match": [{"uri": {"prefix": "/pay"}}], "route": [{"destination": {"host": "payments"}}]}]}})
    rollout = {"apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout",
               "metadata": {"name": "cart", "namespace": namespace},
               "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "cart"},
                        "strategy": {"canary": {"steps": [{"matches": [{"headers": [
                            {"type": "Exact", "name": "x-lane", "value": "gray"}]}]}],
                            "trafficRoutings": [{"service": "cart", "customNetworkRefs": [
                                {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                                 "name": "edge"}]}]}}}}
    return write_yaml(tmp_path / "rollout.yaml", [rollout]), vs


def test_apply_writes_the_scoped_lane(kube, kube_env, kube_namespace, tmp_path):
    rollout, _created = setup_edge(kube, kube_namespace, tmp_path)
    result = graylane(kube_env, "apply", "-f", str(rollout))
    assert result.returncode == 0, result.stdout + result.stderr
    http = kube.get("VirtualService", kube_namespace, "edge")["spec"]["http"]
    assert http[0] == {"match": [{"headers": {"x-lane": {"exact": "gray"}}, "uri": {"prefix": "/cart"}}],
                       "route": [{"destination": {"host": "cart-canary"}}]}
    assert [rule["route"][0]["destination"]["host"] for rule in http] == ["cart-canary", "cart", "payments"]


def test_apply_refuses_a_leaking_lane_and_force_applies_it(kube, kube_env, kube_namespace, tmp_path):
    ns = kube_namespace
    rollout, created = setup_edge(kube, ns, tmp_path)
    scripts = tmp_path / "lua" / "networking.istio.io" / "VirtualService"
    scripts.mkdir(parents=True)
    (scripts / "trafficRouting.lua").write_text(LEAKY_SCRIPT)
    result = graylane(kube_env, "apply", "-f", str(rollout), "--lua-dir", str(tmp_path / "lua"))
    assert result.returncode == 1
    assert "virtualservice.networking.istio.io/edge failed:" in result.stdout
    assert "would fail requests: this rule sends requests to the canary of cart, but it also catches requests " \
           "that spec.http[2] sends to payments" in result.stdout
    live = kube.get("VirtualService", ns, "edge")
    assert live["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert ORIGINAL not in (live["metadata"].get("annotations") or {})

    forced = graylane(kube_env, "apply", "-f", str(rollout), "--lua-dir", str(tmp_path / "lua"), "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "warning: cluster" in forced.stderr and "[GL0401 LaneLeak]" in forced.stderr
    assert "warning" not in forced.stdout
    assert kube.get("VirtualService", ns, "edge")["spec"]["http"][0] == {
        "match": [{"headers": {"x-lane": {"exact": "gray"}}}], "route": [{"destination": {"host": "cart-canary"}}]}
