"""Request-routing simulator: where does one request go, hop by hop, through gateway, VirtualServices,
DestinationRules and pods? Pure: documents and a request in, a :class:`Trace` out.

At the ingress gateway the coloring Lua of the EnvoyFilters that apply there runs in the Envoy emulation
(:mod:`engine.fulllink.envoy`) and its header changes are applied. At each hop the VirtualService bound to the proxy
and host is chosen, its first matching http rule decides, and every destination (with its exact weight
share) is resolved through the DestinationRule subset and the Service selector to the workloads whose pods
serve it (none: 503 "no healthy upstream"). Each serving workload then makes the calls of the call graph;
only propagated headers travel with them. Splits are followed branch by branch, with exact shares.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Optional

from engine.fulllink.chain import Call
from engine.documents import Document
from engine.fulllink.envoy import EnvoyLuaEmulator, HttpRequest, shared_emulator
from engine.checks.analyzers.lanes import find_leaks, lane_service, release_canaries
from engine.checks.workloads import looks_like_workload
from engine.errors import InvalidInputError
from engine.routing.hosts import fqdn, how_to_write, is_service_host, request_service_key, service_key
from engine.routing.names import did_you_mean
from engine.fulllink.simulate.inputs import (
    CALLS_ANNOTATION,
    PROPAGATE_ANNOTATION,
    call_graph,
    chain_specs,
    parse_call,
    propagated_headers,
    rendered_state,
    rollout_workloads,
)
from engine.fulllink.simulate.mesh import (
    Mesh,
    RouteContext,
    labels_of,
    rule_label,
    selects,
    select_rule,
)
from engine.fulllink.simulate.trace import (
    Arrival,
    ColoringStep,
    Expectation,
    Hop,
    LaneReport,
    Path,
    PathStep,
    Trace,
    check_expectations,
    parse_expectation,
    percent,
)

__all__ = ["CALLS_ANNOTATION", "PROPAGATE_ANNOTATION", "Arrival", "ColoringStep", "Expectation", "Hop", "Options",
           "Path", "PathStep", "Simulator", "Trace", "call_graph", "check_expectations", "parse_call",
           "parse_expectation", "propagated_headers", "rendered_state", "route_shares", "simulate"]

MAX_HOPS = 32
ISTIO = "networking.istio.io"


@dataclass
class Options:
    namespace: str = "default"
    entry: Optional[str] = None  # "gateway" or "mesh"; None: gateway when the inputs hold a Gateway
    gateway: Optional[str] = None  # "[ns/]name" of the Gateway to enter through
    gateway_namespace: str = "istio-system"  # where the gateway pods run (unless a workload in the inputs says)
    gateway_labels: dict = field(default_factory=dict)  # extra labels of the gateway pods
    root_namespace: str = "istio-system"
    calls: dict = field(default_factory=dict)  # {"ns/service": [Call]} from the command line (wins)
    propagate: list = field(default_factory=list)  # extra headers every service forwards ("*": all)
    rollout_pods: bool = False  # add the canary pods Rollouts with patchPodTemplateMetadata would create
    max_hops: int = MAX_HOPS  # a chain deeper than this stops with a note


# --------------------------------------------------------------------------------------------- simulation

class Simulator:
    def __init__(self, documents: list, options: Optional[Options] = None,
                 emulator: Optional[EnvoyLuaEmulator] = None):
        self.options = options or Options()
        self.documents = documents
        self.mesh = Mesh(documents, self.options.namespace, self.options.root_namespace)
        self.specs = chain_specs(documents)
        self.rollout_pods = rollout_workloads(documents, self.mesh)  # what --rollout-pods adds
        if self.options.rollout_pods:
            self.mesh.workloads.extend(self.rollout_pods)
        self.graph = call_graph(documents, self.specs, self.mesh, self.options.calls)
        self.propagate = propagated_headers(documents, self.specs, self.options.propagate)
        self.emulator = emulator
        self.warnings: list = [unread_workload_warning(d) for d in documents if looks_like_workload(d)]

    def run(self, request: HttpRequest) -> Trace:
        entry = self.options.entry or ("gateway" if self.mesh.gateways or self.options.gateway else "mesh")
        if entry == "gateway":
            root = self.gateway_hop(request)
        else:
            context = RouteContext({"mesh"}, self.options.namespace)
            root = Hop(0, f"a client in namespace {self.options.namespace}", "the client's sidecar", request,
                       Fraction(1))
            root.target = self._target_key(request.host, self.options.namespace)
            self.route(root, context, [])
        return Trace(request, entry, root, list(self.propagate), self.warnings)

    # ------------------------------------------------------------------ gateway

    def choose_gateways(self, request: HttpRequest) -> list:
        """The Gateways the request enters through: those serving its host on one gateway workload (Istio merges
        Gateways that select the same pods), preferring the one --gateway or a FullLinkGray spec names."""
        if self.options.gateway:
            gateway = self.mesh.gateway_named(self.options.gateway)
            if gateway is None:
                have = [self.mesh.key(g) for g in self.mesh.gateways]
                raise InvalidInputError(f"--gateway {self.options.gateway}: no such Gateway among the inputs "
                                        f"(have: {', '.join(have) or 'none'})"
                                        + did_you_mean(self.options.gateway, have + [g.name for g in self.mesh.gateways]))
            found = [gateway]
        else:
            found = self.mesh.gateways_for_host(request.host)
            if not found:
                raise InvalidInputError(f"no Gateway among the inputs serves host {request.host!r}; "
                                        "use --mesh to start inside the mesh")
        groups: dict = {}
        for gateway in found:
            selector = labels_of((gateway.body.get("spec") or {}).get("selector"))
            groups.setdefault(tuple(sorted(selector.items())), []).append(gateway)
        if len(groups) == 1:
            return found
        named = {spec.gateway_name if "/" in spec.gateway_name else f"{spec.namespace}/{spec.gateway_name}"
                 for spec in self.specs if spec.gateway_name}
        preferred = [group for group in groups.values() if any(self.mesh.key(g) in named for g in group)]
        if len(preferred) == 1:
            return preferred[0]
        raise InvalidInputError(f"Gateways on different gateway pods serve host {request.host!r} "
                                f"({', '.join(self.mesh.key(g) for g in found)}); choose one with --gateway")

    def gateway_hop(self, request: HttpRequest) -> Hop:
        gateways = self.choose_gateways(request)
        keys = [self.mesh.key(g) for g in gateways]
        namespace, labels, workload = self.mesh.gateway_workload(gateways[0], self.options.gateway_namespace,
                                                                 self.options.gateway_labels)
        pods = workload.describe() if workload else f"pods {_labels_text(labels)} in {namespace} (assumed)"
        names = ", ".join(keys)
        hop = Hop(0, "client", f"ingress gateway (Gateway{'s' if len(keys) > 1 else ''} {names}; {pods})", request,
                  Fraction(1))
        patches, notes = self.mesh.lua_patches(namespace, labels, "GATEWAY")
        hop.notes.extend(notes)
        current = request
        for patch in patches:
            emulator = self.emulator or shared_emulator()
            name = f"EnvoyFilter {self.mesh.key(patch.envoy_filter)}"
            origin = f"{name} configPatches[{patch.index}] inlineCode"
            result = emulator.on_request(patch.code, current, origin)
            step = ColoringStep(name, result.changes(), result.logs, result.route_cache_cleared, result.error,
                                result.local_reply, list(patch.notes))
            if result.error:
                step.notes.append("the script failed; Envoy logs the error and lets the request continue with "
                                  "the changes made so far")
            if not result.has_on_request:
                step.notes.append("the code defines no envoy_on_request function")
            if step.changes and not result.route_cache_cleared:
                step.notes.append("headers changed without clearRouteCache(): Envoy may keep a route chosen "
                                  "before the change")
            hop.coloring.append(step)
            current = result.request
            if result.local_reply:
                status = str((result.local_reply.get("headers") or {}).get(":status", "200"))
                hop.status = int(status) if status.isdigit() else 200
                hop.reason = f"local reply from {name}"
                hop.request = current
                return hop
        hop.request = current
        context = RouteContext(set(keys), namespace, labels, _port_of(request))
        self.route(hop, context, [])
        return hop

    # ------------------------------------------------------------------ routing

    def route(self, hop: Hop, context: RouteContext, visited: list) -> None:
        request = hop.request
        services = self.mesh.virtual_services_for(request.host, context)
        if len(services) > 1 and "mesh" in context.gateways:
            hop.notes.append(f"several VirtualServices for {request.host} ({', '.join(self.mesh.key(d) for d in services)});"
                             f" Istio uses one of them, assumed {self.mesh.key(services[0])}")
        if not services:
            if "mesh" not in context.gateways:
                hop.status, hop.reason = 404, f"no VirtualService binds host {request.host} to this gateway"
                return
            service = self.mesh.service_for_request(request.host, context.namespace)
            if service is None:
                hop.status, hop.reason = 503, f"no Service {request.host} in the inputs (and no VirtualService)"
                return
            hop.notes.append(f"no VirtualService for {request.host}: Istio routes to the whole Service")
            whole = fqdn(service.name, self.mesh.ns(service))
            self.destinations(hop, [({"host": whole}, Fraction(1), {})], context, context.namespace, visited)
            return
        document = services[0]
        namespace = self.mesh.ns(document)
        hop.virtual_service = self.mesh.key(document)
        index, rule, matched, skipped = select_rule(document, request, context, namespace)
        hop.skipped = skipped
        if rule is None or index is None:
            hop.status, hop.reason = 404, f"no http rule of VirtualService {hop.virtual_service} matches (NR)"
            return
        hop.rule, hop.matched = rule_label(index, rule), matched
        if rule.get("redirect"):
            redirect = rule["redirect"]
            hop.status = int(redirect.get("redirectCode", 301))
            hop.reason = f"redirect to {redirect.get('authority', request.authority)}{redirect.get('uri', request.path)}"
            return
        if rule.get("directResponse"):
            hop.status = int(rule["directResponse"].get("status", 200))
            hop.reason = "direct response"
            return
        if rule.get("delegate"):
            hop.status, hop.reason = 0, "delegates to another VirtualService (not simulated)"
            return
        if rule.get("mirror"):
            mirror = rule["mirror"]
            hop.notes.append(f"mirrors to {mirror.get('host')}" + (f" subset {mirror['subset']}" if mirror.get('subset')
                                                                  else "") + " (responses ignored; not followed)")
        for delay in [((rule.get("fault") or {}).get("delay"))]:
            if delay:
                hop.notes.append(f"fault injection delays requests by {delay.get('fixedDelay', '?')}")
        routes = [r for r in rule.get("route") or [] if isinstance(r, dict) and isinstance(r.get("destination"), dict)]
        if not routes:
            hop.status, hop.reason = 0, f"{hop.rule} has no route"
            return
        shares = route_shares(routes)
        if sum(int(r.get("weight", 0) or 0) for r in routes) not in (0, 100) and len(routes) > 1:
            hop.notes.append("route weights do not add up to 100; shares are proportional to them")
        rule_headers = ((rule.get("headers") or {}).get("request")) or {}
        branches = [(r["destination"], share, [rule_headers, ((r.get("headers") or {}).get("request")) or {}])
                    for r, share in zip(routes, shares, strict=True)]
        abort = (rule.get("fault") or {}).get("abort")
        if abort:
            abort_percent = Fraction(str(((abort.get("percentage") or {}).get("value", 100))))
            aborted = min(max(abort_percent / 100, Fraction(0)), Fraction(1))
            status = int(abort.get("httpStatus", 503) or 503)
            hop.arrivals.append(Arrival(aborted, hop.share * aborted, "(fault injection)", None, None, None, {}, None,
                                        status, f"aborted by fault injection ({percent(aborted)})"))
            branches = [(d, s * (1 - aborted), h) for d, s, h in branches]
        rewrite = rule.get("rewrite") or {}
        self.destinations(hop, branches, context, namespace, visited, rewrite)

    def destinations(self, hop: Hop, branches: list, context: RouteContext, namespace: str, visited: list,
                     rewrite: Optional[dict] = None) -> None:
        for destination, share, header_ops in branches:
            if share == 0:
                continue
            host = str(destination.get("host", ""))
            subset = destination.get("subset")
            request = _apply_header_ops(hop.request, header_ops if isinstance(header_ops, list) else [header_ops])
            if rewrite:
                request = _rewrite(request, rewrite)
            for arrival in self.serve(host, subset, namespace, context.namespace, share, hop.share):
                arrival.request = request
                hop.arrivals.append(arrival)
                if arrival.status == 200 and arrival.workload is not None:
                    self.calls(hop, arrival, visited)

    def serve(self, host: str, subset: Optional[str], namespace: str, client_namespace: str, share: Fraction,
              hop_share: Fraction) -> list:
        """Which pods serve a destination: one Arrival per workload, shares by replica count."""
        def arrival(status: int, reason: str, **kwargs: Any) -> Arrival:
            return Arrival(share, hop_share * share, host, subset, kwargs.get("service"), kwargs.get("rule"),
                           kwargs.get("labels", {}), None, status, reason, notes=kwargs.get("notes", []))

        advice = how_to_write(host, namespace, "the VirtualService")
        if advice and self.mesh.service_for_request(host, namespace) is not None:  # DNS would reach it, Istio not
            return [arrival(503, f"Istio takes destination host {host} literally (it expands only names without "
                                 f"dots), so it names no Service and requests get 503 (no cluster): {advice}")]
        if not is_service_host(host):
            return [arrival(502, f"{host} is not a Service of the cluster (leaves the mesh; not followed)")]
        service = self.mesh.service_for_host(host, namespace)
        name, service_namespace = service_key(host, namespace)
        service_namespace = service_namespace or namespace
        key = f"{service_namespace}/{name}"
        if service is None:
            return [arrival(503, f"no Service {key} in the inputs", service=key)]
        target = fqdn(name, service_namespace)
        rule, notes = self.mesh.destination_rule_for(target, client_namespace, service_namespace)
        rule_key = self.mesh.key(rule) if rule is not None else None
        subset_labels: dict = {}
        if subset:
            if rule is None:
                return [arrival(503, f"subset {subset} requested, but no DestinationRule covers {target} "
                                     "(no cluster for the subset)", service=key, notes=notes)]
            found = [s for s in (rule.body.get("spec") or {}).get("subsets") or []
                     if isinstance(s, dict) and s.get("name") == subset]
            if not found:
                return [arrival(503, f"DestinationRule {rule_key} has no subset {subset} (no cluster for the subset)",
                                service=key, rule=rule_key, notes=notes)]
            subset_labels = labels_of(found[0].get("labels"))
        selector = labels_of((service.body.get("spec") or {}).get("selector"))
        if not selector:
            return [arrival(0, f"Service {key} has no selector: its endpoints are managed by hand, so the serving "
                               "pods are unknown", service=key, rule=rule_key, labels=subset_labels, notes=notes)]
        workloads = [w for w in self.mesh.pods(service_namespace, selector, subset_labels)]
        running = sorted((w for w in workloads if w.replicas > 0), key=lambda w: (w.name, w.kind))
        if not running:
            why = f"no pods match the Service selector {_labels_text(selector)}"
            if subset:
                why += f" plus subset {subset} {_labels_text(subset_labels)}"
            if workloads:
                why += f" ({', '.join(w.describe() for w in workloads)} scaled to 0)"
            elif not self.options.rollout_pods:
                would = [w for w in self.rollout_pods if w.namespace == service_namespace
                         and selects(selector, w.labels) and selects(subset_labels, w.labels)]
                if would:
                    why += f"; the {would[0].synthetic} would match: add --rollout-pods to count them"
            return [arrival(503, f"no healthy upstream: {why}", service=key, rule=rule_key, labels=subset_labels,
                            notes=notes)]
        total = sum(w.replicas for w in running)
        result = []
        for workload in running:
            part = Fraction(workload.replicas, total)
            item = Arrival(share * part, hop_share * share * part, host, subset, key, rule_key, subset_labels,
                           workload, 200, "served", notes=list(notes), versions=len(running))
            if len(running) > 1:
                item.notes.append(f"{'subset ' + subset if subset else 'the Service'} selects pods of "
                                  f"{len(running)} workloads ({', '.join(w.describe() for w in running)}): "
                                  "more than one version serves it")
            if workload.synthetic:
                item.notes.append(f"{workload.synthetic} (--rollout-pods)")
            result.append(item)
        return result

    def calls(self, hop: Hop, arrival: Arrival, visited: list) -> None:
        callees = self.graph.get(arrival.service or "", [])
        path = visited + [arrival.service]
        for call in callees:
            if call.service in path:
                arrival.notes.append(f"calls {call.service} again (a cycle): not followed")
                continue
            if hop.depth + 1 >= self.options.max_hops:
                arrival.notes.append(f"the chain is deeper than {self.options.max_hops} hops: stopped (--max-hops)")
                return
            arrival.calls.append(self.call(hop, arrival, call, path))

    def call(self, hop: Hop, arrival: Arrival, call: Call, visited: list) -> Hop:
        workload = arrival.workload
        assert workload is not None and arrival.request is not None
        namespace, _, name = call.service.partition("/")
        service = self.mesh.service_by_key(call.service)
        port = call.port or _first_port(service)
        short = name if namespace == workload.namespace else f"{name}.{namespace}"
        forwarded, dropped = [], []
        headers = []
        for header_name, value in arrival.request.headers:
            if "*" in self.propagate or header_name in self.propagate:
                headers.append((header_name, value))
                if header_name not in forwarded:
                    forwarded.append(header_name)
            elif header_name not in dropped:
                dropped.append(header_name)
        request = HttpRequest(call.method, f"{short}:{port}" if port else short, call.path, "http", headers)
        child = Hop(hop.depth + 1, workload.describe(), f"sidecar of {workload.describe()}", request,
                    arrival.total_share, forwarded, dropped, target=call.service)
        context = RouteContext({"mesh"}, workload.namespace, workload.labels, port)
        self.route(child, context, visited)
        return child

    def unreached(self, expectation: Expectation) -> str:
        """What would make a service the request never reaches reached: who calls it in the call graph."""
        def named(service: str) -> bool:
            return service == expectation.service if "/" in expectation.service \
                else service.split("/", 1)[1] == expectation.service
        callers = sorted(caller for caller, calls in self.graph.items() if any(named(c.service) for c in calls))
        if not callers:
            name = expectation.service.split("/")[-1]
            return (f"; nothing in the call graph calls it: add --calls CALLER={name}, a graylane.io/calls "
                    "annotation on the caller's Service, or the service to a FullLinkGray spec")
        return (f"; it is called by {', '.join(callers)}, which the request does not reach with a served response "
                "(see the paths above)")

    def _target_key(self, host: str, namespace: str) -> Optional[str]:
        name, service_namespace = request_service_key(host, namespace)
        return f"{service_namespace}/{name}" if service_namespace else None


def route_shares(routes: list) -> list:
    """Exact share of each destination: weights as given (Istio), equal when none is set."""
    weights = [r.get("weight") for r in routes]
    if len(routes) == 1:
        return [Fraction(1)]
    if all(w is None for w in weights):
        return [Fraction(1, len(routes))] * len(routes)
    numbers = [int(w or 0) for w in weights]
    total = sum(numbers)
    if total <= 0:
        return [Fraction(0)] * len(routes)
    return [Fraction(n, total) for n in numbers]


def _apply_header_ops(request: HttpRequest, operations: list) -> HttpRequest:
    headers = list(request.headers)
    for ops in operations:
        if not isinstance(ops, dict):
            continue
        for name, value in (ops.get("set") or {}).items():
            name = str(name).lower()
            headers = [(k, v) for k, v in headers if k != name] + [(name, str(value))]
        for name, value in (ops.get("add") or {}).items():
            headers.append((str(name).lower(), str(value)))
        for name in ops.get("remove") or []:
            headers = [(k, v) for k, v in headers if k != str(name).lower()]
    result = copy.copy(request)
    result.headers = headers
    return result


def _rewrite(request: HttpRequest, rewrite: dict) -> HttpRequest:
    result = copy.copy(request)
    if rewrite.get("authority"):
        result.authority = str(rewrite["authority"])
    if rewrite.get("uri"):
        result.path = str(rewrite["uri"])
    return result


def _first_port(service: Optional[Document]) -> Optional[int]:
    ports = ((service.body.get("spec") or {}).get("ports") or []) if service is not None else []
    for port in ports:
        if isinstance(port, dict) and isinstance(port.get("port"), int):
            return port["port"]
    return None


def _port_of(request: HttpRequest) -> int:
    return request.port or (443 if request.scheme == "https" else 80)


def unread_workload_warning(document: Document) -> str:
    name = f"{document.namespace}/{document.name}" if document.namespace else document.name
    return (f"{document.source}#{document.index}: {document.api_version} {document.kind} {name} has a pod template, "
            "but graylane does not read pods from this kind, so its pods serve no request here; give its pods as a "
            "Deployment, StatefulSet, DaemonSet, ReplicaSet, CloneSet, Argo Rollout or Pod")


def _labels_text(labels: dict) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in labels.items()) + "}"


def lane_reports(documents: list, namespace: str = "default") -> list[LaneReport]:
    """Every lane in the VirtualServices of ``documents`` and the other services' traffic each captures."""
    reports, canaries = [], release_canaries(documents)
    for document in documents:
        if document.group != ISTIO or document.kind != "VirtualService":
            continue
        spec = document.body.get("spec") if isinstance(document.body.get("spec"), dict) else {}
        own = document.namespace or namespace
        lanes: dict = {}
        for index, rule in enumerate(spec.get("http") or []):
            service = lane_service(rule, own, canaries) if isinstance(rule, dict) else None
            if service is not None:
                lanes.setdefault(service, []).append(index)
        if not lanes:
            continue
        leaks = find_leaks(spec, own, canaries)
        for service, rules in lanes.items():
            reports.append(LaneReport(f"{own}/{document.name}", f"{service[1] or own}/{service[0]}", rules,
                                      [(leak.rule, leak.describe(own)) for leak in leaks if leak.service == service]))
    return reports


def simulate(documents: list, request: HttpRequest, options: Optional[Options] = None,
             expectations: Optional[list] = None, emulator: Optional[EnvoyLuaEmulator] = None) -> Trace:
    """The trace of ``request`` through the objects in ``documents`` (as given: render them first)."""
    simulator = Simulator(documents, options, emulator)
    trace = simulator.run(request)
    trace.lanes = lane_reports(documents, simulator.options.namespace)
    if expectations:
        check_expectations(trace, expectations, simulator.unreached)
    return trace
