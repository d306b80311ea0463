"""Lane leaks (GL0401): a rule that sends requests to a service's canary must only catch requests that the
rules after it would have sent to that same service.

A lane rule (an http rule whose route goes to service A's canary — a subset named ``canary`` or ``gray``, or a
``*-canary`` host — and not to A's stable pods) leaks when some request reaches it that, without it, would have
gone to another service B (or to no rule at all: a 404, or to a redirect or direct response). The check looks
for such a request: for every match block of the lane rule and every match block of a later rule that sends
traffic elsewhere (and for "no later rule"), it builds example requests that satisfy both, and evaluates the
VirtualService with Istio's first-match semantics (rules in order; match blocks ORed, conditions ANDed;
``gateways``, ``port``, ``sourceLabels`` and ``sourceNamespace`` decide where a block applies at all). A finding
is reported only with a request that really leaks, so there are no false alarms; a leak that needs a request
none of the example builders find (exotic regexes) can go unreported.
"""
from __future__ import annotations

from typing import Any, Optional

from engine.checks.analyzers.common import Finding, as_list, as_map, finding
from engine.checks.analyzers.requests import (PROBE_VALUE, Probe, block_matches, gateway_key, rule_blocks,
                                              rule_matches, witnesses)
from engine.documents import Document
from engine.errors import InvalidInputError
from engine.records import Record
from engine.routing.hosts import is_service_host, service_key

CANARY_SUBSETS = ("canary", "gray")
CANARY_HOST_SUFFIX = "-canary"
ServiceKey = tuple  # (name, namespace or None)
Canaries = dict  # canary Service -> its stable Service, as a release names them (an Argo Rollout's canaryService)


# --------------------------------------------------------------------------------------------- services

def release_canaries(documents: list[Document]) -> Canaries:
    """The canary Service -> stable Service pairs the Argo Rollouts among ``documents`` name (canaryService,
    stableService), so a canary host is known to stand for its stable Service whatever the two are called
    (``checkout-canary`` beside ``checkout-stable``)."""
    from engine.routing.argo.rollout import is_argo_rollout, read_rollout

    canaries: Canaries = {}
    for document in documents:
        if not is_argo_rollout(document):
            continue
        try:
            rollout = read_rollout(document)
        except InvalidInputError:
            continue  # reported by the Argo analyzers (GL0601)
        if rollout.canary_service and rollout.stable_service:
            canaries[service_key(rollout.canary_service, document.namespace)] = service_key(
                rollout.stable_service, document.namespace)
    return canaries


def canary_service(destination: Any, namespace: Optional[str],
                   canaries: Optional[Canaries] = None) -> Optional[ServiceKey]:
    """The service whose canary a destination is (subset canary/gray, a canary Service of ``canaries``, or a
    ``*-canary`` host), else None."""
    destination = as_map(destination)
    host = destination.get("host")
    if not isinstance(host, str) or not host:
        return None
    if destination.get("subset") in CANARY_SUBSETS:
        return service_key(host, namespace)
    name, service_namespace = service_key(host, namespace)
    stable = next((s for c, s in (canaries or {}).items() if _same(c, (name, service_namespace))), None)
    if stable is not None:
        return stable
    if is_service_host(host) and name.endswith(CANARY_HOST_SUFFIX) and len(name) > len(CANARY_HOST_SUFFIX):
        return name[:-len(CANARY_HOST_SUFFIX)], service_namespace
    return None


def _same(a: ServiceKey, b: ServiceKey) -> bool:
    return a[0] == b[0] and (a[1] is None or b[1] is None or a[1] == b[1])


def route_services(rule: dict, namespace: Optional[str], canaries: Optional[Canaries] = None) -> list[ServiceKey]:
    """The services an http rule sends requests to (a canary counts as its service)."""
    found: list[ServiceKey] = []
    for entry in as_list(rule.get("route")):
        destination = as_map(as_map(entry).get("destination"))
        host = destination.get("host")
        if not isinstance(host, str):
            continue
        key = canary_service(destination, namespace, canaries) or service_key(host, namespace)
        if not any(_same(key, k) for k in found):
            found.append(key)
    return found


def lane_service(rule: dict, namespace: Optional[str], canaries: Optional[Canaries] = None) -> Optional[ServiceKey]:
    """The service A a lane rule serves: it routes to A's canary and not to A's stable pods."""
    lanes, stables = [], []
    for entry in as_list(rule.get("route")):
        destination = as_map(as_map(entry).get("destination"))
        host = destination.get("host")
        if not isinstance(host, str):
            continue
        canary = canary_service(destination, namespace, canaries)
        (lanes if canary else stables).append(canary or service_key(host, namespace))
    for canary in lanes:
        if not any(_same(canary, stable) for stable in stables):
            return canary
    return None


def service_name(key: ServiceKey, namespace: Optional[str] = None) -> str:
    """``name`` for a service of ``namespace`` (or of none, or a host that is no Service), else the FQDN (as Istio
    reads hosts: ``name.namespace`` would name no Service)."""
    return key[0] if key[1] is None or key[1] == namespace else f"{key[0]}.{key[1]}.svc.cluster.local"


# ------------------------------------------------------------------------------------------------ leaks

class Leak(Record):
    """A request a lane rule catches that would otherwise have gone elsewhere: ``rule`` is the lane rule (index
    into spec.http), ``service`` the service the lane is for, ``fallback`` the rule that would have taken it
    (None: none, a 404), ``lost`` the other services it would have reached, ``outcome`` "404", "redirect",
    "direct response", "delegate" when no service."""

    __slots__ = ("rule", "service", "probe", "fallback", "lost", "outcome")

    def __init__(self, rule: int, service: ServiceKey, probe: Probe, fallback: Optional[int],
                 lost: Optional[list] = None, outcome: str = ""):
        self.rule, self.service, self.probe, self.fallback = rule, service, probe, fallback
        self.lost, self.outcome = [] if lost is None else lost, outcome

    def describe(self, namespace: Optional[str] = None, show_gateway: bool = False) -> str:
        where = f"spec.http[{self.fallback}]" if self.fallback is not None else ""
        if self.lost:
            target = ", ".join(service_name(s, namespace) for s in self.lost)
            what = f"requests that {where} sends to {target}"
        elif self.outcome == "404":
            what = "requests no other rule routes (they would get 404)"
        else:
            what = f"requests that {where} answers with a {self.outcome}"
        return (f"this rule sends requests to the canary of {service_name(self.service, namespace)}, but it also catches "
                f"{what}: e.g. {self.probe.describe(show_gateway)}")


def _first_match(rules: list[dict], probe: Probe, namespace: Optional[str]) -> Optional[int]:
    return next((i for i, rule in enumerate(rules) if rule_matches(rule, probe, namespace)), None)


def _outcome(rule: dict) -> str:
    for key, label in (("redirect", "redirect"), ("directResponse", "direct response"), ("delegate", "delegate")):
        if rule.get(key):
            return label
    return "404" if not as_list(rule.get("route")) else ""


def _base_probes(spec: dict, namespace: Optional[str]) -> list[Probe]:
    hosts = [str(h) for h in as_list(spec.get("hosts")) if isinstance(h, str)]
    host = next((h for h in hosts if "*" not in h), None)
    if host is None:
        wildcard = next((h for h in hosts if h.startswith("*.")), None)
        host = f"{PROBE_VALUE}{wildcard[1:]}" if wildcard else "example.com"
    gateways = [gateway_key(g, namespace) for g in as_list(spec.get("gateways"))] or ["mesh"]
    return [Probe(authority=host, gateway=g) for g in dict.fromkeys(gateways)]


class _Routes(Record):
    """The http rules of one VirtualService with what each routes to (``lanes``: lane_service of each rule,
    ``targets``: route_services of each rule), worked out once."""

    __slots__ = ("rules", "namespace", "canaries", "lanes", "targets")

    def __init__(self, rules: list, namespace: Optional[str], canaries: Optional[Canaries] = None):
        self.rules, self.namespace, self.canaries = rules, namespace, canaries
        self.lanes = [lane_service(rule, namespace, canaries) for rule in rules]
        self.targets = [route_services(rule, namespace, canaries) for rule in rules]

    def lane_of(self, index: int, service: ServiceKey) -> bool:
        lane = self.lanes[index]
        return lane is not None and _same(lane, service)

    def elsewhere(self, index: int, mine: list) -> list:
        """The services rule ``index`` routes to that are not among ``mine``."""
        return [s for s in self.targets[index] if not any(_same(s, m) for m in mine)]

    def fallback(self, index: int, service: ServiceKey, probe: Probe) -> Optional[int]:
        """The rule that takes ``probe`` when the lane rules of ``service`` are not there."""
        for later in range(index + 1, len(self.rules)):
            if not self.lane_of(later, service) and rule_matches(self.rules[later], probe, self.namespace):
                return later
        return None


def find_leaks(spec: dict, namespace: Optional[str], canaries: Optional[Canaries] = None) -> list[Leak]:
    """Every lane rule of a VirtualService spec that catches a request meant for elsewhere (one example each)."""
    routes = _Routes([as_map(r) for r in as_list(spec.get("http"))], namespace, canaries)
    bases = _base_probes(spec, namespace)
    leaks: list[Leak] = []
    for index, service in enumerate(routes.lanes):
        if service is None:
            continue
        mine = routes.targets[index]
        targets: list[Optional[dict]] = []
        for later in range(index + 1, len(routes.rules)):
            if not routes.lane_of(later, service) and (_outcome(routes.rules[later]) or routes.elsewhere(later, mine)):
                targets.extend(rule_blocks(routes.rules[later]))
        targets.append(None)  # no later rule at all
        leak = _find_leak(routes, index, service, targets, bases)
        if leak is not None:
            leaks.append(leak)
    return leaks


def _find_leak(routes: _Routes, index: int, service: ServiceKey, targets: list, bases: list) -> Optional[Leak]:
    namespace, mine = routes.namespace, routes.targets[index]
    for block in rule_blocks(routes.rules[index]):
        for target in targets:
            for base in bases:
                for probe in witnesses([block] + ([target] if target is not None else []), namespace, base):
                    if not block_matches(block, probe, namespace):
                        continue
                    fallback = routes.fallback(index, service, probe)
                    if fallback is None:
                        lost, outcome = [], "404"
                    else:
                        outcome, lost = _outcome(routes.rules[fallback]), routes.elsewhere(fallback, mine)
                        if not outcome and not lost:
                            continue
                    if _first_match(routes.rules, probe, namespace) != index:
                        continue
                    return Leak(index, service, probe, fallback, lost, outcome)
    return None


def lane_leaks(document: Document, canaries: Optional[Canaries] = None) -> list[Finding]:
    """GL0401 for each lane rule of a VirtualService that catches requests meant for another service
    (``canaries``: the canary Services releases among the inputs name, see :func:`release_canaries`)."""
    if document.group != "networking.istio.io" or document.kind != "VirtualService":
        return []
    spec, namespace = as_map(document.body.get("spec")), document.namespace
    show_gateway = len(_base_probes(spec, namespace)) > 1
    return [finding("GL0401", document, f"spec.http[{leak.rule}]", leak.describe(namespace, show_gateway))
            for leak in find_leaks(spec, namespace, canaries)]
