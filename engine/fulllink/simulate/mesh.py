"""The simulator's view of a mesh: Services, pods (from workload templates), Gateways, VirtualServices,
DestinationRules and coloring EnvoyFilters, and how Istio matches a request against them. Pure.

Host names use :mod:`engine.routing.hosts`: VirtualService and DestinationRule hosts resolve by Istio's rules (only a
name without dots is expanded, in the object's namespace), a request's host by Kubernetes DNS (``name.ns`` reaches
Service name of ns, as the sidecar's virtual-host domains do).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional
from urllib.parse import unquote_plus

from engine.fulllink.color import LUA_TYPE_URL
from engine.fulllink.color_regex import RegexError, re2_compile
from engine.documents import Document
from engine.fulllink.envoy import HttpRequest
from engine.checks.workloads import Workload, is_workload, labels_of, selects, workload_of  # noqa: F401 (re-exported)
from engine.routing.hosts import fqdn, host_matches, is_service_host, request_fqdn, request_service_key, service_key

ISTIO = "networking.istio.io"
LUA_V2_TYPE = "type.googleapis.com/envoy.config.filter.http.lua.v2.Lua"
LUA_NAMES = ("envoy.filters.http.lua", "envoy.lua")
DEFAULT_INSTALL_LABELS = {("istio", "ingressgateway"): {"app": "istio-ingressgateway"},
                          ("istio", "egressgateway"): {"app": "istio-egressgateway"}}


@dataclass
class RouteContext:
    """Where a request is routed: at a gateway (its ``ns/name`` keys) or in the mesh, and by whom."""

    gateways: set  # {"ns/name", ...} or {"mesh"}
    namespace: str  # the client's namespace (short hosts resolve there)
    source_labels: dict = field(default_factory=dict)
    port: Optional[int] = None


@dataclass
class LuaPatch:
    envoy_filter: Document
    index: int
    code: str
    notes: list


class Mesh:
    """An index of the input documents (namespaces default to ``namespace``)."""

    def __init__(self, documents: list, namespace: str = "default", root_namespace: str = "istio-system"):
        self.namespace = namespace
        self.root_namespace = root_namespace
        self.services: dict = {}
        self.workloads: list = []
        self.virtual_services: list = []
        self.destination_rules: list = []
        self.gateways: list = []
        self.envoy_filters: list = []
        for document in documents:
            key = (document.group, document.kind)
            if key == ("", "Service"):
                self.services[(self.ns(document), document.name)] = document
            elif is_workload(document):
                self.workloads.append(workload_of(document, self.ns(document)))
            elif document.group == ISTIO and document.kind == "VirtualService":
                self.virtual_services.append(document)
            elif document.group == ISTIO and document.kind == "DestinationRule":
                self.destination_rules.append(document)
            elif document.group == ISTIO and document.kind == "Gateway":
                self.gateways.append(document)
            elif document.group == ISTIO and document.kind == "EnvoyFilter":
                self.envoy_filters.append(document)
        self._by_label: dict = {}  # workloads by (namespace, (label, value)), for pods()
        self._indexed = -1
        self._mesh_index: Optional[HostIndex] = None
        self._rule_index: Optional[HostIndex] = None

    def ns(self, document: Document) -> str:
        return document.namespace or self.namespace

    def key(self, document: Document) -> str:
        return f"{self.ns(document)}/{document.name}"

    # ------------------------------------------------------------------ services and pods

    def service_for_host(self, host: str, namespace: str) -> Optional[Document]:
        """The Service a VirtualService/DestinationRule host of an object in ``namespace`` names (Istio's rules)."""
        if not is_service_host(host):
            return None
        name, service_namespace = service_key(host, namespace)
        return self.services.get((service_namespace or namespace, name))

    def service_for_request(self, host: str, client_namespace: str) -> Optional[Document]:
        """The Service a request to ``host`` from ``client_namespace`` reaches (Kubernetes DNS)."""
        name, service_namespace = request_service_key(host, client_namespace)
        return self.services.get((service_namespace, name)) if service_namespace else None

    def service_by_key(self, key: str) -> Optional[Document]:
        namespace, _, name = key.partition("/")
        return self.services.get((namespace, name))

    def pods(self, namespace: str, selector: dict, subset_labels: dict) -> list:
        if self._indexed != len(self.workloads):  # workloads are only ever added (--rollout-pods)
            self._by_label = {}
            for workload in self.workloads:
                for label in workload.labels.items():
                    self._by_label.setdefault((workload.namespace, label), []).append(workload)
            self._indexed = len(self.workloads)
        if any(selector.get(key, value) != value for key, value in subset_labels.items()):
            return []  # the subset asks for another value of a label the selector fixes
        wanted = {**selector, **subset_labels}
        if not wanted:
            return [w for w in self.workloads if w.namespace == namespace]
        label = next(iter(wanted.items()))
        return [w for w in self._by_label.get((namespace, label), []) if selects(wanted, w.labels)]

    # ------------------------------------------------------------------ gateways

    def gateway_named(self, name: str) -> Optional[Document]:
        namespace, _, short = name.rpartition("/")
        found = [g for g in self.gateways if g.name == short and (not namespace or self.ns(g) == namespace)]
        return found[0] if len(found) == 1 else None

    def gateways_for_host(self, host: str) -> list:
        found = []
        for gateway in self.gateways:
            for server in (gateway.body.get("spec") or {}).get("servers") or []:
                hosts = server.get("hosts") or [] if isinstance(server, dict) else []
                if any(_gateway_host_matches(h, host) for h in hosts):
                    found.append(gateway)
                    break
        return found

    def gateway_workload(self, gateway: Document, assumed_namespace: str,
                         extra_labels: dict) -> tuple[str, dict, Optional[Workload]]:
        """(namespace, pod labels, workload) of the gateway pods a Gateway's selector picks."""
        selector = labels_of((gateway.body.get("spec") or {}).get("selector"))
        for workload in self.workloads:
            if selector and selects(selector, workload.labels):
                return workload.namespace, {**workload.labels, **extra_labels}, workload
        labels = dict(selector)
        for (key, value), implied in DEFAULT_INSTALL_LABELS.items():
            if selector.get(key) == value:
                labels.update(implied)
        return assumed_namespace, {**labels, **extra_labels}, None

    def lua_patches(self, namespace: str, pod_labels: dict, context: str = "GATEWAY") -> tuple[list, list]:
        """Lua filters EnvoyFilters add to the HTTP filters of the selected pods, in the order Istio applies
        them; and notes about EnvoyFilters that look meant for these pods but do not apply."""
        applied, notes = [], []
        ordered = sorted(self.envoy_filters, key=lambda d: (_priority(d), self.ns(d) != self.root_namespace,
                                                             self.key(d)))
        for document in ordered:
            spec = document.body.get("spec") or {}
            selector = labels_of((spec.get("workloadSelector") or {}).get("labels"))
            patches = [p for p in spec.get("configPatches") or [] if isinstance(p, dict)]
            lua = [(i, p) for i, p in enumerate(patches) if _is_lua_patch(p)]
            if not lua:
                continue
            where = f"EnvoyFilter {self.key(document)}"
            if not selects(selector, pod_labels):
                if selector and any(pod_labels.get(k) == v for k, v in selector.items()):
                    notes.append(f"{where} does not apply: its workloadSelector {_text(selector)} does not match "
                                 f"the gateway pods {_text(pod_labels)}")
                continue
            if self.ns(document) not in (self.root_namespace, namespace):
                notes.append(f"{where} does not apply: it is in namespace {self.ns(document)}, but an EnvoyFilter "
                             f"acts only on pods of its own namespace (the gateway runs in {namespace}) unless it "
                             f"is in the root namespace {self.root_namespace}")
                continue
            for index, patch in lua:
                item_notes: list = []
                match = patch.get("match") or {}
                match_context = match.get("context", "ANY")
                if match_context not in ("ANY", context):
                    continue
                operation = (patch.get("patch") or {}).get("operation")
                if operation not in ("INSERT_BEFORE", "INSERT_FIRST", "ADD", "INSERT_AFTER"):
                    continue
                sub_filter = ((((match.get("listener") or {}).get("filterChain") or {}).get("filter") or {})
                              .get("subFilter") or {}).get("name")
                if operation == "INSERT_AFTER" and sub_filter in ("envoy.filters.http.router", "envoy.router"):
                    notes.append(f"{where} configPatches[{index}] is inserted after the router, where it never "
                                 "runs")
                    continue
                value = (patch.get("patch") or {}).get("value") or {}
                if value.get("name") == "envoy.lua":
                    item_notes.append(f"{where} uses the deprecated filter name envoy.lua; write "
                                      "envoy.filters.http.lua")
                typed = value.get("typed_config") or value.get("typedConfig") or {}
                if typed.get("@type") == LUA_V2_TYPE or "config" in value:
                    notes.append(f"{where} configPatches[{index}] uses the removed v2 Lua API; Envoy rejects it, so "
                                 f"it does not run (use @type {LUA_TYPE_URL})")
                    continue
                code = lua_code(typed)
                if code is None:
                    notes.append(f"{where} configPatches[{index}] has no inlineCode; not run")
                    continue
                applied.append(LuaPatch(document, index, code, item_notes))
        return applied, notes

    # ------------------------------------------------------------------ virtual services and rules

    def virtual_services_for(self, host: str, context: RouteContext) -> list:
        """VirtualServices bound to ``context`` for ``host``, most specific host first."""
        candidates = self.virtual_services
        if context.gateways == {"mesh"}:  # a sidecar: only mesh-bound ones, looked up by service
            if self._mesh_index is None:
                self._mesh_index = HostIndex(
                    (d, str(h), self.ns(d)) for d in self.virtual_services
                    if "mesh" in {_gateway_key(g, self.ns(d)) for g in (d.body.get("spec") or {}).get("gateways")
                                  or ["mesh"]}
                    for h in (d.body.get("spec") or {}).get("hosts") or [])
            candidates = self._mesh_index.candidates(request_fqdn(host, context.namespace))
        found = []
        for document in candidates:
            spec = document.body.get("spec") or {}
            namespace = self.ns(document)
            bound = {_gateway_key(g, namespace) for g in spec.get("gateways") or ["mesh"]}
            if not bound & context.gateways:
                continue
            best = None
            for pattern in spec.get("hosts") or []:
                if _vs_host_matches(str(pattern), namespace, host, context):
                    rank = _specificity(str(pattern))
                    best = rank if best is None or rank > best else best
            if best is not None:
                found.append((best, self.key(document), document))
        found.sort(key=lambda item: (-item[0], item[1]))
        return [document for _rank, _key, document in found]

    def destination_rule_for(self, service_fqdn: str, client_namespace: str,
                             service_namespace: str) -> tuple[Optional[Document], list]:
        """The DestinationRule Istio uses for a host (client namespace, then the service's, then the root);
        notes when several compete."""
        if self._rule_index is None:
            self._rule_index = HostIndex((d, str((d.body.get("spec") or {}).get("host") or ""), self.ns(d))
                                         for d in self.destination_rules)
        candidates = []
        for document in self._rule_index.candidates(service_fqdn):
            host = str((document.body.get("spec") or {}).get("host") or "")
            namespace = self.ns(document)
            if not host or not host_matches(host, service_fqdn, namespace):
                continue
            order = {client_namespace: 0, service_namespace: 1, self.root_namespace: 2}.get(namespace)
            if order is None:
                continue
            candidates.append(((order, 0 if "*" not in host else 1, self.key(document)), document))
        candidates.sort(key=lambda item: item[0])
        notes = []
        if len(candidates) > 1 and candidates[0][0][:2] == candidates[1][0][:2]:
            notes.append(f"several DestinationRules cover {service_fqdn} "
                         f"({', '.join(self.key(d) for _k, d in candidates)}); Istio uses the oldest, assumed "
                         f"{self.key(candidates[0][1])}")
        return (candidates[0][1] if candidates else None), notes


class HostIndex:
    """Objects by the service their host names (Istio's rules, in the object's namespace), so a lookup reads only the
    objects that can match: those naming the same service, plus every one with a wildcard or non-service host
    (checked by the caller as before)."""

    def __init__(self, entries: Iterable[tuple[Document, str, str]]):
        self.by_service: dict = {}
        self.others: list = []
        for document, host, namespace in entries:
            if is_service_host(host):
                self.by_service.setdefault(service_key(fqdn(host, namespace)), []).append(document)
            else:
                self.others.append(document)

    def candidates(self, service_fqdn: str) -> list:
        """Objects that may cover ``service_fqdn`` (a host already resolved to its FQDN)."""
        found = self.by_service.get(service_key(service_fqdn), []) if is_service_host(service_fqdn) else []
        return list({id(d): d for d in [*found, *self.others]}.values())  # each once (callers sort)


def lua_code(typed_config: dict) -> Optional[str]:
    for key in ("inlineCode", "inline_code"):
        if isinstance(typed_config.get(key), str):
            return typed_config[key]
    source = typed_config.get("defaultSourceCode") or typed_config.get("default_source_code") or {}
    for key in ("inlineString", "inline_string"):
        if isinstance(source.get(key), str):
            return source[key]
    return None


def _is_lua_patch(patch: dict) -> bool:
    if patch.get("applyTo") != "HTTP_FILTER":
        return False
    value = (patch.get("patch") or {}).get("value") or {}
    typed = value.get("typed_config") or value.get("typedConfig") or {}
    return value.get("name") in LUA_NAMES or str(typed.get("@type", "")).endswith(".Lua")


def _priority(document: Document) -> int:
    priority = (document.body.get("spec") or {}).get("priority", 0)
    return priority if isinstance(priority, int) else 0


def _text(labels: dict) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in labels.items()) + "}"


def _gateway_key(name: str, namespace: str) -> str:
    name = str(name)
    if name == "mesh" or "/" in name:
        return name
    return f"{namespace}/{name}"


def _gateway_host_matches(server_host: str, host: str) -> bool:
    pattern = str(server_host).split("/", 1)[1] if "/" in str(server_host) else str(server_host)
    return _wildcard_matches(pattern.lower(), host.lower())


def _wildcard_matches(pattern: str, host: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return pattern == host


def _vs_host_matches(pattern: str, namespace: str, host: str, context: RouteContext) -> bool:
    if "mesh" in context.gateways:  # the pattern by Istio's rules, the request's host by Kubernetes DNS
        return host_matches(fqdn(pattern, namespace), request_fqdn(host, context.namespace)) \
            or fqdn(pattern, namespace) == fqdn(host)
    if pattern == "*" or pattern.startswith("*."):
        return _wildcard_matches(pattern.lower(), host.lower())
    if is_service_host(pattern) and is_service_host(host):
        return fqdn(pattern, namespace) == fqdn(host, namespace)
    return pattern.lower() == host.lower()


def _specificity(pattern: str) -> int:
    if pattern == "*":
        return 0
    if pattern.startswith("*"):
        return len(pattern)
    return 10000


# ---------------------------------------------------------------------------------------- request matching

def string_match(spec: Any, value: Optional[str], ignore_case: bool = False) -> bool:
    """Istio StringMatch: exact, prefix or regex (RE2, full match); ``{}`` means "present"."""
    if value is None:
        return False
    if not isinstance(spec, dict) or not spec:
        return True
    if ignore_case:
        value = value.lower()
    if "exact" in spec:
        return value == (str(spec["exact"]).lower() if ignore_case else str(spec["exact"]))
    if "prefix" in spec:
        return value.startswith(str(spec["prefix"]).lower() if ignore_case else str(spec["prefix"]))
    if "regex" in spec:
        try:
            return re2_compile(str(spec["regex"])).fullmatch(value) is not None
        except RegexError:
            return False
    return True


def describe_string_match(spec: Any) -> str:
    if not isinstance(spec, dict) or not spec:
        return "present"
    for key in ("exact", "prefix", "regex"):
        if key in spec:
            return f"{key} {spec[key]!r}"
    return "present"


def query_params(path: str) -> dict:
    """First value of each query parameter of a path (decoded)."""
    params: dict = {}
    query = path.split("?", 1)[1].split("#", 1)[0] if "?" in path else ""
    for pair in query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        params.setdefault(unquote_plus(key), unquote_plus(value))
    return params


def match_block(block: dict, request: HttpRequest, context: RouteContext, namespace: str) -> tuple[bool, str]:
    """One HTTPMatchRequest (all conditions must hold); returns (matched, description of what decided)."""
    parts = []
    path = request.path.split("?", 1)[0]
    ignore_case = bool(block.get("ignoreUriCase"))
    if "uri" in block:
        if not string_match(block["uri"], path, ignore_case):
            return False, f"uri {describe_string_match(block['uri'])} does not match {path!r}"
        parts.append(f"uri {describe_string_match(block['uri'])}")
    for field_name, value in (("method", request.method), ("scheme", request.scheme),
                              ("authority", request.authority)):
        if field_name in block:
            if not string_match(block[field_name], value):
                return False, f"{field_name} {describe_string_match(block[field_name])} does not match {value!r}"
            parts.append(f"{field_name} {describe_string_match(block[field_name])}")
    for name, spec in (block.get("headers") or {}).items():
        header_value = request.header(str(name))
        if not string_match(spec, header_value):
            shown = "absent" if header_value is None else repr(header_value)
            return False, f"header {name} {describe_string_match(spec)} (request: {shown})"
        parts.append(f"header {name} {describe_string_match(spec)}")
    for name, spec in (block.get("withoutHeaders") or {}).items():
        if string_match(spec, request.header(str(name))):
            return False, f"withoutHeaders {name} {describe_string_match(spec)} matched"
        parts.append(f"without header {name} {describe_string_match(spec)}")
    params = query_params(request.path)
    for name, spec in (block.get("queryParams") or {}).items():
        if not string_match(spec, params.get(str(name))):
            return False, f"query {name} {describe_string_match(spec)} (request: {params.get(str(name))!r})"
        parts.append(f"query {name} {describe_string_match(spec)}")
    if "port" in block and context.port is not None and block["port"] != context.port:
        return False, f"port {block['port']} (request: {context.port})"
    if block.get("sourceLabels"):
        if not selects(labels_of(block["sourceLabels"]), context.source_labels):
            return False, f"sourceLabels {_text(labels_of(block['sourceLabels']))} do not match the caller"
        parts.append(f"sourceLabels {_text(labels_of(block['sourceLabels']))}")
    if block.get("sourceNamespace"):
        if block["sourceNamespace"] != context.namespace:
            return False, f"sourceNamespace {block['sourceNamespace']} (caller: {context.namespace})"
        parts.append(f"sourceNamespace {block['sourceNamespace']}")
    if block.get("gateways"):
        bound = {_gateway_key(g, namespace) for g in block["gateways"]}
        if not bound & context.gateways:
            return False, "gateways of the match block do not include this proxy"
    return True, ", ".join(parts) or "(empty match)"


def select_rule(document: Document, request: HttpRequest, context: RouteContext,
                namespace: str) -> tuple[Optional[int], Optional[dict], str, list]:
    """The first http rule that matches: (index, rule, what matched, reasons earlier rules did not)."""
    skipped: list[str] = []
    for index, rule in enumerate((document.body.get("spec") or {}).get("http") or []):
        if not isinstance(rule, dict):
            continue
        blocks = rule.get("match")
        if not blocks:
            return index, rule, "no match conditions (catch-all)", skipped
        reasons = []
        for block_index, block in enumerate(blocks):
            if not isinstance(block, dict):
                continue
            matched, reason = match_block(block, request, context, namespace)
            if matched:
                return index, rule, f"match[{block_index}]: {reason}", skipped
            reasons.append(reason)
        skipped.append(f"{rule_label(index, rule)} not matched: {'; '.join(reasons)}")
    return None, None, "", skipped


def rule_label(index: int, rule: dict) -> str:
    return f"http[{index}]" + (f" ({rule['name']})" if isinstance(rule, dict) and rule.get("name") else "")
