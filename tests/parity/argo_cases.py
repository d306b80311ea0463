"""Generated Argo Rollout + VirtualService (+ DestinationRule) inputs and step sequences for the parity suite.

Deterministic (seeded): host-level and subset-level splits, host forms (short, ``.ns``, FQDN), named and unnamed
routes, several VirtualServices (``name.namespace``), tcp and tls routes, ports, managed header and mirror routes
added and removed, non-traffic steps, extra destinations and subsets.
"""
from __future__ import annotations

import random
from typing import Any

NAMESPACE = "default"
HASHES = {"canaryHash": "c7bf84f969", "stableHash": "s123746c88"}


def _host(rng: random.Random, service: str) -> str:
    return rng.choice([service, service, f"{service}.{NAMESPACE}", f"{service}.{NAMESPACE}.svc.cluster.local"])


def _destination(rng: random.Random, host: str, subset: str | None, port: int | None, weight: int | None) -> dict:
    destination: dict = {"host": host}
    if subset:
        destination["subset"] = subset
    if port:
        destination["port"] = {"number": port}
    entry: dict = {"destination": destination}
    if weight is not None:
        entry["weight"] = weight
    return entry


def _route(rng: random.Random, mode: str, port: int | None, extra: bool) -> list[dict]:
    stable_weight = rng.choice([100, 100, 90, 50, 0])
    canary_weight = 100 - stable_weight
    if mode == "host":
        stable = _destination(rng, _host(rng, "stable"), None, port, stable_weight)
        canary = _destination(rng, _host(rng, "canary"), None, port, canary_weight)
    else:
        host = _host(rng, "svc")
        stable = _destination(rng, host, "stable", port, stable_weight)
        canary = _destination(rng, host, "canary", port, canary_weight)
    if rng.random() < 0.1:
        canary.pop("weight", None) if canary_weight == 0 else None
    route = [stable, canary] if rng.random() < 0.7 else [canary, stable]
    if rng.random() < 0.03:  # Argo refuses a route without its canary (or stable) destination
        route.pop(rng.randrange(2))
    if extra:  # another destination: Argo drops it when it has a weight (wherever it stands)
        route.insert(rng.randrange(len(route) + 1), _destination(rng, "legacy", None, port, rng.choice([0, 10])))
    return route


def _virtual_service(rng: random.Random, name: str, namespace: str, mode: str) -> tuple[dict, dict]:
    """A VirtualService and the Rollout's entry for it."""
    port = rng.choice([None, None, 8080])
    named = rng.random() < 0.75
    extra = rng.random() < 0.1
    primary: dict = {"route": _route(rng, mode, port, extra)}
    if named:
        primary = {"name": "primary", **primary}
    http = [primary]
    if named and rng.random() < 0.4:
        other = {"name": "legacy-api", "match": [{"uri": {"prefix": "/legacy"}}],
                 "route": [{"destination": {"host": "legacy"}}]}
        http.insert(rng.choice([0, 1]), other)
    spec: dict = {"hosts": ["app.example.com"], "gateways": ["app-gateway"]}
    entry: dict = {"name": name if namespace == NAMESPACE and rng.random() < 0.7 else f"{name}.{namespace}"}
    if named and (len(http) > 1 or rng.random() < 0.7):
        entry["routes"] = ["primary"]
    protocols = rng.choice([["http"], ["http"], ["http"], ["http", "tcp"], ["tcp"], ["tls"]])
    if "http" in protocols:
        spec["http"] = http
    if "tcp" in protocols:
        tcp_port = rng.choice([3000, 3001])
        spec["tcp"] = [{"match": [{"port": tcp_port}], "route": _route(rng, mode, None, False)}]
        if rng.random() < 0.5:
            entry["tcpRoutes"] = [{"port": tcp_port}]
    if "tls" in protocols:
        sni = ["app.example.com"]
        spec["tls"] = [{"match": [{"port": 443, "sniHosts": sni}], "route": _route(rng, mode, None, False)}]
        if rng.random() < 0.5:
            entry["tlsRoutes"] = [{"port": 443, "sniHosts": list(sni)}]
    vs = {"apiVersion": rng.choice(["networking.istio.io/v1alpha3", "networking.istio.io/v1beta1"]),
          "kind": "VirtualService", "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    return vs, entry


def _header_route(rng: random.Random, name: str) -> dict:
    if rng.random() < 0.25:
        return {"name": name}
    matches = []
    for _ in range(rng.choice([1, 1, 2])):
        kind = rng.choice(["exact", "prefix", "regex"])
        value = {"exact": "yes", "prefix": "beta-", "regex": "^(a|b)$"}[kind]
        matches.append({"headerName": rng.choice(["x-canary", "x-user-group"]), "headerValue": {kind: value}})
    return {"name": name, "match": matches}


def _mirror_route(rng: random.Random, name: str) -> dict:
    if rng.random() < 0.25:
        return {"name": name}
    matches = []
    for _ in range(rng.choice([1, 1, 2])):
        match: dict = {}
        if rng.random() < 0.6:
            match["method"] = {"exact": rng.choice(["GET", "POST"])}
        if rng.random() < 0.6:
            match["path"] = {rng.choice(["prefix", "exact", "regex"]): "/api"}
        if not match or rng.random() < 0.3:
            match["headers"] = {"x-mirror": {"exact": "1"}}
        matches.append(match)
    route: dict = {"name": name, "match": matches}
    if rng.random() < 0.7:
        route["percentage"] = rng.choice([10, 50, 100])
    return route


def _steps(rng: random.Random, http: bool, managed: list[str]) -> list[dict]:
    steps = []
    for _ in range(rng.randint(2, 7)):
        choices = ["setWeight", "setWeight", "setWeight", "pause", "analysis", "setCanaryScale"]
        if http and any(n.startswith("h") for n in managed):
            choices += ["setHeaderRoute", "setHeaderRoute"]
        if http and any(n.startswith("m") for n in managed):
            choices += ["setMirrorRoute", "setMirrorRoute"]
        action = rng.choice(choices)
        if action == "setWeight":
            steps.append({"setWeight": rng.choice([0, 5, 10, 20, 25, 33, 50, 80, 100])})
        elif action == "pause":
            steps.append({"pause": rng.choice([{}, {"duration": "10m"}])})
        elif action == "analysis":
            steps.append({"analysis": {"templates": [{"templateName": "success-rate"}]}})
        elif action == "setCanaryScale":
            steps.append({"setCanaryScale": rng.choice([{"replicas": 2}, {"weight": 30}, {"matchTrafficWeight": True}])})
        elif action == "setHeaderRoute":
            steps.append({"setHeaderRoute": _header_route(rng, rng.choice([n for n in managed if n.startswith("h")]))})
        else:
            steps.append({"setMirrorRoute": _mirror_route(rng, rng.choice([n for n in managed if n.startswith("m")]))})
    return steps


def generate(seed: int, count: int) -> list[dict]:
    """``count`` cases: {id, rollout, objects (VirtualServices, DestinationRule), canaryHash, stableHash}."""
    rng = random.Random(seed)
    cases = []
    for number in range(count):
        mode = rng.choice(["host", "subset"])
        objects: list[dict] = []
        entries = []
        for index in range(rng.choice([1, 1, 1, 2])):
            namespace = NAMESPACE if index == 0 or rng.random() < 0.5 else "edge"
            vs, entry = _virtual_service(rng, f"vs{index}", namespace, mode)
            objects.append(vs)
            entries.append(entry)
        http = all("http" in vs["spec"] for vs in objects)
        managed = [n for n in ("header-1", "header-2", "mirror-1", "mirror-2") if rng.random() < 0.6] if http else []
        if http and rng.random() < 0.3:
            rng.shuffle(managed)
        istio: dict = {"virtualService": entries[0]} if len(entries) == 1 and rng.random() < 0.8 else \
            {"virtualServices": entries}
        canary: dict = {}
        if mode == "host":
            canary["canaryService"], canary["stableService"] = "canary", "stable"
        else:
            istio["destinationRule"] = {"name": "dr", "canarySubsetName": "canary", "stableSubsetName": "stable"}
            subsets: list[dict] = [{"name": "stable", "labels": {"app": "svc"}}, {"name": "canary"}]
            if rng.random() < 0.3:
                subsets.append({"name": "v0", "labels": {"version": "v0"}, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}})
            if rng.random() < 0.5:
                subsets.reverse()
            objects.append({"apiVersion": "networking.istio.io/v1alpha3", "kind": "DestinationRule",
                            "metadata": {"name": "dr", "namespace": NAMESPACE},
                            "spec": {"host": rng.choice(["svc", f"svc.{NAMESPACE}.svc.cluster.local"]),
                                     "subsets": subsets,
                                     **({"trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}}}
                                        if rng.random() < 0.3 else {})}})
        traffic_routing: dict = {"istio": istio}
        if managed:
            traffic_routing["managedRoutes"] = [{"name": n} for n in managed]
        canary["trafficRouting"] = traffic_routing
        canary["steps"] = _steps(rng, http, managed)
        rollout = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                   "metadata": {"name": "ro", "namespace": NAMESPACE},
                   "spec": {"strategy": {"canary": canary}}}
        cases.append({"id": f"case-{seed}-{number}", "rollout": rollout, "objects": objects, **HASHES})
    return cases
