"""The ConfigMap key of a core-group kind's script, as Kruise's own lookup finds it (the Kruise peer runs
customNetworkProvider.getLuaScript against the ConfigMap graylane wrote).

Kruise builds the key ``lua.traffic.routing.<Kind>.<group>`` with ``group := strings.Split(apiVersion, "/")[0]``,
so for the core group (apiVersion ``v1``) the "group" is the version: a Service's script is under
``lua.traffic.routing.Service.v1``. graylane's ``script configmap`` writes that key and ``--lua-configmap`` reads
it; the bare ``lua.traffic.routing.Service`` graylane wrote before is still read, though Kruise never finds it."""
from __future__ import annotations

import pytest
import yaml

from helpers import run_graylane
from kruisepeer import run_peer
from peerlib import peer_binary

pytestmark = pytest.mark.parity

SCRIPT = """-- A core-group kind's script: the Service selects the canary pods once the canary takes traffic.
local data = obj.data
if obj.canaryWeight > 0 then
  data.spec.selector["version"] = "canary"
end
return data
"""
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "demo"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}
ROUTING = {"apiVersion": "rollouts.kruise.io/v1alpha1", "kind": "TrafficRouting",
           "metadata": {"name": "web-tr", "namespace": "demo"},
           "spec": {"objectRef": [{"service": "web", "customNetworkRefs": [
               {"apiVersion": "v1", "kind": "Service", "name": "web"}]}], "strategy": {"weight": 20}}}
OLD_KEY, KRUISE_KEY = "lua.traffic.routing.Service", "lua.traffic.routing.Service.v1"


def configmap(data: dict) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "kruise-rollout-configuration"}, "data": data})


def render_with(tmp_path, data: dict):
    (tmp_path / "cm.yaml").write_text(configmap(data))
    (tmp_path / "in.yaml").write_text(yaml.safe_dump_all([SERVICE, ROUTING]))
    return run_graylane("render", "-f", str(tmp_path / "in.yaml"), "--lua-configmap", str(tmp_path / "cm.yaml"))


def test_script_configmap_writes_the_key_kruise_finds_for_a_core_group_kind(tmp_path):
    (tmp_path / "tree" / "Service").mkdir(parents=True)
    (tmp_path / "tree" / "Service" / "trafficRouting.lua").write_text(SCRIPT)
    packaged = run_graylane("script", "configmap", str(tmp_path / "tree"))
    assert packaged.returncode == 0, packaged.stderr
    data = yaml.safe_load(packaged.stdout)["data"]
    assert data == {KRUISE_KEY: SCRIPT}

    results = run_peer(peer_binary("kruise"), [
        {"id": "graylane-key", "object": SERVICE, "trafficRouting": ROUTING, "configMap": data},
        {"id": "old-key", "object": SERVICE, "trafficRouting": ROUTING, "configMap": {OLD_KEY: SCRIPT}}])
    found = results["graylane-key"]
    assert found["routed"] and not found.get("error"), found
    assert found["object"]["spec"]["selector"] == {"app": "web", "version": "canary"}
    # Under the key graylane used to write, Kruise finds no script at all.
    assert "expected script not found" in results["old-key"]["error"]

    # graylane reads the same ConfigMap and renders what Kruise wrote.
    rendered = render_with(tmp_path, data)
    assert rendered.returncode == 0, rendered.stderr
    assert yaml.safe_load(rendered.stdout)["spec"] == found["object"]["spec"]


def test_the_old_core_group_key_is_still_read_but_not_beside_kruises(tmp_path):
    old = render_with(tmp_path, {OLD_KEY: SCRIPT})
    assert old.returncode == 0, old.stderr
    assert yaml.safe_load(old.stdout)["spec"]["selector"] == {"app": "web", "version": "canary"}
    both = render_with(tmp_path, {OLD_KEY: SCRIPT, KRUISE_KEY: SCRIPT})
    assert both.returncode != 0 and both.stdout == ""
    assert both.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'cm.yaml'}: document 1: data.{KRUISE_KEY}: {OLD_KEY} and {KRUISE_KEY} are both the "
        f"script for Service; keep {KRUISE_KEY}"]
