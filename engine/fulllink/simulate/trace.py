"""The simulator's result: a tree of hops and the destinations each reached, the paths through it, and
``--expect`` checks on it."""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Optional

from engine.fulllink.envoy import HttpRequest
from engine.errors import InvalidInputError
from engine.routing.names import did_you_mean
from engine.routing.hosts import request_service_key
from engine.fulllink.simulate.mesh import Workload


@dataclass
class ColoringStep:
    envoy_filter: str
    changes: list  # (action, name, old, new)
    logs: list
    route_cache_cleared: int
    error: Optional[str] = None
    local_reply: Optional[dict] = None
    notes: list = field(default_factory=list)


@dataclass
class Arrival:
    """One destination of a hop served by one workload's pods (or an error status), with its share."""

    share: Fraction  # of the hop's requests
    total_share: Fraction  # of all requests
    destination: str  # host as written in the route
    subset: Optional[str]
    service: Optional[str]  # ns/name
    destination_rule: Optional[str]
    subset_labels: dict
    workload: Optional[Workload]
    status: int
    reason: str
    request: Optional[HttpRequest] = None  # what the pods receive
    calls: list = field(default_factory=list)  # of Hop
    notes: list = field(default_factory=list)
    versions: int = 1  # workloads behind this destination


@dataclass
class Hop:
    depth: int
    caller: str
    proxy: str
    request: HttpRequest
    share: Fraction
    forwarded: list = field(default_factory=list)
    dropped: list = field(default_factory=list)
    coloring: list = field(default_factory=list)
    virtual_service: Optional[str] = None
    rule: Optional[str] = None
    matched: Optional[str] = None
    skipped: list = field(default_factory=list)
    status: Optional[int] = None  # when the hop ends here (no route, redirect, direct response, local reply)
    reason: Optional[str] = None
    notes: list = field(default_factory=list)
    arrivals: list = field(default_factory=list)
    target: Optional[str] = None  # the service key called (None at the gateway)


@dataclass
class Expectation:
    service: str  # ns/name (or name); for "no-leak", "" means every lane
    label: str
    value: str
    text: str
    ok: bool = False
    details: list = field(default_factory=list)
    kind: str = "served-by"  # or "no-leak": the lane captures no other service's traffic


@dataclass
class LaneReport:
    """One lane (the canary rules of one service in one VirtualService) and the other services' traffic it
    captures: each leak as ``(rule index, description)``; none is the goal."""

    virtual_service: str  # ns/name
    service: str  # ns/name of the released service
    rules: list  # indexes of its lane rules
    leaks: list = field(default_factory=list)


@dataclass
class PathStep:
    service: Optional[str]
    workload: Optional[str]
    labels: dict
    status: int
    reason: str


@dataclass
class Path:
    share: Fraction
    steps: list


@dataclass
class Trace:
    request: HttpRequest
    entry: str
    root: Hop
    propagated: list
    warnings: list = field(default_factory=list)
    expectations: list = field(default_factory=list)
    rendered: list = field(default_factory=list)  # objects rendered from TrafficRoutings before simulating
    lanes: list = field(default_factory=list)  # LaneReport of every lane in the simulated objects

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.expectations)

    def arrivals(self) -> list:
        found: list = []

        def walk(hop: Hop) -> None:
            for arrival in hop.arrivals:
                found.append(arrival)
                for call in arrival.calls:
                    walk(call)
        walk(self.root)
        return found

    def paths(self) -> list:
        """Every root-to-leaf path with its share of all requests."""
        result: list = []

        def walk(hop: Hop, steps: list) -> None:
            if not hop.arrivals:
                result.append(Path(hop.share, steps + [PathStep(hop.target, None, {}, hop.status or 0,
                                                                 hop.reason or "")]))
                return
            for arrival in hop.arrivals:
                step = PathStep(arrival.service, arrival.workload.describe() if arrival.workload else None,
                                arrival.workload.labels if arrival.workload else {}, arrival.status, arrival.reason)
                if arrival.calls:
                    for call in arrival.calls:
                        walk(call, steps + [step])
                else:
                    result.append(Path(arrival.total_share, steps + [step]))
        walk(self.root, [])
        return result


NO_LEAK = "no-leak"


def _service_name(text: str, service: str, namespace: Optional[str]) -> str:
    service_namespace: Optional[str]
    if "/" in service:
        service_namespace, name = service.split("/", 1)
    else:
        name, service_namespace = request_service_key(service, namespace)
    if not name or "." in name or "*" in name:
        raise InvalidInputError(f"--expect {text!r}: {service!r} is not a service name")
    return f"{service_namespace}/{name}" if service_namespace else name


def parse_expectation(text: str, namespace: Optional[str] = None) -> Expectation:
    """``SERVICE=LABEL=VALUE``: every request that reaches SERVICE is served by pods with LABEL=VALUE.
    SERVICE is ``name`` (any namespace), ``ns/name`` or ``name.ns``. ``no-leak`` (or ``no-leak=SERVICE``): no
    lane (of SERVICE) captures another service's traffic."""
    keyword, sep, rest = text.partition("=")
    if keyword.strip() == NO_LEAK and "=" not in rest:
        service = _service_name(text, rest.strip(), namespace) if sep and rest.strip() else ""
        return Expectation(service, "", "", text, kind=NO_LEAK)
    parts = text.split("=", 2)
    if len(parts) != 3 or not all(p.strip() for p in parts[:2]):
        raise InvalidInputError(f"--expect {text!r}: expected SERVICE=LABEL=VALUE, e.g. mocka=version=canary")
    service, label, value = (p.strip() for p in parts)
    return Expectation(_service_name(text, service, namespace), label, value, text)


def _expected_service(expectation: Expectation, service: Optional[str]) -> bool:
    if service is None:
        return False
    if "/" in expectation.service:
        return service == expectation.service
    return service.split("/", 1)[1] == expectation.service


def _check_lanes(trace: Trace, expectation: Expectation) -> None:
    lanes = [lane for lane in trace.lanes if not expectation.service or _expected_service(expectation, lane.service)]
    expectation.details.extend(f"VirtualService {lane.virtual_service} http[{rule}]: {text}"
                               for lane in lanes for rule, text in lane.leaks)
    if not lanes:
        expectation.details.append("no lane " + (f"of {expectation.service} " if expectation.service else "")
                                   + "among the simulated VirtualServices")
    expectation.ok = not expectation.details


def check_expectations(trace: Trace, expectations: list,
                       unreached: Optional[Callable[[Expectation], str]] = None) -> list:
    """Decide each expectation on the trace (``unreached``: says what would make a service reached)."""
    arrivals = trace.arrivals()
    for expectation in expectations:
        if expectation.kind == NO_LEAK:
            _check_lanes(trace, expectation)
            continue
        reached = [a for a in arrivals if _expected_service(expectation, a.service)]
        if not reached:
            expectation.ok = False
            services = [a.service for a in arrivals if a.service]
            names = services + [s.split("/", 1)[-1] for s in services]
            expectation.details.append(f"the request never reaches {expectation.service}"
                                       + did_you_mean(expectation.service, names)
                                       + (unreached(expectation) if unreached else ""))
            continue
        failures = []
        for arrival in reached:
            if arrival.status != 200 or arrival.workload is None:
                failures.append(f"{percent(arrival.total_share)} of requests get {arrival.status or 'no answer'} "
                                f"({arrival.reason})")
            else:
                got = arrival.workload.labels.get(expectation.label)
                if got != expectation.value:
                    failures.append(f"{percent(arrival.total_share)} of requests reach {arrival.workload.describe()} "
                                    f"({expectation.label}={got if got is not None else '<unset>'})")
        expectation.ok = not failures
        expectation.details.extend(failures)
    trace.expectations = expectations
    return expectations


def percent(share: Fraction) -> str:
    """A share as a percentage: exact when whole, else 4 significant digits."""
    value = share * 100
    if value.denominator == 1:
        return f"{value.numerator}%"
    return f"{float(value):.4g}%"
