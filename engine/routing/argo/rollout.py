"""Reading an Argo Rollout's canary strategy and the meaning of each step.

Argo's rules: the weight in effect at step N is the last ``setWeight`` at or before N (0 when none);
``setHeaderRoute``/``setMirrorRoute`` add a managed route that stays until a later step with the same name and
no ``match`` removes it; ``pause``, ``analysis``, ``experiment`` and ``setCanaryScale`` change no route.
"""
from __future__ import annotations

from typing import Any, Optional

from engine.documents import Document
from engine.records import Record
from engine.fields import as_list, as_map, as_string

ARGO_GROUP = "argoproj.io"
HASH_LABEL = "rollouts-pod-template-hash"
STEP_KINDS = ("setWeight", "pause", "setHeaderRoute", "setMirrorRoute", "analysis", "experiment",
              "setCanaryScale", "plugin")


def is_argo_rollout(document: Document) -> bool:
    return document.group == ARGO_GROUP and document.kind == "Rollout"


def routes_with_istio(document: Document) -> bool:
    """An Argo Rollout whose canary strategy routes traffic through Istio (others are not graylane's business)."""
    spec = document.body.get("spec")
    strategy = spec.get("strategy") if isinstance(spec, dict) else None
    canary = strategy.get("canary") if isinstance(strategy, dict) else None
    routing = canary.get("trafficRouting") if isinstance(canary, dict) else None
    return isinstance(routing, dict) and isinstance(routing.get("istio"), dict)


class VirtualServiceRef(Record):
    """One ``virtualService``/``virtualServices[]`` entry; ``name.namespace`` is split as Argo splits it.
    ``entry``: the entry as written (name, routes, tlsRoutes, tcpRoutes), what the script sees."""

    __slots__ = ("name", "namespace", "entry", "field")

    def __init__(self, name: str, namespace: Optional[str], entry: dict, field: str):
        self.name, self.namespace, self.entry, self.field = name, namespace, entry, field


class ArgoStep(Record):
    """``number``: 1-based; ``action``: the step's first action key (setWeight, pause, ...); ``weight``: the
    weight in effect at this step."""

    __slots__ = ("number", "action", "body", "weight", "description")

    def __init__(self, number: int, action: str, body: dict, weight: int, description: str):
        self.number, self.action, self.body, self.weight, self.description = number, action, body, weight, description

    @property
    def header_route(self) -> Optional[dict]:
        return self.body.get("setHeaderRoute")

    @property
    def mirror_route(self) -> Optional[dict]:
        return self.body.get("setMirrorRoute")


class ArgoRollout(Record):
    """``canary_service``: "" for a subset-level split without services; ``destination_rule``: name,
    canarySubsetName, stableSubsetName[, additionalSubsetNames]."""

    __slots__ = ("document", "canary_service", "stable_service", "virtual_services", "destination_rule",
                 "managed_routes", "steps")

    def __init__(self, document: Document, canary_service: str, stable_service: str,
                 virtual_services: list[VirtualServiceRef], destination_rule: Optional[dict],
                 managed_routes: Optional[list[str]], steps: list[ArgoStep]):
        self.document, self.canary_service, self.stable_service = document, canary_service, stable_service
        self.virtual_services, self.destination_rule = virtual_services, destination_rule
        self.managed_routes, self.steps = managed_routes, steps

    @property
    def namespace(self) -> Optional[str]:
        return self.document.namespace

    def step(self, number: int) -> ArgoStep:
        if not 1 <= number <= len(self.steps):
            raise self.document.error(f"--step {number} is out of range: the Rollout has {len(self.steps)} "
                                      "step(s)", "spec.strategy.canary.steps")
        return self.steps[number - 1]


def split_virtual_service_name(name: str) -> tuple[str, Optional[str]]:
    """Argo's GetVirtualServiceNamespaceName: ``vs``, ``vs.ns`` (last label is the namespace),
    ``vs.ns.svc.cluster.local`` loses ``.cluster.local`` first."""
    if name.endswith(".cluster.local"):
        name = name[: -len(".cluster.local")]
    fields = name.split(".")
    if len(fields) >= 2:
        return ".".join(fields[:-1]), fields[-1]
    return name, None


def _int(document: Document, value: Any, where: str, low: int = 0, high: int = 100) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise document.error(f"must be an integer from {low} to {high}, got {value!r}", where)
    return value


def _string_match(value: Any) -> str:
    value = value if isinstance(value, dict) else {}
    for key, shown in (("exact", "="), ("prefix", "^="), ("regex", "~=")):
        if value.get(key):
            return f"{shown}{value[key]}"
    return " (any)"


def describe_step(action: str, body: dict) -> str:
    value = body.get(action)
    if action == "setWeight":
        return f"setWeight {value}%"
    if action == "pause":
        duration = (value or {}).get("duration") if isinstance(value, dict) else None
        return f"pause {duration}" if duration is not None else "pause (until promoted)"
    if action in ("setHeaderRoute", "setMirrorRoute"):
        value = value if isinstance(value, dict) else {}
        name = value.get("name", "")
        if value.get("match") is None:
            return f"{action} {name}: remove the route"
        if action == "setHeaderRoute":
            conditions = [f"header {m.get('headerName')}{_string_match(m.get('headerValue'))}"
                          for m in value["match"] if isinstance(m, dict)]
            return f"setHeaderRoute {name}: " + " or ".join(conditions) + " -> canary"
        conditions = []
        for m in value["match"]:
            m = m if isinstance(m, dict) else {}
            parts = [f"method{_string_match(m['method'])}"] if m.get("method") else []
            parts += [f"path{_string_match(m['path'])}"] if m.get("path") else []
            parts += [f"header {k}{_string_match(v)}" for k, v in (m.get("headers") or {}).items()]
            conditions.append(" and ".join(parts) or "*")
        percentage = value.get("percentage", 100)
        return f"setMirrorRoute {name}: mirror {percentage}% of " + " or ".join(conditions) + " to canary"
    if action == "analysis":
        listed = value.get("templates") if isinstance(value, dict) else None
        templates = [t.get("templateName") for t in listed if isinstance(t, dict)] if isinstance(listed, list) else []
        names = ",".join(str(t) for t in templates)
        return f"analysis {names} (no traffic change)" if names else "analysis (no traffic change)"
    if action == "experiment":
        return "experiment (no traffic change)"
    if action == "setCanaryScale":
        value = value if isinstance(value, dict) else {}
        scale = (f"{value['replicas']} replicas" if "replicas" in value else f"{value['weight']}% of replicas"
                 if "weight" in value else "match traffic weight")
        return f"setCanaryScale {scale} (no traffic change)"
    return f"{action} (no traffic change)"


def _route_step(document: Document, body: dict, action: str, where: str, managed: Optional[list[str]]) -> None:
    route = as_map(document, body.get(action), f"{where}.{action}", required=True)
    name = as_string(document, route.get("name"), f"{where}.{action}.name")
    if managed is None or name not in managed:
        raise document.error(f"route {name!r} must be listed in spec.strategy.canary.trafficRouting.managedRoutes "
                             "(Argo: Steps define a route that does not exist in managedRoutes)",
                             f"{where}.{action}.name")
    for index, match in enumerate(as_list(document, route.get("match"), f"{where}.{action}.match")):
        match_where = f"{where}.{action}.match[{index}]"
        match = as_map(document, match, match_where, required=True)
        if action == "setHeaderRoute":
            as_string(document, match.get("headerName"), f"{match_where}.headerName")
            value = as_map(document, match.get("headerValue"), f"{match_where}.headerValue", required=True)
            if sum(1 for key in ("exact", "prefix", "regex") if value.get(key)) != 1:
                raise document.error("needs exactly one of exact, prefix, regex", f"{match_where}.headerValue")
    if action == "setMirrorRoute" and route.get("percentage") is not None:
        _int(document, route.get("percentage"), f"{where}.{action}.percentage")


def _steps(document: Document, canary: dict, managed: Optional[list[str]]) -> list[ArgoStep]:
    steps = []
    weight = 0
    for index, step in enumerate(as_list(document, canary.get("steps"), "spec.strategy.canary.steps",
                                         required=True)):
        where = f"spec.strategy.canary.steps[{index}]"
        step = as_map(document, step, where, required=True)
        actions = [key for key in step if key in STEP_KINDS]
        unknown = [key for key in step if key not in STEP_KINDS]
        if unknown:
            raise document.error(f"unknown step field(s) {', '.join(unknown)}; a step is one of "
                                 f"{', '.join(STEP_KINDS)}", where)
        if not actions:
            raise document.error(f"a step needs one of {', '.join(STEP_KINDS)}", where)
        if "setWeight" in step:
            weight = _int(document, step["setWeight"], f"{where}.setWeight")
        for action in ("setHeaderRoute", "setMirrorRoute"):
            if action in step:
                _route_step(document, step, action, where, managed)
        steps.append(ArgoStep(index + 1, actions[0], step, weight,
                              "; ".join(describe_step(action, step) for action in actions)))
    return steps


def read_rollout(document: Document) -> ArgoRollout:
    """The canary strategy of an Argo Rollout that routes through Istio, checked as Argo's validation does."""
    spec = as_map(document, document.body.get("spec"), "spec", required=True)
    strategy = as_map(document, spec.get("strategy"), "spec.strategy", required=True)
    canary = as_map(document, strategy.get("canary"), "spec.strategy.canary", required=True)
    path = "spec.strategy.canary.trafficRouting"
    routing = as_map(document, canary.get("trafficRouting"), path, required=True)
    istio = as_map(document, routing.get("istio"), f"{path}.istio", required=True)
    managed = None
    if routing.get("managedRoutes") is not None:
        managed = [as_string(document, as_map(document, item, f"{path}.managedRoutes[{i}]", True).get("name"),
                             f"{path}.managedRoutes[{i}].name")
                   for i, item in enumerate(as_list(document, routing.get("managedRoutes"), f"{path}.managedRoutes"))]
    single, several = istio.get("virtualService"), istio.get("virtualServices")
    if (single is None) == (several is None):
        raise document.error("needs exactly one of virtualService and virtualServices", f"{path}.istio")
    entries = [(single, f"{path}.istio.virtualService")] if single is not None else [
        (item, f"{path}.istio.virtualServices[{i}]")
        for i, item in enumerate(as_list(document, several, f"{path}.istio.virtualServices", required=True))]
    refs = []
    for entry, where in entries:
        entry = as_map(document, entry, where, required=True)
        name, namespace = split_virtual_service_name(as_string(document, entry.get("name"), f"{where}.name"))
        for key in ("routes", "tlsRoutes", "tcpRoutes"):
            as_list(document, entry.get(key), f"{where}.{key}")
        refs.append(VirtualServiceRef(name, namespace, entry, where))
    destination_rule = None
    if istio.get("destinationRule") is not None:
        where = f"{path}.istio.destinationRule"
        destination_rule = dict(as_map(document, istio["destinationRule"], where, required=True))
        for key in ("name", "canarySubsetName", "stableSubsetName"):
            as_string(document, destination_rule.get(key), f"{where}.{key}")
    canary_service = canary.get("canaryService") or ""
    stable_service = canary.get("stableService") or ""
    if destination_rule is None and not (canary_service and stable_service):
        raise document.error("a host-level split needs canaryService and stableService (or use "
                             "trafficRouting.istio.destinationRule for a subset-level split)", "spec.strategy.canary")
    for key, value in (("canaryService", canary_service), ("stableService", stable_service)):
        if not isinstance(value, str):
            raise document.error("must be a string", f"spec.strategy.canary.{key}")
    return ArgoRollout(document, canary_service, stable_service, refs, destination_rule, managed,
                       _steps(document, canary, managed))
