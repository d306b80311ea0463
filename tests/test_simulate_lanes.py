"""`graylane simulate`: the lane report (which other services' traffic a lane captures) and --expect no-leak, and
no silent fallbacks (an unknown --gateway, workloads it cannot read, 503s and unreached services that a flag or
an input would change), through the real command."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from helpers import SAMPLES, run_graylane

SHOP = """
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: shop-gateway, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [shop.example.com]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: edge, namespace: shop}
spec:
  hosts: [shop.example.com]
  gateways: [shop-gateway]
  http:
  - match: [{uri: {prefix: /cart}}]
    route: [{destination: {host: cart}}]
  - match: [{uri: {prefix: /pay}}]
    route: [{destination: {host: payments}}]
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: cart, namespace: shop}
spec:
  host: cart
---
apiVersion: rollouts.kruise.io/v1alpha1
kind: TrafficRouting
metadata: {name: cart-lane, namespace: shop}
spec:
  strategy:
    matches:
    - headers: [{type: Exact, name: x-lane, value: gray}]
  objectRef:
  - service: cart
    customNetworkRefs:
    - {apiVersion: networking.istio.io/v1beta1, kind: VirtualService, name: edge}
    - {apiVersion: networking.istio.io/v1beta1, kind: DestinationRule, name: cart}
"""


def service(name: str, namespace: str = "shop", api_version: str = "apps/v1", kind: str = "Deployment",
            labels: dict | None = None, workload: str | None = None) -> str:
    pods = {"app": name, **(labels or {})}
    return yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
         "spec": {"selector": {"app": name}, "ports": [{"port": 80, "name": "http"}]}},
        {"apiVersion": api_version, "kind": kind, "metadata": {"name": workload or f"{name}-v1", "namespace": namespace},
         "spec": {"replicas": 1, "template": {"metadata": {"labels": pods}, "spec": {"containers": []}}}}])


KRUISE_LIKE_SCRIPT = """
local spec = obj.data.spec
local headers = {}
for _, h in ipairs(obj.matches[1].headers) do headers[h.name] = {exact = h.value} end
table.insert(spec.http, 1, {match = {{headers = headers}}, route = {{destination = {host = obj.stableService, subset = "canary"}}}})
return obj.data
"""


def shop(tmp_path: Path) -> Path:
    directory = tmp_path / "shop"
    directory.mkdir()
    (directory / "shop.yaml").write_text(SHOP)
    (directory / "services.yaml").write_text(service("cart") + "---\n" + service("payments") + "---\n"
                                             + service("cart", labels={"istio.service.tag": "gray"},
                                                       workload="cart-gray"))
    return directory


def simulate(*args: str) -> tuple[int, str, str]:
    result = run_graylane("simulate", *args)
    return result.returncode, result.stdout, result.stderr


def test_the_builtin_lane_captures_no_other_services_traffic(tmp_path):
    inputs = shop(tmp_path)
    code, out, err = simulate("-f", str(inputs), "--request", "GET http://shop.example.com/pay", "-H", "x-lane: gray",
                              "--expect", "payments=app=payments", "--expect", "no-leak", "--expect", "no-leak=cart")
    assert code == 0, out + err
    assert "  ok    shop/cart (VirtualService shop/edge http[0]): captures no other service's traffic" in out
    assert "  ok   no-leak\n  ok   no-leak=cart" in out


def test_a_leaking_lane_is_reported_and_fails_expect_no_leak(tmp_path):
    inputs = shop(tmp_path)
    scripts = tmp_path / "scripts" / "networking.istio.io" / "VirtualService"
    scripts.mkdir(parents=True)
    (scripts / "trafficRouting.lua").write_text(KRUISE_LIKE_SCRIPT)
    code, out, _ = simulate("-f", str(inputs), "--lua-dir", str(tmp_path / "scripts"), "--request",
                            "GET http://shop.example.com/pay", "-H", "x-lane: gray", "--expect", "no-leak=cart",
                            "-o", "json")
    assert code == 3
    data = json.loads(out)
    assert data["lanes"] == [{"virtualService": "shop/edge", "service": "shop/cart", "rules": [0], "leaks": [
        {"rule": 0, "message": "this rule sends requests to the canary of cart, but it also catches requests that "
                               "spec.http[2] sends to payments: e.g. GET shop.example.com/pay with header x-lane: gray"}]}]
    assert data["expectations"][0]["ok"] is False
    assert data["expectations"][0]["details"][0].startswith("VirtualService shop/edge http[0]: this rule sends")
    # and the request itself shows the leak: /pay with the lane header is served by cart's gray pods
    assert data["paths"][0]["steps"][0]["service"] == "shop/cart"


def test_no_leak_with_no_lane_at_all_fails(tmp_path):
    code, out, _ = simulate("-f", str(shop(tmp_path)), "--no-render", "--request", "GET http://shop.example.com/pay",
                            "--expect", "no-leak")
    assert code == 3 and "no lane among the simulated VirtualServices" in out


def test_a_gateway_that_is_not_among_the_inputs_is_an_error(tmp_path):
    (tmp_path / "svc.yaml").write_text(service("cart"))
    code, out, err = simulate("-f", str(tmp_path / "svc.yaml"), "--request", "GET http://cart/",
                              "--gateway", "istio-system/main")
    assert code == 1 and out == ""
    assert err == "error: --gateway istio-system/main: no such Gateway among the inputs (have: none)\n"


def test_old_api_deployments_are_read_and_unknown_workloads_reported(tmp_path):
    (tmp_path / "svc.yaml").write_text(service("cart", api_version="extensions/v1beta1") + "---\n" +
                                       service("orders", api_version="example.com/v1", kind="Workload"))
    code, out, _ = simulate("-f", str(tmp_path / "svc.yaml"), "--mesh", "-n", "shop", "--request", "GET http://cart/",
                            "--expect", "cart=app=cart")
    assert code == 0, out
    assert "Deployment shop/cart-v1" in out
    assert ("example.com/v1 Workload shop/orders-v1 has a pod template, but graylane does not read pods from this "
            "kind") in out


def test_rollout_pods_hint_and_flag(tmp_path):
    inputs = shop(tmp_path)
    (inputs / "services.yaml").write_text(service("cart") + "---\n" + service("payments"))
    rollout = {"apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout",
               "metadata": {"name": "cart", "namespace": "shop"},
               "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "cart-v1"},
                        "strategy": {"canary": {"steps": [{"replicas": 1}], "trafficRoutingRef": "cart-lane",
                                                "patchPodTemplateMetadata": {"labels": {"istio.service.tag": "gray"}}}}}}
    (inputs / "rollout.yaml").write_text(yaml.safe_dump(rollout))
    args = ["-f", str(inputs), "--request", "GET http://shop.example.com/cart", "-H", "x-lane: gray",
            "--expect", "cart=istio.service.tag=gray"]
    code, out, _ = simulate(*args)
    assert code == 3
    assert "the canary pods of Rollout shop/cart would match: add --rollout-pods to count them" in out
    code, out, _ = simulate(*args, "--rollout-pods")
    assert code == 0, out


def test_an_unreached_service_names_the_calls_that_would_reach_it(tmp_path):
    inputs = shop(tmp_path)
    code, out, _ = simulate("-f", str(inputs), "--request", "GET http://shop.example.com/cart", "-H", "x-lane: gray",
                            "--expect", "payments=app=payments")
    assert code == 3
    assert ("the request never reaches payments; nothing in the call graph calls it: add --calls CALLER=payments"
            in out)
    code, out, _ = simulate("-f", str(inputs), "--request", "GET http://shop.example.com/cart", "-H", "x-lane: gray",
                            "--expect", "payments=app=payments", "--calls", "shop/cart=payments")
    assert code == 0, out


def chain(length: int) -> str:
    documents = []
    for index in range(length):
        name = f"s{index:02d}"
        calls = {"graylane.io/calls": f"s{index + 1:02d}"} if index + 1 < length else {}
        documents += [
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": name, "namespace": "default", **({"annotations": calls} if calls else {})},
             "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
             "spec": {"template": {"metadata": {"labels": {"app": name}}}}}]
    return yaml.safe_dump_all(documents)


def test_a_20_hop_chain_is_followed_to_the_end_and_max_hops_stops_it(tmp_path):
    (tmp_path / "chain.yaml").write_text(chain(20))
    code, out, _ = simulate("-f", str(tmp_path / "chain.yaml"), "--mesh", "--request", "GET http://s00/", "-o", "json",
                            "--expect", "s19=app=s19")
    assert code == 0
    assert len(json.loads(out)["paths"][0]["steps"]) == 20
    code, out, _ = simulate("-f", str(tmp_path / "chain.yaml"), "--mesh", "--request", "GET http://s00/",
                            "--max-hops", "5", "--expect", "s19=app=s19")
    assert code == 3 and "the chain is deeper than 5 hops: stopped (--max-hops)" in out
