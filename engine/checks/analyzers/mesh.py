"""Cross-object analyzers over the mesh: gateways, hosts, Service ports, pods, EnvoyFilters (codes GL05xx).

What ``istioctl analyze`` finds across objects (IST0101 gateway, IST0109, IST0112, IST0132, IST0151, IST0173, ...),
with Istio's host resolution: a short name is ``name.<namespace of the object>.svc.cluster.local``, a name with a
dot is taken literally. Checks that need Services, Deployments or Pods only run when those are among the inputs
(the files rarely hold the whole cluster), and a subset is matched against the pods of its own Service only (Istio's
IST0173 matches every pod in the inputs).
"""
from __future__ import annotations

from typing import Any, Iterator

from engine.checks.analyzers.common import ISTIO, Finding, as_list, as_map, finding, is_int, is_kind, join
from engine.checks.analyzers.istio import destinations, is_destination_rule, is_virtual_service
from engine.documents import Document
from engine.routing.hosts import (fqdn, how_to_write, is_service_host, istio_hosts_match, service_key,
                                  unexpanded_service_form)

MESH = "mesh"
ROOT_NAMESPACE = "istio-system"  # Istio's default root namespace: its EnvoyFilters apply to every namespace
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "CloneSet")
RELATIVE_OPERATIONS = ("INSERT_BEFORE", "INSERT_AFTER", "REPLACE", "REMOVE")
DEPRECATED_FILTER_NAMES = {"envoy.lua": "envoy.filters.http.lua", "envoy.router": "envoy.filters.http.router",
                           "envoy.http_connection_manager": "envoy.filters.network.http_connection_manager"}


def _namespace(document: Document) -> str:
    return document.namespace or "default"


def _of_kind(documents: list[Document], group: str, kind: str) -> list[Document]:
    return [d for d in documents if is_kind(d, group, kind)]


def _gateways_of(spec: dict) -> list[str]:
    return [str(g) for g in as_list(spec.get("gateways"))]


# --------------------------------------------------------------------------------------- gateways

def _gateway_hosts(gateway: Document, vs_namespace: str) -> list[str]:
    """The hosts a Gateway's servers offer to VirtualServices of ``vs_namespace`` (``ns/host`` scoping applied)."""
    hosts = []
    for server in as_list(as_map(gateway.body.get("spec")).get("servers")):
        for entry in as_list(as_map(server).get("hosts")):
            text = str(entry)
            if "/" in text:
                scope, text = text.split("/", 1)
                scope = _namespace(gateway) if scope == "." else scope
                if scope not in ("*", vs_namespace):
                    continue
            hosts.append(text)
    return hosts


def gateway_references(documents: list[Document]) -> list[Finding]:
    """GL0501 a Gateway named by a VirtualService is not among the inputs; GL0502 the Gateway serves none of
    the VirtualService's hosts (IST0101 gateway, IST0132)."""
    gateways = {(_namespace(g), g.name): g for g in _of_kind(documents, ISTIO, "Gateway")}
    findings: list[Finding] = []
    for document in filter(is_virtual_service, documents):
        spec = as_map(document.body.get("spec"))
        namespace = _namespace(document)
        hosts = [str(h) for h in as_list(spec.get("hosts"))]
        for index, name in enumerate(_gateways_of(spec)):
            if name == MESH:
                continue
            gateway_namespace, gateway_name = name.split("/", 1) if "/" in name else (namespace, name)
            gateway = gateways.get((gateway_namespace, gateway_name))
            path = f"spec.gateways[{index}]"
            if gateway is None:
                findings.append(finding("GL0501", document, path,
                                        f"Gateway {gateway_namespace}/{gateway_name} is not among the inputs (give it, "
                                        "or write the gateway as <namespace>/<name> if it lives in another "
                                        "namespace)"))
                continue
            offered = _gateway_hosts(gateway, namespace)
            if not any(istio_hosts_match(g, h) for g in offered for h in hosts):
                findings.append(finding("GL0502", document, path,
                                        f"Gateway {gateway_namespace}/{gateway_name} serves none of the hosts "
                                        f"{', '.join(hosts) or '(none)'} (it serves {', '.join(offered) or 'none'}); "
                                        "add a host the Gateway serves, or the host to a Gateway server"))
    return findings


# ------------------------------------------------------------------------------------------ hosts

def _bound_to_mesh(spec: dict) -> bool:
    gateways = _gateways_of(spec)
    return not gateways or MESH in gateways


def mesh_hosts(documents: list[Document]) -> list[Finding]:
    """GL0503 two mesh VirtualServices for one host (IST0109; Istio keeps only one); GL0504 a mesh VirtualService
    for host ``*`` (Istio's webhook refuses it)."""
    findings: list[Finding] = []
    owners: dict[str, list[Document]] = {}
    for document in filter(is_virtual_service, documents):
        spec = as_map(document.body.get("spec"))
        if not _bound_to_mesh(spec) or as_list(spec.get("exportTo")) not in ([], ["*"]):
            continue
        for index, host in enumerate(as_list(spec.get("hosts"))):
            if host == "*":
                findings.append(finding("GL0504", document, f"spec.hosts[{index}]",
                                        "a VirtualService for the mesh cannot have host '*' (Istio refuses it): "
                                        "name the services, or bind it to a Gateway"))
                continue
            owners.setdefault(fqdn(str(host), _namespace(document)), []).append(document)
    for host, claimants in owners.items():
        unique = list({id(d): d for d in claimants}.values())
        if len(unique) < 2:
            continue
        names = ", ".join(sorted(f"{_namespace(d)}/{d.name}" for d in unique))
        for document in unique:
            findings.append(finding("GL0503", document, "spec.hosts",
                                    f"host {host} is also routed for the mesh by another VirtualService ({names}); "
                                    "Istio uses only one: merge their routes into one VirtualService"))
    return findings


def unexpanded_hosts(documents: list[Document]) -> list[Finding]:
    """GL0510 a ``name.ns`` or ``name.ns.svc`` host: Istio takes it literally, so it is no Service (Istio expands
    only names without dots)."""
    namespaces = {d.namespace for d in documents if d.namespace} | {
        d.name for d in documents if d.kind == "Namespace" and d.api_version == "v1"}
    findings: list[Finding] = []
    for document in documents:
        spec = as_map(document.body.get("spec"))
        places: list[tuple[str, Any]] = []
        if is_virtual_service(document):
            places = [(f"spec.hosts[{i}]", h) for i, h in enumerate(as_list(spec.get("hosts")))]
            places += [(f"{path}.host", d.get("host")) for path, d in destinations(spec)]
        elif is_destination_rule(document):
            places = [("spec.host", spec.get("host"))]
        for path, host in places:
            if not isinstance(host, str):
                continue
            labels = host.split(".")
            if unexpanded_service_form(host) and (len(labels) == 3 or labels[1] in namespaces):
                findings.append(finding("GL0510", document, path,
                                        f"Istio takes host {host!r} literally (it expands only names without dots), "
                                        f"so it names no Service: {how_to_write(host, _namespace(document))}"))
    return findings


# --------------------------------------------------------------------------------- Service ports

def _services(documents: list[Document]) -> dict[str, Document]:
    return {f"{d.name}.{_namespace(d)}.svc.cluster.local": d for d in documents
            if d.kind == "Service" and d.api_version == "v1"}


def _service_ports(service: Document) -> list[int]:
    return [p["port"] for p in as_list(as_map(service.body.get("spec")).get("ports"))
            if isinstance(p, dict) and is_int(p.get("port"))]


def destination_ports(documents: list[Document]) -> list[Finding]:
    """GL0505 a destination without a port on a Service with several ports (IST0112), or with a port the Service
    does not have (IST0101 host:port). Only for Services among the inputs."""
    services = _services(documents)
    findings: list[Finding] = []
    for document in filter(is_virtual_service, documents):
        for path, destination in destinations(as_map(document.body.get("spec"))):
            host = destination.get("host")
            service = services.get(fqdn(str(host), _namespace(document))) if isinstance(host, str) else None
            if service is None:
                continue
            ports = _service_ports(service)
            number = as_map(destination.get("port")).get("number")
            if number is None and len(ports) > 1:
                findings.append(finding("GL0505", document, path,
                                        f"Service {_namespace(service)}/{service.name} has several ports "
                                        f"({', '.join(map(str, ports))}): say which with port.number"))
            elif number is not None and ports and number not in ports:
                findings.append(finding("GL0505", document, f"{path}.port.number",
                                        f"Service {_namespace(service)}/{service.name} has no port {number} (it has "
                                        f"{', '.join(map(str, ports))})"))
    return findings


def service_hosts_found(documents: list[Document]) -> list[Finding]:
    """GL0512 a destination host that Istio resolves to a Service missing from the inputs, when the inputs show the
    Services of that namespace or a Service of that name elsewhere (the usual cause: a short name, which resolves in
    the VirtualService's namespace, for a Service of another namespace). Istio says IST0101 'host not found'."""
    services = _services(documents)
    if not services:
        return []
    by_name: dict[str, list[str]] = {}
    for service in services.values():
        by_name.setdefault(service.name, []).append(_namespace(service))
    given_namespaces = {_namespace(service) for service in services.values()}
    findings: list[Finding] = []
    for document in filter(is_virtual_service, documents):
        namespace = _namespace(document)
        for path, destination in destinations(as_map(document.body.get("spec"))):
            host = destination.get("host")
            if not isinstance(host, str) or not is_service_host(host):
                continue
            name, service_namespace = service_key(host, namespace)
            target = fqdn(host, namespace)
            elsewhere = sorted(n for n in by_name.get(name, []) if n != service_namespace)
            if target in services or not (elsewhere or service_namespace in given_namespaces):
                continue
            short = "." not in host.strip().rstrip(".")
            why = (f"the short name {host!r} means the Service of this VirtualService's namespace ({namespace}), "
                   f"{target}" if short else f"{target}")
            fix = (f": Service {name} is in namespace {elsewhere[0]}, write {name}.{elsewhere[0]}.svc.cluster.local"
                   if elsewhere else ": give the Service among the inputs, or fix the name")
            findings.append(finding("GL0512", document, f"{path}.host",
                                    f"{why}, and no such Service is among the inputs{fix}"))
    return findings


# ------------------------------------------------------------------------------------ pods, subsets

def _pod_labels(documents: list[Document]) -> list[tuple[str, dict]]:
    """(namespace, labels) of every pod the inputs describe: Pods, and the pod templates of workloads."""
    pods = []
    for document in documents:
        if document.kind == "Pod" and document.api_version == "v1":
            pods.append((_namespace(document), {str(k): str(v) for k, v in
                                                as_map(document.metadata.get("labels")).items()}))
        elif document.kind in WORKLOAD_KINDS:
            template = as_map(as_map(document.body.get("spec")).get("template"))
            labels = as_map(as_map(template.get("metadata")).get("labels"))
            pods.append((_namespace(document), {str(k): str(v) for k, v in labels.items()}))
    return pods


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(str(k)) == str(v) for k, v in selector.items())


def subset_pods(documents: list[Document]) -> list[Finding]:
    """GL0506 a DestinationRule subset selects no pod of its Service (IST0173), when the Service and pods are among
    the inputs. Unlike Istio's check, the subset must select a pod of the Service itself, not any pod."""
    services, pods = _services(documents), _pod_labels(documents)
    findings: list[Finding] = []
    if not pods:
        return findings
    pods_by_label: dict[tuple[str, str, str], list[dict]] = {}  # (namespace, key, value): a selector's
    for namespace, labels in pods:                                       # first label narrows the pods to look at
        for key, value in labels.items():
            pods_by_label.setdefault((namespace, key, value), []).append(labels)
    for document in filter(is_destination_rule, documents):
        spec = as_map(document.body.get("spec"))
        service = services.get(fqdn(str(spec.get("host", "")), _namespace(document)))
        if service is None:
            continue
        selector = as_map(as_map(service.body.get("spec")).get("selector"))
        if not selector:
            continue
        first_key, first_value = next(iter(selector.items()))
        members = [labels for labels in pods_by_label.get((_namespace(service), str(first_key), str(first_value)), ())
                   if _selects(selector, labels)]
        if not members:
            continue
        for index, subset in enumerate(as_list(spec.get("subsets"))):
            subset_labels = as_map(as_map(subset).get("labels"))
            if not any(_selects(subset_labels, labels) for labels in members):
                findings.append(finding("GL0506", document, f"spec.subsets[{index}]",
                                        f"subset {as_map(subset).get('name')!r} selects no pod of Service "
                                        f"{_namespace(service)}/{service.name}: no pod among the inputs has the "
                                        f"labels {dict(subset_labels)} (fix the labels, or give the workload that "
                                        "carries them)"))
    return findings


# ------------------------------------------------------------------------------------ EnvoyFilters

def envoy_filters(documents: list[Document]) -> list[Finding]:
    """GL0507 workloadSelector matching no pod of its namespace (the checks of one EnvoyFilter on its own are
    :func:`envoy_filter_patches`)."""
    pods = _pod_labels(documents)
    findings: list[Finding] = []
    for document in documents:
        if not is_kind(document, ISTIO, "EnvoyFilter"):
            continue
        spec = as_map(document.body.get("spec"))
        namespace = _namespace(document)
        selector = as_map(as_map(spec.get("workloadSelector")).get("labels"))
        if selector and pods:
            here = [labels for pod_namespace, labels in pods
                    if namespace == ROOT_NAMESPACE or pod_namespace == namespace]
            elsewhere = sorted({pod_namespace for pod_namespace, labels in pods
                                if pod_namespace != namespace and _selects(selector, labels)})
            if not any(_selects(selector, labels) for labels in here):
                if elsewhere and namespace != ROOT_NAMESPACE:
                    findings.append(finding("GL0507", document, "metadata.namespace",
                                            f"the workloadSelector selects pods in namespace {', '.join(elsewhere)}, "
                                            f"but an EnvoyFilter applies only to pods of its own namespace "
                                            f"({namespace}): put it in {elsewhere[0]} (or in {ROOT_NAMESPACE})"))
                elif any(pod_namespace == namespace for pod_namespace, _labels in pods):
                    findings.append(finding("GL0507", document, "spec.workloadSelector.labels",
                                            f"selects no pod of namespace {namespace} among the inputs (no pod has "
                                            f"the labels {dict(selector)})"))
    return findings


def envoy_filter_patches(document: Document) -> list[Finding]:
    """GL0508 deprecated filter names; GL0511 v2 types; GL0509 relative patch operations without a priority
    (IST0151): what is wrong with one EnvoyFilter on its own."""
    if not is_kind(document, ISTIO, "EnvoyFilter"):
        return []
    spec = as_map(document.body.get("spec"))
    findings = list(_deprecated_names(document, spec, "spec"))
    if not is_int(spec.get("priority")) or spec.get("priority") == 0:
        for index, patch in enumerate(as_list(spec.get("configPatches"))):
            patch = as_map(patch)
            operation = as_map(patch.get("patch")).get("operation")
            apply_to = patch.get("applyTo")
            if operation in RELATIVE_OPERATIONS and not (
                    operation == "REMOVE" and apply_to in ("ROUTE_CONFIGURATION", "HTTP_ROUTE")) and not (
                    operation == "REPLACE" and apply_to not in ("NETWORK_FILTER", "HTTP_FILTER", "VIRTUAL_HOST")):
                findings.append(finding("GL0509", document, f"spec.configPatches[{index}].patch.operation",
                                        f"{operation} depends on the order EnvoyFilters are applied in; give the "
                                        "EnvoyFilter a spec.priority so the order is defined"))
    return findings


def _deprecated_names(document: Document, value: Any, path: str) -> Iterator[Finding]:
    if isinstance(value, dict):
        for key, item in value.items():
            where = join(path, str(key))
            if key == "name" and isinstance(item, str) and item in DEPRECATED_FILTER_NAMES:
                yield finding("GL0508", document, where, f"filter name {item!r} is deprecated: write "
                                                         f"{DEPRECATED_FILTER_NAMES[item]!r}")
            elif key in ("@type", "type_url", "typeUrl") and isinstance(item, str) and ".v2." in item:
                yield finding("GL0511", document, where, f"type {item!r} is an Envoy v2 API that Envoy no longer "
                                                         "has: use its v3 type")
            else:
                yield from _deprecated_names(document, item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _deprecated_names(document, item, f"{path}[{index}]")


def analyze(documents: list[Document]) -> list[Finding]:
    """Every cross-object mesh check."""
    return [*gateway_references(documents), *mesh_hosts(documents), *unexpanded_hosts(documents),
            *destination_ports(documents), *service_hosts_found(documents), *subset_pods(documents),
            *envoy_filters(documents)]
