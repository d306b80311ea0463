"""Generated inputs for the Kruise parity suite: varied VirtualServices and DestinationRules, each routed by a
TrafficRouting (v1alpha1) or one step of a Rollout (v1beta1), as a Kruise user would write them.

Deterministic (a fixed seed), so a failing case keeps its id from run to run. Every case is plain data:
``routing`` (the TrafficRouting or Rollout), ``step`` and ``object`` (the network object).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Optional

SERVICE = "reviews"
NAMESPACE = "default"
HOST_FORMS = (SERVICE, f"{SERVICE}.{NAMESPACE}", f"{SERVICE}.{NAMESPACE}.svc", f"{SERVICE}.{NAMESPACE}.svc.cluster.local")
OTHER_HOSTS = ("ratings", "details.default.svc.cluster.local", "reviews-v3")
WEIGHTS = (None, 0, 1, 5, 33, 50, 99, 100)
TEXT = ("canary", "pc", "ünïcödé", "日本語", "a b", "beta,staff", "", "x" * 40)
HEADER_NAMES = ("x-user", "user-agent", "X-Canary", "my-request-id", "cookie")
UNEVEN = ((100,), (60, 40), (33, 33, 34), (90, 10), (1, 99), (70, 20, 10), (50, 49, 1))


@dataclass
class Case:
    id: str
    routing: dict
    object: dict
    step: int = 1
    tags: set = field(default_factory=set)  # what the case exercises, for coverage assertions


def _text(rng: random.Random) -> str:
    return rng.choice(TEXT)


def _headers(rng: random.Random) -> list[dict]:
    return [{"type": rng.choice(("Exact", "RegularExpression")), "name": name,
             "value": _text(rng) if rng.random() < 0.7 else ".*" + rng.choice(("demo", "beta"))}
            for name in rng.sample(HEADER_NAMES, rng.randint(1, 2))]


def _matches(rng: random.Random, headers_only: bool, tags: set) -> list[dict]:
    matches = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        match: dict[str, Any] = {}
        kinds = ["headers"] if headers_only else rng.sample(["headers", "path", "queryParams"], rng.randint(1, 3))
        for kind in kinds:
            tags.add(f"match:{kind}")
            if kind == "headers":
                match["headers"] = _headers(rng)
            elif kind == "queryParams":
                match["queryParams"] = [{"type": rng.choice(("Exact", "RegularExpression")), "name": "lane",
                                         "value": _text(rng)}]
            else:
                path_type = rng.choice(("Exact", "PathPrefix", "RegularExpression"))
                tags.add(f"path:{path_type}")
                match["path"] = {"type": path_type, "value": rng.choice(("/api", "/", "/v1/.*", "/ünï"))}
        matches.append(match)
    return matches


def _modifier(rng: random.Random, tags: set) -> Optional[dict]:
    roll = rng.random()
    if roll < 0.6:
        return None
    if roll < 0.65:
        tags.add("modifier:empty")
        return {}
    modifier: dict[str, Any] = {}
    for action in rng.sample(["set", "add", "remove"], rng.randint(1, 3)):
        tags.add(f"modifier:{action}")
        if action == "remove":
            modifier["remove"] = rng.sample(["x-debug", "cookie", "x-b3"], rng.randint(1, 2))
        else:
            modifier[action] = [{"name": f"x-{action}-{i}", "value": _text(rng)} for i in range(rng.randint(1, 2))]
    return modifier


def _destination(host: str, subset: Optional[str] = None, port: Optional[int] = None) -> dict:
    destination: dict[str, Any] = {"host": host}
    if subset:
        destination["subset"] = subset
    if port:
        destination["port"] = {"number": port}
    return destination


def _route(rng: random.Random, host: str, tags: set, port: Optional[int]) -> list[dict]:
    """A rule's destinations: the stable service, maybe in several subsets or beside other services."""
    shape = rng.random()
    if shape < 0.5:
        hosts = [(host, None)]
    elif shape < 0.7:
        tags.add("several-stable")
        hosts = [(host, "v1"), (host, "v2")]
    elif shape < 0.78:
        tags.add("existing-canary")
        hosts = [(host, None), rng.choice(((f"{SERVICE}-canary", None), (host, "canary")))]
    elif shape < 0.9:
        tags.add("other-service")
        hosts = [(host, None), (rng.choice(OTHER_HOSTS), None)]
    else:
        tags.add("no-stable-route")
        hosts = [(rng.choice(OTHER_HOSTS), None)]
    weights = rng.choice([w for w in UNEVEN if len(w) == len(hosts)] + [None])
    if weights is None and len(hosts) == 1 and rng.random() < 0.5:
        weights = (100,)
    route = []
    for index, (name, subset) in enumerate(hosts):
        entry: dict[str, Any] = {"destination": _destination(name, subset, port)}
        if weights is not None:
            entry["weight"] = weights[index]
            if len(hosts) > 1:
                tags.add("uneven-weights")
        route.append(entry)
    return route


def _rule(rng: random.Random, tags: set, stable_host: str) -> dict:
    port = rng.choice((None, None, 9080))
    if port:
        tags.add("port")
    rule: dict[str, Any] = {}
    if rng.random() < 0.25:
        tags.add("existing-match")
        rule["match"] = [{"headers": {"x-existing": {"exact": _text(rng)}}}]
    rule["route"] = _route(rng, stable_host, tags, port)
    if rng.random() < 0.2:
        tags.add("rule-fields")
        rule.update(rng.choice(({"timeout": "10s"}, {"retries": {"attempts": 3, "perTryTimeout": "2s"}},
                                {"rewrite": {"uri": "/"}}, {"headers": {"request": {"set": {"x-from": "vs"}}}})))
    if rng.random() < 0.15:
        rule["name"] = rng.choice(("primary", "ünï"))
    return rule


def virtual_service(rng: random.Random, tags: set) -> dict:
    # Istio resolves the short name and the FQDN; name.ns and name.ns.svc name no Service there (fix
    # istio-host-resolution), so they are generated less often, leaving most cases to exercise the other fixes.
    stable_host = rng.choices(HOST_FORMS, weights=(3, 1, 1, 3))[0]
    tags.add(f"host:{HOST_FORMS.index(stable_host)}")
    spec: dict[str, Any] = {"hosts": [rng.choice((SERVICE, "*", "reviews.example.com"))]}
    http = [_rule(rng, tags, stable_host) for _ in range(rng.choice((1, 1, 1, 2, 3)))]
    if not any(r.get("match") is None for r in http) and rng.random() < 0.7:
        http.append({"route": [{"destination": _destination(stable_host)}]})
    spec["http"] = http
    if rng.random() < 0.15:
        tags.add("tcp")
        spec["tcp"] = [{"route": _route(rng, stable_host, tags, 27017)}]
    if rng.random() < 0.1:
        tags.add("tls")
        spec["tls"] = [{"match": [{"port": 443, "sniHosts": ["reviews.example.com"]}],
                        "route": [{"destination": _destination(stable_host, port=443)}]},
                       {"route": [{"destination": _destination(stable_host, port=443)}]}]
    if rng.random() < 0.1:
        tags.add("gateways")
        spec["gateways"] = ["mesh", "istio-system/gateway"]
    metadata: dict[str, Any] = {"name": "vs", "namespace": NAMESPACE}
    if rng.random() < 0.3:
        tags.add("labels")
        metadata["labels"] = {"app": SERVICE, "tier": _text(rng) or "empty"}
    if rng.random() < 0.3:
        tags.add("annotations")
        metadata["annotations"] = {"owner": _text(rng)}
    return {"apiVersion": rng.choice(("networking.istio.io/v1beta1", "networking.istio.io/v1alpha3")),
            "kind": "VirtualService", "metadata": metadata, "spec": spec}


def destination_rule(rng: random.Random, tags: set) -> dict:
    spec: dict[str, Any] = {"host": rng.choice(HOST_FORMS)}
    shape = rng.random()
    if shape < 0.6:
        tags.add("dr:subsets")
        spec["subsets"] = [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": _text(rng)}}][
            : rng.randint(1, 2)]
        if rng.random() < 0.3:
            tags.add("dr:existing-canary")
            spec["subsets"].append({"name": "canary", "labels": {"istio.service.tag": "old"}})
    elif shape < 0.8:
        tags.add("dr:empty-subsets")
        spec["subsets"] = []
    else:
        tags.add("dr:no-subsets")
    if rng.random() < 0.3:
        spec["trafficPolicy"] = {"loadBalancer": {"simple": "ROUND_ROBIN"}}
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
            "metadata": {"name": "dr", "namespace": NAMESPACE}, "spec": spec}


def _refs(network_object: dict) -> list[dict]:
    return [{"apiVersion": network_object["apiVersion"], "kind": network_object["kind"],
             "name": network_object["metadata"]["name"]}]


def traffic_routing(rng: random.Random, network_object: dict, tags: set) -> dict:
    strategy: dict[str, Any] = {}
    weight = rng.choice(WEIGHTS)
    if weight is not None:
        strategy["weight"] = weight
    if rng.random() < 0.5 or weight is None:
        strategy["matches"] = _matches(rng, headers_only=True, tags=tags)
    modifier = _modifier(rng, tags)
    if modifier is not None:
        strategy["requestHeaderModifier"] = modifier
    tags.update({"trafficRouting", f"weight:{weight}"})
    return {"apiVersion": "rollouts.kruise.io/v1alpha1", "kind": "TrafficRouting",
            "metadata": {"name": "tr", "namespace": NAMESPACE},
            "spec": {"objectRef": [{"service": SERVICE, "customNetworkRefs": _refs(network_object)}],
                     "strategy": strategy}}


def rollout(rng: random.Random, network_object: dict, tags: set) -> tuple[dict, int]:
    steps = []
    for _ in range(rng.randint(1, 3)):
        step: dict[str, Any] = {"replicas": 1}
        weight = rng.choice(WEIGHTS)
        if weight is not None:
            step["traffic"] = f"{weight}%"
        if rng.random() < 0.4 or weight is None:
            step["matches"] = _matches(rng, headers_only=False, tags=tags)
        modifier = _modifier(rng, tags)
        if modifier is not None:
            step["requestHeaderModifier"] = modifier
        steps.append(step)
    step_number = rng.randint(1, len(steps))
    chosen = steps[step_number - 1]
    tags.update({"rollout", f"weight:{chosen.get('traffic', 'none').rstrip('%')}"})
    canary: dict[str, Any] = {"steps": steps, "trafficRoutings": [{"service": SERVICE,
                                                                  "customNetworkRefs": _refs(network_object)}]}
    if rng.random() < 0.4:
        tags.add("subset-level")
        canary["disableGenerateCanaryService"] = True
    return ({"apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout",
             "metadata": {"name": "ro", "namespace": NAMESPACE},
             "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": SERVICE},
                      "strategy": {"canary": canary}}}, step_number)


def generate(count: int, seed: int = 9) -> list[Case]:
    """``count`` cases: about four VirtualServices to each DestinationRule, TrafficRoutings and Rollouts."""
    rng = random.Random(seed)
    cases = []
    for index in range(count):
        tags: set = set()
        network_object = destination_rule(rng, tags) if index % 5 == 4 else virtual_service(rng, tags)
        if rng.random() < 0.4:
            routing, step = traffic_routing(rng, network_object, tags), 1
        else:
            routing, step = rollout(rng, network_object, tags)
        cases.append(Case(f"case-{index:04d}", routing, network_object, step, tags))
    return cases
