"""A generated corpus of TrafficRoutings and Rollouts with the objects they reference, edge cases included.

Deterministic (a seeded random.Random): the same seed gives the same corpus, so a failure can be replayed by its
case name. Most cases are ordinary; a share carries what Istio's admission webhook rejects (header values with
'%', Host and pseudo-header operations, newlines, long or non-RE2 regexes, bad labels, one header matched twice,
a Host set where the stable rule rewrites the authority), so render and validate must both refuse those.
"""
from __future__ import annotations

import json
import random
from typing import Any

HEADER_NAMES = ["x-lane", "X-Lane", "my-request-id", "user-agent", "x-env", "cookie", ":authority"]
HEADER_VALUES = ["canary", "gray", "blue", "v2", "10%", "50%off", "100%%", "%HOSTNAME%", "a\nb", "pc client",
                 "%REQ(x-b3-traceid)%", "ok"]
REGEXES = ["^canary.*", ".*gray.*", "(a|b)+", "^(?!curl).*", "(a)\\1", "a{1001}", "a*+b", "foo\\Z", "",
           "x" * 1030, "[0-9]{1,3}", "^/api/v[12]/.*"]
PATHS = ["/", "/api", "/v2/", "/static/app.js"]
REMOVE_NAMES = ["x-debug", "host", ":path", "x-internal", "Host"]
SET_NAMES = ["x-traffic-share", "x-canary", "host", ":path", "x-version"]
LABEL_VALUES = ["canary", "gray", "v2", "has space", "-bad", "ok.1"]
LABEL_KEYS = ["version", "app.kubernetes.io/version", "istio.service.tag", "bad key", "track"]


def _header_match(rng: random.Random) -> dict:
    kind = rng.choice(["Exact", "Exact", "RegularExpression"])
    value = rng.choice(REGEXES) if kind == "RegularExpression" else rng.choice(HEADER_VALUES[:4] + ["pc"])
    name = rng.choice(HEADER_NAMES[:6])
    return {"type": kind, "name": name, "value": value}


def _match(rng: random.Random) -> dict:
    match: dict[str, Any] = {}
    if rng.random() < 0.8:
        match["headers"] = [_header_match(rng) for _ in range(rng.choice([1, 1, 2]))]
    if rng.random() < 0.3:
        kind = rng.choice(["Exact", "PathPrefix", "RegularExpression"])
        match["path"] = {"type": kind, "value": rng.choice(REGEXES) if kind == "RegularExpression"
                         else rng.choice(PATHS)}
    if rng.random() < 0.2:
        match["queryParams"] = [{"type": "Exact", "name": "lane", "value": rng.choice(["gray", "blue"])}]
    if not match:
        match["headers"] = [{"type": "Exact", "name": "x-lane", "value": "gray"}]
    return match


def _modifier(rng: random.Random) -> dict:
    modifier: dict[str, Any] = {}
    if rng.random() < 0.6:
        modifier["set"] = [{"name": rng.choice(SET_NAMES), "value": rng.choice(HEADER_VALUES)}]
    if rng.random() < 0.4:
        modifier["add"] = [{"name": "x-added", "value": rng.choice(HEADER_VALUES)}]
    if rng.random() < 0.4:
        modifier["remove"] = [rng.choice(REMOVE_NAMES)]
    return modifier or {"set": [{"name": "x-canary", "value": "true"}]}


def _strategy(rng: random.Random, weight_field: str) -> dict:
    strategy: dict[str, Any] = {}
    roll = rng.random()
    if roll < 0.4 or roll >= 0.75:
        strategy["matches"] = [_match(rng) for _ in range(rng.choice([1, 1, 2, 3]))]
    if roll >= 0.4:
        value = rng.choice([0, 5, 10, 33, 50, 99, 100])
        strategy[weight_field] = f"{value}%" if weight_field == "traffic" else value
    if rng.random() < 0.35:
        strategy["requestHeaderModifier"] = _modifier(rng)
    return strategy


def _virtual_service(rng: random.Random, name: str, service: str, namespace: str, subsets: bool) -> dict:
    host = rng.choice([service, f"{service}.{namespace}.svc.cluster.local"])
    destination: dict[str, Any] = {"host": host}
    with_tcp = rng.random() < 0.2
    if with_tcp or rng.random() < 0.4:  # the Service has two ports when there are tcp routes
        destination["port"] = {"number": 8080}
    route: list[dict] = [{"destination": destination}]
    if subsets and rng.random() < 0.5:
        route = [{"destination": {**destination, "subset": "v1"}, "weight": 70},
                 {"destination": {**destination, "subset": "v2"}, "weight": 30}]
    rule: dict[str, Any] = {"route": route}
    if rng.random() < 0.25:
        rule["rewrite"] = {"authority": f"{service}.internal"}
    if rng.random() < 0.2:
        rule["headers"] = {"request": {"set": {"x-from": "mesh"}}}
    if rng.random() < 0.2:
        rule["timeout"] = "5s"
    http = [rule]
    if rng.random() < 0.25:
        http.insert(0, {"match": [{"uri": {"prefix": "/admin"}}], "route": [{"destination": dict(destination)}]})
    spec: dict[str, Any] = {"hosts": [service], "http": http}
    if with_tcp:
        tcp_destination = {"host": host, "port": {"number": 9000}}
        spec["tcp"] = [{"match": [{"port": 9000}], "route": [{"destination": tcp_destination}]}]
    return {"apiVersion": rng.choice(["networking.istio.io/v1beta1", "networking.istio.io/v1"]),
            "kind": "VirtualService", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def _destination_rule(rng: random.Random, name: str, service: str, namespace: str) -> dict:
    labels = {"version": "v1"} if rng.random() < 0.95 else {rng.choice(LABEL_KEYS): rng.choice(LABEL_VALUES)}
    body: dict[str, Any] = {
        "apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"host": service, "subsets": [{"name": "v1", "labels": labels},
                                               {"name": "v2", "labels": {"version": "v2"}}]}}
    if rng.random() < 0.2:
        custom = {rng.choice(LABEL_KEYS): rng.choice(LABEL_VALUES)}
        body["metadata"]["annotations"] = {"graylane.io/canary-subset-labels": json.dumps(custom)}
    return body


def _service(service: str, namespace: str, ports: list[int]) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": service, "namespace": namespace},
            "spec": {"selector": {"app": service},
                     "ports": [{"name": f"http-{p}", "port": p} for p in ports]}}


def _deployment(service: str, namespace: str, version: str) -> dict:
    labels = {"app": service, "version": version}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": f"{service}-{version}", "namespace": namespace},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "image": "example/app:1"}]}}}}


def generate_case(seed: int) -> tuple[list[dict], int]:
    """One case (its objects) and how many steps it has (1 for a TrafficRouting)."""
    rng = random.Random(seed)
    namespace = rng.choice(["default", "shop"])
    service = f"svc{seed}"
    vs_name, dr_name = f"{service}-vs", f"{service}-dr"
    with_dr = rng.random() < 0.7
    refs = [{"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "name": vs_name}]
    if with_dr:
        refs.append({"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule", "name": dr_name})
    objects = [_virtual_service(rng, vs_name, service, namespace, with_dr)]
    if with_dr:
        objects.append(_destination_rule(rng, dr_name, service, namespace))
    ports = [8080, 9000] if any("tcp" in o.get("spec", {}) for o in objects) else [8080]
    objects += [_service(service, namespace, ports), _deployment(service, namespace, "v1"),
                _deployment(service, namespace, "v2")]
    if rng.random() < 0.3:  # a v1beta1 Rollout with 1-3 steps, routing to a subset of the stable service
        steps = [_strategy(rng, "traffic") for _ in range(rng.choice([1, 2, 3]))]
        routing = {"apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout",
                   "metadata": {"name": f"{service}-rollout", "namespace": namespace},
                   "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{service}-v1"},
                            "strategy": {"canary": {
                                "steps": steps,
                                "trafficRoutings": [{"service": service, "customNetworkRefs": refs}]}}}}
        if with_dr:
            routing["spec"]["strategy"]["canary"]["disableGenerateCanaryService"] = True
        return [routing, *objects], len(steps)
    routing = {"apiVersion": "rollouts.kruise.io/v1alpha1", "kind": "TrafficRouting",
               "metadata": {"name": f"{service}-tr", "namespace": namespace},
               "spec": {"strategy": _strategy(rng, "weight"),
                        "objectRef": [{"service": service, "customNetworkRefs": refs}]}}
    return [routing, *objects], 1


def corpus(count: int = 240, seed: int = 20261201) -> dict[str, tuple[list[dict], int]]:
    """``count`` named cases: name -> (objects, steps)."""
    return {f"case-{seed + n}": generate_case(seed + n) for n in range(count)}
