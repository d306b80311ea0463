"""Analyzers for Kruise TrafficRoutings and Rollouts: weights, matches (GL01xx) and references (GL03xx)."""
from __future__ import annotations

import re
from typing import Any, Iterator, Optional

from engine.checks.analyzers.common import (KRUISE, Finding, as_list, as_map, finding, is_int, is_kind, join,
                        re2_error)
from engine.checks.analyzers.istio import destinations, is_destination_rule, is_virtual_service, rule_covers_host
from engine.documents import Document, DocumentIndex
from engine.routing.hosts import how_to_write, request_service_key, service_key
from engine.routing.names import did_you_mean
from engine.routing.strategy import HEADER_TYPES, MAX_MATCHES, PATH_TYPES
from engine.routing.ownership import CANARY_SUBSET

_PERCENT = re.compile(r"^\s*(\d+)\s*%\s*$")


def is_traffic_routing(document: Document) -> bool:
    return is_kind(document, KRUISE, "TrafficRouting")


def is_rollout(document: Document) -> bool:
    return is_kind(document, KRUISE, "Rollout")


def analyze_document(document: Document) -> list[Finding]:
    findings: list[Finding] = []
    spec = as_map(document.body.get("spec"))
    if is_traffic_routing(document):
        strategy = as_map(spec.get("strategy"))
        if "weight" in strategy:
            findings.extend(_weight(document, strategy["weight"], "spec.strategy.weight"))
        findings.extend(kruise_matches(document, strategy.get("matches"), "spec.strategy.matches"))
        findings.extend(_kruise_precedence(document, strategy, "spec.strategy"))
    elif is_rollout(document):
        canary = as_map(as_map(spec.get("strategy")).get("canary"))
        for index, step in enumerate(as_list(canary.get("steps"))):
            step = as_map(step)
            path = f"spec.strategy.canary.steps[{index}]"
            if "traffic" in step:
                findings.extend(_traffic(document, step["traffic"], f"{path}.traffic"))
            if "weight" in step:
                findings.extend(_weight(document, step["weight"], f"{path}.weight"))
            findings.extend(kruise_matches(document, step.get("matches"), f"{path}.matches"))
            findings.extend(_kruise_precedence(document, step, path))
    return findings


def _kruise_precedence(document: Document, strategy: dict, path: str) -> Iterator[Finding]:
    """GL0305: weight and matches together (matches win, as in Kruise); GL0306: v1alpha1 path/queryParams,
    which Kruise's v1alpha1 API drops (headers only), so the object would route differently under Kruise."""
    matches = [as_map(match) for match in as_list(strategy.get("matches"))]
    for key in ("traffic", "weight"):
        if matches and strategy.get(key) is not None:
            yield finding("GL0305", document, f"{path}.{key}",
                          f"{key} {strategy[key]} is ignored: matches take precedence over weight (as in Kruise), "
                          "so only requests that match go to the canary; remove the weight, or the matches")
    if document.api_version != f"{KRUISE}/v1alpha1":
        return
    for index, match in enumerate(matches):
        for key in ("path", "queryParams"):
            if match.get(key):
                yield finding("GL0306", document, f"{path}.matches[{index}].{key}",
                              f"Kruise's v1alpha1 {document.kind} keeps only headers in matches and would drop "
                              f"{key}; graylane reads it, so this object is not portable to Kruise (use "
                              "rollouts.kruise.io/v1beta1 Rollout steps for path and query matches)")


def _weight(document: Document, value: Any, path: str) -> Iterator[Finding]:
    if value is not None and (not is_int(value) or not 0 <= value <= 100):
        yield finding("GL0102", document, path, f"weight must be an integer from 0 to 100, got {value!r}")


def _traffic(document: Document, value: Any, path: str) -> Iterator[Finding]:
    if value is None or (is_int(value) and 0 <= value <= 100):
        return
    match = _PERCENT.match(value) if isinstance(value, str) else None
    if not match or int(match.group(1)) > 100:
        yield finding("GL0102", document, path, f'traffic must be a percentage from "0%" to "100%", got {value!r}')


def kruise_matches(document: Document, matches: Any, path: str) -> list[Finding]:
    """GL0104 (>16), GL0103 (type enum), GL0105 (header case), GL0106 (RE2) for Kruise HttpRouteMatches."""
    findings: list[Finding] = []
    matches = as_list(matches)
    if len(matches) > MAX_MATCHES:
        findings.append(finding("GL0104", document, path,
                                f"{len(matches)} matches; Kruise allows at most {MAX_MATCHES}"))
    for index, match in enumerate(matches):
        match = as_map(match)
        match_path = f"{path}[{index}]"
        for field, allowed in (("headers", HEADER_TYPES), ("queryParams", HEADER_TYPES)):
            items = as_list(match.get(field))
            field_path = join(match_path, field)
            if len(items) > MAX_MATCHES:
                findings.append(finding("GL0104", document, field_path,
                                        f"{len(items)} {field} in one match; Kruise allows at most {MAX_MATCHES}"))
            for position, item in enumerate(items):
                item = as_map(item)
                item_path = f"{field_path}[{position}]"
                name = item.get("name")
                if field == "headers" and isinstance(name, str) and name != name.lower():
                    findings.append(finding("GL0105", document, f"{item_path}.name",
                                            f"header name {name!r} is not lowercase; write {name.lower()!r}"))
                findings.extend(_typed_value(document, item, item_path, allowed, "Exact"))
        if "path" in match:
            findings.extend(_typed_value(document, as_map(match["path"]), f"{match_path}.path", PATH_TYPES,
                                         "PathPrefix"))
    return findings


def _typed_value(document: Document, item: dict, path: str, allowed: tuple, default: str) -> Iterator[Finding]:
    match_type = item.get("type", default)
    if match_type not in allowed:
        yield finding("GL0103", document, f"{path}.type",
                      f"match type {match_type!r} is not one of {', '.join(allowed)}")
    elif match_type == "RegularExpression" and isinstance(item.get("value"), str):
        reason = re2_error(item["value"])
        if reason:
            yield finding("GL0106", document, f"{path}.value", f'"{item["value"]}" is not valid RE2: {reason}')


# ----------------------------------------------------------------------------------------- references

def strategies(document: Document) -> list[tuple[str, dict]]:
    """(path, strategy) of a TrafficRouting's strategy or of each Rollout step (what the scripts get)."""
    spec = as_map(document.body.get("spec"))
    if is_traffic_routing(document):
        return [("spec.strategy", as_map(spec.get("strategy")))]
    if is_rollout(document):
        canary = as_map(as_map(spec.get("strategy")).get("canary"))
        steps = as_list(canary.get("steps"))
        return [(f"spec.strategy.canary.steps[{i}]", as_map(step)) for i, step in enumerate(steps)]
    return []


def routing_targets(document: Document) -> list[tuple[str, dict]]:
    """(path, objectRef/trafficRoutings entry) of a TrafficRouting or Rollout."""
    spec = as_map(document.body.get("spec"))
    if is_traffic_routing(document):
        base, refs = "spec.objectRef", spec.get("objectRef")
    elif is_rollout(document):
        base = "spec.strategy.canary.trafficRoutings"
        refs = as_map(as_map(spec.get("strategy")).get("canary")).get("trafficRoutings")
    else:
        return []
    return [(f"{base}[{i}]", ref) for i, ref in enumerate(as_list(refs)) if isinstance(ref, dict)]


def _near_misses(documents: list[Document], kind: str, name: str) -> str:
    others = [d for d in documents if d.kind == kind and d.name == name]
    if not others:
        return ""
    shown = "; ".join(f"{d.api_version} in namespace {d.namespace or '(none)'} ({d.source} document {d.index})"
                      for d in others[:3])
    return f" (found {kind}/{name} as {shown})"


def service_matches(service: str, service_namespace: Optional[str], host: str,
                    host_namespace: Optional[str]) -> bool:
    name, namespace = service_key(service, service_namespace)
    host_name, resolved = service_key(host, host_namespace)
    return name == host_name and (namespace is None or resolved is None or namespace == resolved)


def unexpanded_hint(service: str, service_namespace: Optional[str], hosts: list, host_namespace: Optional[str],
                    holder: str) -> str:
    """For hosts (of ``holder``, in ``host_namespace``) written ``name.ns``/``name.ns.svc`` that Kubernetes DNS would
    resolve to ``service``: why Istio does not, and how to write them ("" when there are none)."""
    for host in hosts:
        advice = how_to_write(host, host_namespace, holder)
        if advice and request_service_key(host)[0] == service_key(service, service_namespace)[0]:
            return (f" (Istio takes host {host} literally: it expands only names without dots, so {host} names no "
                    f"Service; {advice})")
    return ""


def subset_level(document: Document) -> bool:
    """Whether the canary is a subset of the stable service (TrafficRouting; Rollout without a canary Service)."""
    if is_traffic_routing(document):
        return True
    canary = as_map(as_map(as_map(document.body.get("spec")).get("strategy")).get("canary"))
    return bool(canary.get("disableGenerateCanaryService"))


def analyze_references(documents: list[Document]) -> list[Finding]:
    """GL0301 missing network objects; GL0302 service not routed by the VirtualService; GL0303 DR host;
    GL0304 no canary subset for subset-level routing."""
    findings: list[Finding] = []
    candidates = DocumentIndex([d for d in documents if not (is_traffic_routing(d) or is_rollout(d))])
    for document in documents:
        namespace = document.namespace
        for target_path, target in routing_targets(document):
            service = target.get("service")
            findings.extend(_canary_subset(document, target_path, target, candidates))
            for index, ref in enumerate(as_list(target.get("customNetworkRefs"))):
                ref = as_map(ref)
                api_version, kind, name = ref.get("apiVersion"), ref.get("kind"), ref.get("name")
                if not all(isinstance(v, str) and v for v in (api_version, kind, name)):
                    continue
                ref_path = f"{target_path}.customNetworkRefs[{index}]"
                found = candidates.matching(api_version, kind, name, namespace)
                if not found:
                    findings.append(finding("GL0301", document, ref_path,
                                            f"{kind}/{name} ({api_version}) is not among the inputs"
                                            + did_you_mean(name, candidates.names(kind))
                                            + _near_misses(candidates.documents, kind, name)))
                    continue
                if not isinstance(service, str) or not service:
                    continue
                target_object = found[0]
                object_namespace = target_object.namespace or namespace
                if is_virtual_service(target_object):
                    hosts = [str(d.get("host")) for p, d in destinations(as_map(target_object.body.get("spec")))
                             if ".route[" in p and isinstance(d.get("host"), str)]
                    if not any(service_matches(service, namespace or object_namespace, h, object_namespace)
                               for h in hosts):
                        findings.append(finding(
                            "GL0302", document, f"{target_path}.service",
                            f"service {service} is not a destination host of {kind}/{name}, so no rule there "
                            "routes it; destination hosts: " + (", ".join(dict.fromkeys(hosts)) or "none")
                            + unexpanded_hint(service, namespace or object_namespace, hosts, object_namespace,
                                              f"{kind}/{name}")))
                elif is_destination_rule(target_object):
                    host = as_map(target_object.body.get("spec")).get("host")
                    if isinstance(host, str) and not service_matches(service, namespace or object_namespace, host,
                                                                     object_namespace):
                        findings.append(finding(
                            "GL0303", document, ref_path,
                            f"{kind}/{name} is for host {host}, not service {service}; its canary subset does not "
                            "apply to the service"
                            + unexpanded_hint(service, namespace or object_namespace, [host], object_namespace,
                                              f"{kind}/{name}")))
            ingress = target.get("ingress")
            if isinstance(ingress, dict) and isinstance(ingress.get("name"), str) and ingress["name"]:
                if not candidates.matching("networking.k8s.io/v1", "Ingress", ingress["name"], namespace):
                    findings.append(finding("GL0301", document, f"{target_path}.ingress.name",
                                            f"Ingress/{ingress['name']} (networking.k8s.io/v1) is not among the "
                                            "inputs" + _near_misses(candidates.documents, "Ingress", ingress["name"])))
    return findings



def _canary_subset(document: Document, target_path: str, target: dict, candidates: DocumentIndex) -> list[Finding]:
    service = target.get("service")
    if not subset_level(document) or not isinstance(service, str) or not service:
        return []
    refs = [as_map(r) for r in as_list(target.get("customNetworkRefs"))]
    found = [d for r in refs if all(isinstance(r.get(k), str) for k in ("apiVersion", "kind", "name"))
             for d in candidates.matching(r["apiVersion"], r["kind"], r["name"], document.namespace)]
    if not any(is_virtual_service(d) for d in found):
        return []
    for rule in found:
        if is_destination_rule(rule) and rule_covers_host(rule, service, document.namespace):
            return []
    for rule in candidates.documents:
        if is_destination_rule(rule) and rule_covers_host(rule, service, document.namespace) and any(
                as_map(s).get("name") == CANARY_SUBSET for s in as_list(as_map(rule.body.get("spec")).get("subsets"))):
            return []
    return [finding("GL0304", document, f"{target_path}.customNetworkRefs",
                    f"the canary is subset {CANARY_SUBSET!r} of service {service}, but no DestinationRule of {service} "
                    f"is referenced or defines it; reference the DestinationRule in customNetworkRefs so the subset is "
                    "added, or requests routed to the canary fail with 503")]
