"""Broken configurations, one mistake each, for the test that graylane finds whatever Istio's analyzers find.

Every case carries the Services, workloads and the ingress gateway its objects need, so that Istio reports the
intended mistake and nothing else (a missing Service would add IST0101 'host not found' everywhere).
"""
from __future__ import annotations

import copy


def service(name: str, namespace: str = "default", ports: tuple = (8080,)) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"app": name},
                     "ports": [{"name": f"http-{p}", "port": p, "targetPort": p} for p in ports]}}


def deployment(name: str, labels: dict, namespace: str = "default", port: int = 8080) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "image": "example/app:1",
                                                           "ports": [{"containerPort": port}]}]}}}}


INGRESS = [
    {"apiVersion": "v1", "kind": "Service",
     "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
     "spec": {"selector": {"istio": "ingressgateway"},
              "ports": [{"name": "http2", "port": 80, "targetPort": 80, "protocol": "TCP"}]}},
    deployment("istio-ingressgateway", {"istio": "ingressgateway"}, "istio-system"),
]
APP = [service("reviews"), deployment("reviews-v1", {"app": "reviews", "version": "v1"}),
       deployment("reviews-v2", {"app": "reviews", "version": "v2"})]


def virtual_service(name: str = "reviews", hosts: tuple = ("reviews",), gateways: tuple = (), namespace: str = "default",
                    destination: str = "reviews", **rule) -> dict:
    spec: dict = {"hosts": list(hosts),
                  "http": [{"route": [{"destination": {"host": destination}}], **rule}]}
    if gateways:
        spec["gateways"] = list(gateways)
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def destination_rule(subsets: list) -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "reviews", "namespace": "default"},
            "spec": {"host": "reviews", "subsets": subsets}}


def gateway(hosts: tuple = ("bookinfo.example.com",)) -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": "bookinfo", "namespace": "default"},
            "spec": {"selector": {"istio": "ingressgateway"},
                     "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                                  "hosts": list(hosts)}]}}


def envoy_filter(namespace: str = "istio-system", selector: dict | None = None, name: str = "envoy.filters.http.lua",
                 type_url: str = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                 priority: int | None = -10) -> dict:
    spec: dict = {"workloadSelector": {"labels": selector or {"istio": "ingressgateway"}},
                  "configPatches": [{
                      "applyTo": "HTTP_FILTER",
                      "match": {"context": "GATEWAY", "listener": {"filterChain": {"filter": {
                          "name": "envoy.filters.network.http_connection_manager",
                          "subFilter": {"name": "envoy.filters.http.router"}}}}},
                      "patch": {"operation": "INSERT_BEFORE",
                                "value": {"name": name, "typed_config": {"@type": type_url,
                                                                         "inlineCode": "-- no-op"}}}}]}
    if priority is not None:
        spec["priority"] = priority
    return {"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
            "metadata": {"name": "coloring", "namespace": namespace}, "spec": spec}


def _with_subsets(vs: dict) -> dict:
    vs = copy.deepcopy(vs)
    vs["spec"]["http"][0]["route"] = [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 90},
                                      {"destination": {"host": "reviews", "subset": "v2"}, "weight": 10}]
    return vs


SUBSETS = [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]

BROKEN: dict[str, list[dict]] = {
    "gateway-not-found": [virtual_service(hosts=("bookinfo.example.com",), gateways=("bookinfo",)), *APP],
    "host-not-in-gateway": [virtual_service(hosts=("shop.example.com",), gateways=("bookinfo",)), gateway(),
                            *INGRESS, *APP],
    "two-mesh-virtualservices-for-one-host": [virtual_service("reviews-a"), virtual_service("reviews-b"), *APP],
    "mesh-wildcard-host": [virtual_service(hosts=("*",)), *APP],
    "destination-without-port-on-multi-port-service": [
        virtual_service(), service("reviews", ports=(8080, 9090)),
        deployment("reviews-v1", {"app": "reviews", "version": "v1"})],
    "destination-port-not-on-service": [
        {**virtual_service(), "spec": {"hosts": ["reviews"], "http": [
            {"route": [{"destination": {"host": "reviews", "port": {"number": 9999}}}]}]}}, *APP],
    "subset-selects-no-pods": [_with_subsets(virtual_service()),
                               destination_rule([SUBSETS[0], {"name": "v2", "labels": {"version": "v3"}}]), *APP],
    "envoyfilter-relative-operation-without-priority": [envoy_filter(priority=None), *INGRESS],
    "envoyfilter-v2-type": [envoy_filter(type_url="type.googleapis.com/envoy.config.filter.http.lua.v2.Lua"),
                            *INGRESS],
    "header-value-percent": [virtual_service(headers={"request": {"set": {"x-share": "10%"}}}), *APP],
    "header-value-unterminated-variable": [virtual_service(headers={"request": {"add": {"x-offer": "50%off"}}}),
                                           *APP],
    "remove-host-header": [virtual_service(headers={"request": {"remove": ["host"]}}), *APP],
    "remove-pseudo-header": [virtual_service(headers={"request": {"remove": [":path"]}}), *APP],
    "header-value-newline": [virtual_service(headers={"request": {"set": {"x-note": "a\nb"}}}), *APP],
    "authority-set-twice": [virtual_service(rewrite={"authority": "reviews.internal"},
                                            headers={"request": {"set": {"host": "other"}}}), *APP],
    "regex-too-long": [virtual_service(match=[{"headers": {"x-lane": {"regex": "a" * 1030}}}]), *APP],
    "regex-empty": [virtual_service(match=[{"uri": {"regex": ""}}]), *APP],
    "regex-not-re2": [virtual_service(match=[{"headers": {"user-agent": {"regex": "^(?!curl).*"}}}]), *APP],
    "subset-label-with-space": [_with_subsets(virtual_service()),
                                destination_rule([SUBSETS[0], {"name": "v2", "labels": {"version": "v 2"}}]), *APP],
    # Istio expands only host names without dots, in the VirtualService's namespace (IST0101 host not found)
    "destination-host-name-ns": [virtual_service(destination="reviews.default"), *APP],
    "destination-host-name-ns-svc": [virtual_service(destination="reviews.default.svc"), *APP],
    "destination-short-host-of-another-namespace": [
        virtual_service(namespace="shop", hosts=("reviews.default.svc.cluster.local",)), *APP],
    "subset-label-bad-key": [_with_subsets(virtual_service()),
                             destination_rule([SUBSETS[0], {"name": "v2", "labels": {"-version": "v2"}}]), *APP],
}

# Mistakes Istio 1.31 says nothing about, which graylane reports (its README lists what it finds beyond Istio).
GRAYLANE_ONLY: dict[str, tuple[list[dict], str]] = {
    "envoyfilter-deprecated-lua-name": ([envoy_filter(name="envoy.lua"), *INGRESS], "GL0508"),
    "envoyfilter-wrong-namespace": ([envoy_filter(namespace="default", selector={"app": "gateway"}),
                                     deployment("gateway", {"app": "gateway"}, "edge"), *INGRESS], "GL0507"),
    "host-not-expanded": ([virtual_service(hosts=("reviews.default",)), *APP], "GL0510"),
    "host-not-expanded-with-svc": ([virtual_service(hosts=("reviews.default.svc",)), *APP], "GL0510"),
    "subset-selects-only-another-services-pods": (
        [_with_subsets(virtual_service()), destination_rule([SUBSETS[0], {"name": "v2", "labels": {"version": "v3"}}]),
         *APP, service("ratings"), deployment("ratings-v3", {"app": "ratings", "version": "v3"})], "GL0506"),
}


# Host forms Istio resolves to Service reviews of namespace default, from a VirtualService of that namespace or of
# another (wildcard and external hosts beside them): Istio finds nothing, and neither does graylane.
RESOLVED_HOST_FORMS: dict[str, list[dict]] = {
    "short": [virtual_service(), *APP],
    "fqdn": [virtual_service(destination="reviews.default.svc.cluster.local"), *APP],
    "fqdn-from-another-namespace": [virtual_service(namespace="shop", hosts=("reviews.default.svc.cluster.local",),
                                                    destination="reviews.default.svc.cluster.local"), *APP],
    "wildcard-host-and-fqdn": [virtual_service(hosts=("*.default.svc.cluster.local",),
                                               destination="reviews.default.svc.cluster.local"), *APP],
}
