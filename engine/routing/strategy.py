"""What a TrafficRouting or Rollout asks for: services, network objects and the traffic strategy of a step.

Follows Kruise: a TrafficRouting routes to a subset of the stable service (canaryService = stableService);
a Rollout routes to ``<service>-canary`` unless ``disableGenerateCanaryService`` is set.
"""
from __future__ import annotations

import re
from typing import Any, Optional

from engine.documents import Document
from engine.records import Record
from engine.fields import as_list as _list
from engine.fields import as_map as _map
from engine.fields import as_string as _string
from engine.routing.argo.rollout import is_argo_rollout, read_rollout, routes_with_istio

ROLLOUTS_GROUP = "rollouts.kruise.io"
HEADER_TYPES = ("Exact", "RegularExpression")
PATH_TYPES = ("Exact", "PathPrefix", "RegularExpression")
MAX_MATCHES = 16
NO_ROUTING = ("no TrafficRouting (rollouts.kruise.io/v1alpha1), Argo Rollout (argoproj.io/v1alpha1 with "
              "trafficRouting.istio) or Rollout in the inputs")
_TRAFFIC = re.compile(r"^\s*(\d{1,3})\s*%\s*$")


class TrafficStrategy(Record):
    """One step's traffic: weight None means the step sets no weight (Kruise passes -1); ``description``: what
    the step does, when weight and matches do not say it (Argo)."""

    __slots__ = ("weight", "matches", "request_header_modifier", "description")

    def __init__(self, weight: Optional[int] = None, matches: Optional[list[dict]] = None,
                 request_header_modifier: Optional[dict] = None, description: Optional[str] = None):
        self.weight, self.matches = weight, [] if matches is None else matches
        self.request_header_modifier, self.description = request_header_modifier, description

    @property
    def routes_traffic(self) -> bool:
        """Kruise's traffic-routing manager runs the network providers only for a strategy with a weight or
        matches; for any other step it leaves the network objects as they are."""
        return self.weight is not None or bool(self.matches)


class NetworkRef(Record):
    """``field``: where it was declared, for messages."""

    __slots__ = ("api_version", "kind", "name", "field")

    def __init__(self, api_version: str, kind: str, name: str, field: str):
        self.api_version, self.kind, self.name, self.field = api_version, kind, name, field


class RouteTarget(Record):
    """One objectRef (TrafficRouting) or trafficRoutings entry (Rollout); ``subsets``: the (canary, stable)
    subset names of an Argo subset-level split."""

    __slots__ = ("stable_service", "canary_service", "network_refs", "ingress", "field", "subsets")

    def __init__(self, stable_service: str, canary_service: str, network_refs: list[NetworkRef],
                 ingress: Optional[dict], field: str, subsets: Optional[tuple[str, str]] = None):
        self.stable_service, self.canary_service, self.network_refs = stable_service, canary_service, network_refs
        self.ingress, self.field, self.subsets = ingress, field, subsets


class RoutingPlan(Record):
    """``step``: 1-based, None for a TrafficRouting; ``argo``: the ArgoRollout (engine.routing.argo) of an
    argoproj.io Rollout."""

    __slots__ = ("document", "targets", "strategy", "step", "step_count", "argo")

    def __init__(self, document: Document, targets: list[RouteTarget], strategy: TrafficStrategy,
                 step: Optional[int], step_count: int, argo: Any = None):
        self.document, self.targets, self.strategy = document, targets, strategy
        self.step, self.step_count, self.argo = step, step_count, argo


def is_traffic_routing(document: Document) -> bool:
    return document.group == ROLLOUTS_GROUP and document.kind == "TrafficRouting"


def is_rollout(document: Document) -> bool:
    return document.group == ROLLOUTS_GROUP and document.kind == "Rollout"


def delegates_traffic(document: Document) -> bool:
    """A Rollout that declares no trafficRoutings and leaves traffic to a TrafficRouting (v1beta1
    ``canary.trafficRoutingRef``, or Kruise 0.5's ``rollouts.kruise.io/trafficrouting`` annotation)."""
    spec = document.body.get("spec")
    canary = (((spec or {}).get("strategy") or {}).get("canary") or {}) if isinstance(spec, dict) else {}
    if not isinstance(canary, dict) or canary.get("trafficRoutings"):
        return False
    annotations = document.metadata.get("annotations") or {}
    return bool(canary.get("trafficRoutingRef")) or "rollouts.kruise.io/trafficrouting" in annotations


def is_routing_document(document: Document) -> bool:
    return (is_traffic_routing(document) or (is_rollout(document) and not delegates_traffic(document))
            or (is_argo_rollout(document) and routes_with_istio(document)))


def step_count(document: Document) -> int:
    """How many steps a Rollout (Kruise or Argo) has; 0 for a TrafficRouting."""
    if is_argo_rollout(document):
        return len(read_rollout(document).steps)
    return len(rollout_steps(document)) if is_rollout(document) else 0


def parse_weight(document: Document, value: Any, path: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise document.error(f"weight must be an integer from 0 to 100, got {value!r}", path)
    return value


def parse_traffic(document: Document, value: Any, path: str) -> Optional[int]:
    """Kruise's ``traffic: "5%"`` (an IntOrString percentage) -> 5."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return parse_weight(document, value, path)
    match = _TRAFFIC.match(str(value))
    if not match or int(match.group(1)) > 100:
        raise document.error(f'traffic must be a percentage from "0%" to "100%", got {value!r}', path)
    return int(match.group(1))


def _typed_matches(document: Document, items: Any, path: str, default_type: str, allowed: tuple) -> list:
    result = []
    for index, item in enumerate(_list(document, items, path)):
        where = f"{path}[{index}]"
        item = _map(document, item, where, required=True)
        match_type = item.get("type", default_type)
        if match_type not in allowed:
            raise document.error(f"type must be one of {', '.join(allowed)}, got {match_type!r}", f"{where}.type")
        _string(document, item.get("name"), f"{where}.name")
        if not isinstance(item.get("value"), str):
            raise document.error("must be a string", f"{where}.value")
        result.append({**item, "type": match_type})
    return result


def parse_matches(document: Document, value: Any, path: str) -> list[dict]:
    """Validate matches and fill the defaults the Kruise CRD would (type Exact, path type PathPrefix)."""
    matches = _list(document, value, path)
    if len(matches) > MAX_MATCHES:
        raise document.error(f"at most {MAX_MATCHES} matches are allowed, got {len(matches)}", path)
    result = []
    for index, match in enumerate(matches):
        where = f"{path}[{index}]"
        match = dict(_map(document, match, where, required=True))
        unknown = set(match) - {"path", "headers", "queryParams"}
        if unknown:
            raise document.error(f"unknown field(s) {', '.join(sorted(unknown))}", where)
        if "headers" in match:
            match["headers"] = _typed_matches(document, match["headers"], f"{where}.headers", "Exact", HEADER_TYPES)
            seen: dict[str, int] = {}
            for position, header in enumerate(match["headers"]):
                folded = header["name"].lower()
                if folded in seen:  # Istio keys a match's headers by lower-cased name: one would silently win
                    raise document.error(f"header {header['name']!r} is also matched by {where}.headers[{seen[folded]}]"
                                         "; header names are case-insensitive, so one match can test a header once "
                                         "(use a regex, or one match per value) [GL0112]",
                                         f"{where}.headers[{position}].name")
                seen[folded] = position
        if "queryParams" in match:
            match["queryParams"] = _typed_matches(document, match["queryParams"], f"{where}.queryParams",
                                                  "Exact", HEADER_TYPES)
        if "path" in match:
            path_match = dict(_map(document, match["path"], f"{where}.path", required=True))
            path_match.setdefault("type", "PathPrefix")
            path_match.setdefault("value", "/")
            if path_match["type"] not in PATH_TYPES:
                raise document.error(f"type must be one of {', '.join(PATH_TYPES)}, got {path_match['type']!r}",
                                     f"{where}.path.type")
            match["path"] = path_match
        if not any(match.get(key) for key in ("path", "headers", "queryParams")):
            raise document.error("a match needs a path, headers or queryParams", where)
        result.append(match)
    return result


def parse_header_modifier(document: Document, value: Any, path: str) -> Optional[dict]:
    if value is None:
        return None
    modifier = _map(document, value, path, required=True)
    for key in modifier:
        if key not in ("set", "add", "remove"):
            raise document.error(f"unknown field {key!r}", f"{path}.{key}")
    for key in ("set", "add"):
        for index, item in enumerate(_list(document, modifier.get(key), f"{path}.{key}")):
            item = _map(document, item, f"{path}.{key}[{index}]", required=True)
            _string(document, item.get("name"), f"{path}.{key}[{index}].name")
            if not isinstance(item.get("value"), str):
                raise document.error("must be a string", f"{path}.{key}[{index}].value")
    for index, name in enumerate(_list(document, modifier.get("remove"), f"{path}.remove")):
        _string(document, name, f"{path}.remove[{index}]")
    return modifier


def _strategy(document: Document, source: dict, path: str, weight: Optional[int]) -> TrafficStrategy:
    return TrafficStrategy(
        weight=weight,
        matches=parse_matches(document, source.get("matches"), f"{path}.matches"),
        request_header_modifier=parse_header_modifier(document, source.get("requestHeaderModifier"),
                                                      f"{path}.requestHeaderModifier"),
    )


def _targets(document: Document, refs: list, path: str, canary_suffix: Optional[str]) -> list[RouteTarget]:
    targets = []
    for index, ref in enumerate(refs):
        where = f"{path}[{index}]"
        ref = _map(document, ref, where, required=True)
        stable = _string(document, ref.get("service"), f"{where}.service")
        network_refs = []
        for ref_index, network in enumerate(_list(document, ref.get("customNetworkRefs"),
                                                  f"{where}.customNetworkRefs")):
            ref_path = f"{where}.customNetworkRefs[{ref_index}]"
            network = _map(document, network, ref_path, required=True)
            network_refs.append(NetworkRef(
                _string(document, network.get("apiVersion"), f"{ref_path}.apiVersion"),
                _string(document, network.get("kind"), f"{ref_path}.kind"),
                _string(document, network.get("name"), f"{ref_path}.name"),
                ref_path,
            ))
        ingress = ref.get("ingress")
        if ingress is not None:
            ingress = _map(document, ingress, f"{where}.ingress", required=True)
            _string(document, ingress.get("name"), f"{where}.ingress.name")
        canary = stable if canary_suffix is None else stable + canary_suffix
        targets.append(RouteTarget(stable, canary, network_refs, ingress, where))
    return targets


def rollout_steps(document: Document) -> list[TrafficStrategy]:
    """Every step's traffic strategy of a v1beta1 (``traffic: "N%"``) or v1alpha1 (``weight: N``) Rollout."""
    canary = _map(document, _map(document, document.body.get("spec"), "spec", True).get("strategy"),
                  "spec.strategy", True).get("canary")
    canary = _map(document, canary, "spec.strategy.canary", required=True)
    steps = _list(document, canary.get("steps"), "spec.strategy.canary.steps", required=True)
    strategies = []
    for index, step in enumerate(steps):
        path = f"spec.strategy.canary.steps[{index}]"
        step = _map(document, step, path, required=True)
        if "traffic" in step:
            weight = parse_traffic(document, step.get("traffic"), f"{path}.traffic")
        else:
            weight = parse_weight(document, step.get("weight"), f"{path}.weight")
        strategies.append(_strategy(document, step, path, weight))
    return strategies


def plan(document: Document, step: Optional[int] = None) -> RoutingPlan:
    """The routing plan of a TrafficRouting, or of one step (1-based, default 1) of a Rollout."""
    if is_argo_rollout(document):
        from engine.routing.argo.render import argo_plan
        return argo_plan(read_rollout(document), 1 if step is None else step)
    spec = _map(document, document.body.get("spec"), "spec", required=True)
    if is_traffic_routing(document):
        strategy_source = _map(document, spec.get("strategy"), "spec.strategy")
        strategy = _strategy(document, strategy_source, "spec.strategy",
                             parse_weight(document, strategy_source.get("weight"), "spec.strategy.weight"))
        refs = _list(document, spec.get("objectRef"), "spec.objectRef", required=True)
        return RoutingPlan(document, _targets(document, refs, "spec.objectRef", None), strategy, None, 1)
    steps = rollout_steps(document)
    chosen = 1 if step is None else step
    if not 1 <= chosen <= len(steps):
        raise document.error(f"--step {chosen} is out of range: the Rollout has {len(steps)} step(s)",
                             "spec.strategy.canary.steps")
    canary = spec["strategy"]["canary"]
    refs = _list(document, canary.get("trafficRoutings"), "spec.strategy.canary.trafficRoutings", required=True)
    suffix = None if canary.get("disableGenerateCanaryService") else "-canary"
    targets = _targets(document, refs, "spec.strategy.canary.trafficRoutings", suffix)
    return RoutingPlan(document, targets, steps[chosen - 1], chosen, len(steps))
