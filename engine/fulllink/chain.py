"""Full-link gray: one FullLinkGray spec -> everything a chain-wide gray release needs.

From ``apiVersion: graylane.io/v1alpha1, kind: FullLinkGray`` (see README.md (full-link section)) this generates, purely:
the coloring EnvoyFilter for the ingress gateway, one TrafficRouting per released service (a header match
on the lane, customNetworkRefs to its VirtualService and DestinationRule), and one Rollout per released
workload whose patchPodTemplateMetadata labels the gray pods. With the network objects among the inputs it
also renders the mutated VirtualServices/DestinationRules and checks that the base subsets do not select the
gray pods. The spec is also what the simulator reads for the call graph and the propagated headers.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Optional

from engine.fulllink.color import (
    DEFAULT_LANE_VALUE,
    DEFAULT_NAMESPACE,
    DEFAULT_SELECTOR,
    MANAGED_BY,
    ColoringSpec,
    GatewayTarget,
    check_header_name,
    check_lane_value,
    envoy_filter,
    parse_coloring,
)
from engine.documents import Document
from engine.fields import as_list as _list
from engine.fields import as_map as _map
from engine.fields import as_string as _string
from engine.errors import InvalidInputError
from engine.routing.hosts import request_service_key
from engine.routing.render import Engine, OutputCheck, Rendered, render
from engine.routing.strategy import is_rollout, is_traffic_routing
from engine.routing.ownership import CANARY_SUBSET

API_VERSION = "graylane.io/v1alpha1"
KIND = "FullLinkGray"
TRAFFIC_ROUTING_API = "rollouts.kruise.io/v1alpha1"
ROLLOUT_APIS = ("rollouts.kruise.io/v1beta1", "rollouts.kruise.io/v1alpha1")
ISTIO_API = "networking.istio.io/v1beta1"
DEFAULT_GRAY_LABELS = {"istio.service.tag": "gray", "version": "canary"}
DEFAULT_SUBSET_LABELS = {"istio.service.tag": "gray"}
SUBSET_LABELS_ANNOTATION = "graylane.io/canary-subset-labels"
SPEC_LABEL = "graylane.io/fulllink"
WORKLOAD_KINDS = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "CloneSet": "apps.kruise.io/v1alpha1"}


@dataclass
class Call:
    """One call a service makes: to ``service`` with ``method`` and ``path`` (port: the Service's first)."""

    service: str
    method: str = "GET"
    path: str = "/"
    port: Optional[int] = None


@dataclass
class ChainService:
    name: str
    namespace: str
    release: bool
    virtual_service: Optional[str]
    destination_rule: Optional[str]
    workload_kind: str
    workload: Optional[str]
    traffic_routing: str
    rollout: str
    calls: Optional[list]  # of Call; None: the next service of the chain
    field: str


@dataclass
class FullLinkSpec:
    document: Document
    name: str
    namespace: str
    lane_header: str
    lane_value: str
    propagate: list
    gateway_name: Optional[str]  # the Istio Gateway the chain enters through (for the simulator)
    target: GatewayTarget
    coloring: ColoringSpec
    gray_labels: dict
    subset_labels: dict
    rollout_api: str
    steps: list
    services: list = field(default_factory=list)

    def service(self, name: str) -> Optional[ChainService]:
        for item in self.services:
            if item.name == name:
                return item
        return None

    def call_graph(self) -> dict:
        """``{"ns/service": [Call, ...]}``: explicit calls, else each service calls the next one."""
        graph: dict = {}
        for index, item in enumerate(self.services):
            if item.calls is not None:
                calls = item.calls
            elif index + 1 < len(self.services):
                following = self.services[index + 1]
                calls = [Call(f"{following.namespace}/{following.name}")]
            else:
                calls = []
            graph[f"{item.namespace}/{item.name}"] = calls
        return graph


def is_fulllink(document: Document) -> bool:
    return document.group == "graylane.io" and document.kind == KIND


def specs_of(documents: list) -> list:
    """Every FullLinkGray among the documents, parsed; the same spec read twice (a file named on its own and
    inside a directory) counts once, two different specs with one name are an error."""
    specs: dict = {}
    for document in documents:
        if not is_fulllink(document):
            continue
        key = (document.namespace or "default", document.name)
        if key in specs:
            if specs[key].document.body != document.body:
                raise document.error(f"a different FullLinkGray {key[1]} was already read from "
                                     f"{specs[key].document.source}", "metadata.name")
            continue
        specs[key] = parse_spec(document)
    return list(specs.values())


# --------------------------------------------------------------------------------------------- parsing

def spec_origin(spec: FullLinkSpec) -> str:
    """``file: document N: FullLinkGray ns/name``: what the chain's and color's objects are made from."""
    return f"{spec.document.source}: document {spec.document.index}: FullLinkGray {spec.namespace}/{spec.name}"


def parse_spec(document: Document) -> FullLinkSpec:
    """Validate a FullLinkGray document; every error names the field."""
    if document.api_version != API_VERSION:
        raise document.error(f"apiVersion must be {API_VERSION}, got {document.api_version!r}", "apiVersion")

    def fail(message: str, where: str) -> InvalidInputError:
        return document.error(message, where)

    name = document.name
    if not name:
        raise document.error("is required", "metadata.name")
    namespace = document.namespace or "default"
    spec = _map(document, document.body.get("spec"), "spec", required=True)
    _known(document, spec, "spec", {"lane", "gateway", "coloring", "grayLabels", "canarySubsetLabels", "rollout",
                                    "services"})
    lane = _map(document, spec.get("lane"), "spec.lane", required=True)
    _known(document, lane, "spec.lane", {"header", "value", "propagate"})
    header = check_header_name(lane.get("header"), "spec.lane.header", fail, allow_pseudo=False)
    value = check_lane_value(lane.get("value", DEFAULT_LANE_VALUE), "spec.lane.value", fail)
    propagate = [check_header_name(item, f"spec.lane.propagate[{i}]", fail, allow_pseudo=False)
                 for i, item in enumerate(_list(document, lane.get("propagate"), "spec.lane.propagate"))]

    gateway = _map(document, spec.get("gateway"), "spec.gateway")
    _known(document, gateway, "spec.gateway", {"name", "namespace", "selector", "envoyFilterName"})
    selector = _labels(document, gateway.get("selector", DEFAULT_SELECTOR), "spec.gateway.selector", allow_empty=True)
    target = GatewayTarget(
        _string(document, gateway.get("envoyFilterName", f"{name}-coloring"), "spec.gateway.envoyFilterName"),
        _string(document, gateway.get("namespace", DEFAULT_NAMESPACE), "spec.gateway.namespace"),
        selector)
    gateway_name = gateway.get("name")
    if gateway_name is not None:
        gateway_name = _string(document, gateway_name, "spec.gateway.name")

    coloring = parse_coloring(spec.get("coloring"), "spec.coloring", header, value, fail, default_salt=name)

    gray_labels = _labels(document, spec.get("grayLabels", DEFAULT_GRAY_LABELS), "spec.grayLabels")
    subset_labels = _labels(document, spec.get("canarySubsetLabels", DEFAULT_SUBSET_LABELS),
                            "spec.canarySubsetLabels")
    for key, label_value in subset_labels.items():
        if gray_labels.get(key) != label_value:
            raise document.error(f"{key}: {label_value} is not among grayLabels, so the canary subset would not "
                                 "select the gray pods", "spec.canarySubsetLabels")

    rollout = _map(document, spec.get("rollout"), "spec.rollout")
    _known(document, rollout, "spec.rollout", {"apiVersion", "steps"})
    rollout_api = rollout.get("apiVersion", ROLLOUT_APIS[0])
    if rollout_api not in ROLLOUT_APIS:
        raise document.error(f"must be one of {', '.join(ROLLOUT_APIS)}, got {rollout_api!r}",
                             "spec.rollout.apiVersion")
    steps = _list(document, rollout.get("steps", [{"replicas": 1, "pause": {}}]), "spec.rollout.steps",
                  required=True)
    for index, step in enumerate(steps):
        _map(document, step, f"spec.rollout.steps[{index}]", required=True)

    services_data = _list(document, spec.get("services"), "spec.services", required=True)
    result = FullLinkSpec(document, name, namespace, header, value, propagate, gateway_name, target, coloring,
                          gray_labels, subset_labels, rollout_api, steps)
    seen: set = set()
    for index, item in enumerate(services_data):
        chain_service = _parse_service(document, item, f"spec.services[{index}]", namespace, name)
        key = (chain_service.namespace, chain_service.name)
        if key in seen:
            raise document.error(f"service {chain_service.name} is listed twice", f"spec.services[{index}].name")
        seen.add(key)
        result.services.append(chain_service)
    known = {f"{s.namespace}/{s.name}" for s in result.services}
    for chain_service in result.services:
        for index, call in enumerate(chain_service.calls or []):
            if call.service not in known:
                raise document.error(f"calls {call.service}, which is not a service of the chain (list it, with "
                                     "release: false if it is not released)", f"{chain_service.field}.calls[{index}]")
    if not any(s.release for s in result.services):
        raise document.error("no service is released (every one has release: false)", "spec.services")
    return result


def _parse_service(document: Document, item: Any, where: str, namespace: str, spec_name: str) -> ChainService:
    if isinstance(item, str):
        item = {"name": item}
    item = _map(document, item, where, required=True)
    _known(document, item, where, {"name", "namespace", "release", "virtualService", "destinationRule",
                                   "workload", "trafficRouting", "rollout", "calls"})
    name = _string(document, item.get("name"), f"{where}.name")
    service_namespace = _string(document, item.get("namespace", namespace), f"{where}.namespace")
    release = item.get("release", True)
    if not isinstance(release, bool):
        raise document.error("must be true or false", f"{where}.release")
    workload = item.get("workload", name if release else None)
    kind = "Deployment"
    if isinstance(workload, dict):
        _known(document, workload, f"{where}.workload", {"kind", "name"})
        kind = workload.get("kind", "Deployment")
        if kind not in WORKLOAD_KINDS:
            raise document.error(f"must be one of {', '.join(WORKLOAD_KINDS)}, got {kind!r}", f"{where}.workload.kind")
        workload = _string(document, workload.get("name"), f"{where}.workload.name")
    elif workload is not None:
        workload = _string(document, workload, f"{where}.workload")
    calls = None
    if "calls" in item:
        calls = []
        for index, call in enumerate(_list(document, item.get("calls"), f"{where}.calls")):
            calls.append(_parse_call(document, call, f"{where}.calls[{index}]", service_namespace))
    virtual_service = item.get("virtualService", name if release else None)
    destination_rule = item.get("destinationRule", name if release else None)
    return ChainService(
        name, service_namespace, release,
        _string(document, virtual_service, f"{where}.virtualService") if virtual_service is not None else None,
        _string(document, destination_rule, f"{where}.destinationRule") if destination_rule is not None else None,
        kind, workload,
        _string(document, item.get("trafficRouting", f"{name}-{spec_name}"), f"{where}.trafficRouting"),
        _string(document, item.get("rollout", f"{name}-{spec_name}"), f"{where}.rollout"),
        calls, where)


def _parse_call(document: Document, call: Any, where: str, namespace: str) -> Call:
    if isinstance(call, str):
        call = {"service": call}
    call = _map(document, call, where, required=True)
    _known(document, call, where, {"service", "method", "path", "port"})
    target = _string(document, call.get("service"), f"{where}.service")
    name, target_namespace = request_service_key(target, namespace)
    if "." in name or "*" in name:
        raise document.error(f"{target!r} is not a service name", f"{where}.service")
    path = call.get("path", "/")
    if not isinstance(path, str) or not path.startswith("/"):
        raise document.error("must be a path starting with /", f"{where}.path")
    port = call.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        raise document.error("must be a port number", f"{where}.port")
    method = str(call.get("method", "GET")).upper()
    return Call(f"{target_namespace}/{name}", method, path, port)


def _known(document: Document, data: dict, where: str, allowed: set) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise document.error(f"unknown field(s) {', '.join(sorted(unknown))}", where)


def _labels(document: Document, value: Any, where: str, allow_empty: bool = False) -> dict:
    if not isinstance(value, dict) or (not value and not allow_empty):
        raise document.error("must be a non-empty map of labels" if not allow_empty else "must be a map of labels",
                             where)
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise document.error(f"label {key!r} must map to a string (quote numbers and booleans in YAML)", where)
    return dict(value)


# --------------------------------------------------------------------------------------------- generating

@dataclass
class ChainOutput:
    objects: list  # bodies, in apply order
    warnings: list  # readable problems found with the inputs
    findings: list = field(default_factory=list)  # what the output check let through (--force)
    rendered: int = 0  # how many of the objects (the last ones) the traffic-routing scripts rendered

    def generated(self) -> list:
        """The objects the chain makes itself (EnvoyFilter, TrafficRoutings, Rollouts), not the rendered ones."""
        return self.objects[:len(self.objects) - self.rendered]


def traffic_routing(spec: FullLinkSpec, service: ChainService, network_api: dict) -> dict:
    return {
        "apiVersion": TRAFFIC_ROUTING_API,
        "kind": "TrafficRouting",
        "metadata": {"name": service.traffic_routing, "namespace": service.namespace,
                     "labels": {**MANAGED_BY, SPEC_LABEL: spec.name}},
        "spec": {
            "strategy": {"matches": [{"headers": [{"type": "Exact", "name": spec.lane_header,
                                                   "value": spec.lane_value}]}]},
            "objectRef": [{
                "service": service.name,
                "customNetworkRefs": [
                    {"apiVersion": network_api.get(("VirtualService", service.virtual_service), ISTIO_API),
                     "kind": "VirtualService", "name": service.virtual_service},
                    {"apiVersion": network_api.get(("DestinationRule", service.destination_rule), ISTIO_API),
                     "kind": "DestinationRule", "name": service.destination_rule},
                ],
            }],
        },
    }


def rollout(spec: FullLinkSpec, service: ChainService) -> dict:
    workload_ref = {"apiVersion": WORKLOAD_KINDS[service.workload_kind], "kind": service.workload_kind,
                    "name": service.workload}
    canary: dict = {}
    metadata: dict = {"name": service.rollout, "namespace": service.namespace,
                      "labels": {**MANAGED_BY, SPEC_LABEL: spec.name}}
    if spec.rollout_api.endswith("v1beta1"):
        body_spec: dict = {"workloadRef": workload_ref, "strategy": {"canary": canary}}
        canary["enableExtraWorkloadForCanary"] = True
        canary["trafficRoutingRef"] = service.traffic_routing
    else:  # v1alpha1, as in Kruise 0.5 tutorials: the TrafficRouting is named in an annotation
        metadata["annotations"] = {"rollouts.kruise.io/rolling-style": "canary",
                                   "rollouts.kruise.io/trafficrouting": service.traffic_routing}
        body_spec = {"objectRef": {"workloadRef": workload_ref}, "strategy": {"canary": canary}}
    canary["steps"] = copy.deepcopy(spec.steps)
    canary["patchPodTemplateMetadata"] = {"labels": dict(spec.gray_labels)}
    return {"apiVersion": spec.rollout_api, "kind": "Rollout", "metadata": metadata, "spec": body_spec}


def generate(spec: FullLinkSpec, documents: list, engine: Optional[Engine] = None,
             render_network: bool = False, check: Optional[OutputCheck] = None) -> ChainOutput:
    """The objects of a chain; ``documents`` are the other inputs (network objects, workloads) for checks
    and, with ``render_network``, for rendering (``engine`` runs the traffic-routing scripts, ``check`` is
    render's output check)."""
    warnings = check_inputs(spec, documents)
    network_api = {(d.kind, d.name): d.api_version for d in documents
                   if d.group == "networking.istio.io" and _in_namespace(d, spec.namespace)}
    objects: list = [envoy_filter(spec.coloring, spec.target, {SPEC_LABEL: spec.name})]
    routings: list = []
    findings: list = []
    for service in spec.services:
        if not service.release:
            continue
        routing = traffic_routing(spec, service, network_api)
        routings.append(routing)
        objects.append(routing)
        if service.workload:
            objects.append(rollout(spec, service))
    if render_network:
        if engine is None:
            raise ValueError("rendering needs an engine")
        rendered = render_chain(spec, routings, documents, engine, check)
        objects.extend(item.body for item in rendered)
        findings.extend(w for item in rendered for w in item.warnings)
        return ChainOutput(objects, warnings, findings, len(rendered))
    return ChainOutput(objects, warnings, findings)


def render_chain(spec: FullLinkSpec, routings: list, documents: list, engine: Engine,
                 check: Optional[OutputCheck] = None) -> list[Rendered]:
    """The chain's VirtualServices/DestinationRules as its TrafficRoutings leave them (input routings are
    left out: the chain's own replace them). DestinationRules get the canary-subset-labels annotation when
    the spec selects gray pods with other labels than the built-in script's default."""
    network = [d for d in documents if not (is_traffic_routing(d) or is_rollout(d) or is_fulllink(d))]
    if spec.subset_labels != DEFAULT_SUBSET_LABELS:
        annotated = []
        names = {(s.namespace, s.destination_rule) for s in spec.services if s.release}
        for document in network:
            if document.kind == "DestinationRule" and (document.namespace or spec.namespace, document.name) in names:
                body = copy.deepcopy(document.body)
                metadata = body.setdefault("metadata", {})
                annotations = metadata.get("annotations") or {}
                annotations[SUBSET_LABELS_ANNOTATION] = json.dumps(spec.subset_labels, sort_keys=True)
                metadata["annotations"] = annotations
                document = Document(body, document.source, document.index)
            annotated.append(document)
        network = annotated
    generated = [Document(body, f"<{spec.document.source}: chain {spec.name}>", index)
                 for index, body in enumerate(routings, 1)]
    return render(generated + network, engine, check=check)


def _in_namespace(document: Document, namespace: str) -> bool:
    return document.namespace is None or document.namespace == namespace


# --------------------------------------------------------------------------------------------- checks

def pod_template_labels(document: Document) -> dict:
    template = ((document.body.get("spec") or {}).get("template") or {})
    labels = ((template.get("metadata") or {}).get("labels") or {})
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def _find(documents: list, kind: str, name: Optional[str], namespace: str) -> Optional[Document]:
    for document in documents:
        if document.kind == kind and document.name == name and (document.namespace or namespace) == namespace:
            return document
    return None


def check_inputs(spec: FullLinkSpec, documents: list) -> list:
    """Problems a team would want to hear about before applying; empty when the inputs hold no objects."""
    warnings = []
    has_network = any(d.group == "networking.istio.io" for d in documents)
    for service in spec.services:
        if not service.release:
            continue
        where = f"service {service.namespace}/{service.name}"
        if has_network:
            for kind, name in (("VirtualService", service.virtual_service),
                               ("DestinationRule", service.destination_rule)):
                if _find(documents, kind, name, service.namespace) is None:
                    warnings.append(f"{where}: {kind} {name} is not among the inputs")
        workload = _find(documents, service.workload_kind, service.workload, service.namespace)
        if workload is None:
            if any(d.kind == service.workload_kind for d in documents):
                warnings.append(f"{where}: {service.workload_kind} {service.workload} is not among the inputs")
            continue
        base_labels = pod_template_labels(workload)
        gray_labels = {**base_labels, **spec.gray_labels}
        kube_service = _find(documents, "Service", service.name, service.namespace)
        if kube_service is not None:
            selector = (kube_service.body.get("spec") or {}).get("selector") or {}
            missing = {k: v for k, v in selector.items() if gray_labels.get(k) != str(v)}
            if missing:
                warnings.append(f"{where}: the Service selector {_labels_text(selector)} does not select the gray "
                                f"pods (labels {_labels_text(gray_labels)}): grayLabels override {_labels_text(missing)}")
        rule = _find(documents, "DestinationRule", service.destination_rule, service.namespace)
        if rule is None:
            continue
        for subset in ((rule.body.get("spec") or {}).get("subsets") or []):
            if not isinstance(subset, dict) or subset.get("name") == CANARY_SUBSET:
                continue
            labels = subset.get("labels") or {}
            if labels and all(gray_labels.get(k) == str(v) for k, v in labels.items()):
                warnings.append(
                    f"{where}: subset {subset.get('name')} of DestinationRule {rule.name} ({_labels_text(labels)}) "
                    f"also selects the gray pods (labels {_labels_text(gray_labels)}), so base traffic would reach "
                    "the gray version; add a grayLabels entry that overrides one of those labels (e.g. version: canary)")
    return warnings


def _labels_text(labels: dict) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in labels.items()) + "}"

