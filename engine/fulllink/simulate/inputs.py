"""What the simulator reads besides routing objects: the rendered state of TrafficRoutings, the call graph,
the propagated headers, and the canary pods Rollouts would create."""
from __future__ import annotations

from typing import Any, Optional

from engine.fulllink.chain import Call, pod_template_labels, specs_of
from engine.fulllink.color import LANE_HEADER_ANNOTATION
from engine.documents import Document
from engine.errors import InvalidInputError
from engine.routing.hosts import request_service_key
from engine.routing.render import Engine, render, rendered_documents
from engine.checks.workloads import labels_of, rollout_canary_workloads, selects
from engine.fulllink.simulate.mesh import Mesh
from engine.routing.argo.rollout import is_argo_rollout, routes_with_istio
from engine.routing.strategy import is_rollout, is_traffic_routing

CALLS_ANNOTATION = "graylane.io/calls"
PROPAGATE_ANNOTATION = "graylane.io/propagate-headers"


def rendered_state(documents: list, engine: Engine, step: Optional[int] = None) -> tuple[list, list]:
    """The documents with every network object a TrafficRouting (or a Rollout with trafficRoutings) routes
    replaced by its rendered form; and the names of what was rendered. Rollouts that leave traffic to a
    TrafficRouting (trafficRoutingRef or the rollouts.kruise.io/trafficrouting annotation) are not rendered.
    Argo Rollouts with trafficRouting.istio are rendered at the step, as Argo's controller leaves them."""
    routings = [d for d in documents if is_traffic_routing(d) or (is_rollout(d) and _rollout_routes(d))
                or (is_argo_rollout(d) and routes_with_istio(d))]
    if not routings:
        return documents, []
    others = [d for d in documents if not (is_traffic_routing(d) or is_rollout(d) or is_argo_rollout(d))]
    rendered = render(routings + others, engine, step)
    result = rendered_documents(documents, rendered)
    names = [f"{item.source.kind} {item.source.namespace or 'default'}/{item.source.name}" for item in rendered]
    return result, names


def _rollout_routes(document: Document) -> bool:
    canary = (((document.body.get("spec") or {}).get("strategy") or {}).get("canary") or {})
    return bool(canary.get("trafficRoutings"))


def chain_specs(documents: list) -> list:
    return specs_of(documents)


def call_graph(documents: list, specs: list, mesh: Mesh, flags: dict) -> dict:
    """``{"ns/service": [Call]}``: FullLinkGray specs, then graylane.io/calls annotations on Services or
    workloads, then the command line (each source replaces a service's calls from the earlier ones)."""
    graph: dict = {}
    for spec in specs:
        graph.update(spec.call_graph())
    for document in documents:
        annotation = (document.metadata.get("annotations") or {}).get(CALLS_ANNOTATION)
        if annotation is None:
            continue
        namespace = mesh.ns(document)
        owner = document.name if document.kind == "Service" else _service_of_workload(mesh, document, namespace)
        if owner is None:
            raise document.error(f"annotation {CALLS_ANNOTATION} is on a workload no Service in the inputs selects",
                                 f"metadata.annotations[{CALLS_ANNOTATION}]")
        try:
            graph[f"{namespace}/{owner}"] = [parse_call(item, namespace)
                                             for item in str(annotation).split(",") if item.strip()]
        except InvalidInputError as error:
            raise document.error(error.message, f"metadata.annotations[{CALLS_ANNOTATION}]") from None
    graph.update(flags)
    return graph


def _service_of_workload(mesh: Mesh, document: Document, namespace: str) -> Optional[str]:
    labels = pod_template_labels(document) if document.kind != "Pod" else labels_of(document.metadata.get("labels"))
    for (service_namespace, name), service in mesh.services.items():
        selector = labels_of((service.body.get("spec") or {}).get("selector"))
        if service_namespace == namespace and selector and selects(selector, labels):
            return name
    return None


def parse_call(text: str, namespace: str) -> Call:
    """``mockb``, ``other-ns/mockb``, ``mockb.other-ns``, ``http://mockb:8000/path`` or ``POST http://...``."""
    text = text.strip()
    method = "GET"
    if " " in text:
        method, text = text.split(None, 1)
        method = method.upper()
    port = None
    path = "/"
    target = text
    if "://" in text:
        rest = text.split("://", 1)[1]
        authority, slash, tail = rest.partition("/")
        path = "/" + tail if slash else "/"
        target = authority
        if ":" in authority:
            target, port_text = authority.rsplit(":", 1)
            if not port_text.isdigit():
                raise InvalidInputError(f"call {text!r}: bad port {port_text!r}")
            port = int(port_text)
    call_namespace: Optional[str]
    if "/" in target:
        call_namespace, name = target.split("/", 1)
    else:
        name, call_namespace = request_service_key(target, namespace)
    if not name or "." in name or "*" in name or not call_namespace:
        raise InvalidInputError(f"call {text!r}: expected a service name, ns/name or an http:// URL of a service")
    return Call(f"{call_namespace}/{name}", method, path, port)


def propagated_headers(documents: list, specs: list, extra: list) -> list:
    """Headers services forward: lane headers (chain specs, coloring EnvoyFilters, TrafficRouting header
    matches), graylane.io/propagate-headers annotations, and ``extra``."""
    names: list = []

    def add(name: Any) -> None:
        if isinstance(name, str) and name and name.lower() not in names:
            names.append(name.lower())
    for spec in specs:
        add(spec.lane_header)
        for name in spec.propagate:
            add(name)
    for document in documents:
        annotations = document.metadata.get("annotations") or {}
        if document.kind == "EnvoyFilter":
            add(annotations.get(LANE_HEADER_ANNOTATION))
        for name in str(annotations.get(PROPAGATE_ANNOTATION, "")).split(","):
            add(name.strip())
        if is_traffic_routing(document) or is_rollout(document):
            for match in _all_matches(document.body):
                for header in match.get("headers") or []:
                    if isinstance(header, dict):
                        add(header.get("name"))
    for name in extra:
        add(name)
    return names


def _all_matches(body: Any):
    if isinstance(body, dict):
        for key, value in body.items():
            if key == "matches" and isinstance(value, list):
                yield from (m for m in value if isinstance(m, dict))
            else:
                yield from _all_matches(value)
    elif isinstance(body, list):
        for item in body:
            yield from _all_matches(item)


def rollout_workloads(documents: list, mesh: Mesh) -> list:
    """The canary pods of Kruise Rollouts with patchPodTemplateMetadata, as extra workloads."""
    return rollout_canary_workloads(documents, mesh.workloads, mesh.namespace)
