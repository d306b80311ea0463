"""Kubernetes service host names: short, namespaced and FQDN forms of one service compare equal.

Istio and Kruise users write the same service as ``reviews``, ``reviews.bookinfo``,
``reviews.bookinfo.svc`` or ``reviews.bookinfo.svc.cluster.local``. A short name means the service in
the namespace of the object that names it (``default_namespace``). Anything else with dots (``api.example.com``,
``*.example.com``, ``*``) is an external or wildcard host: it keeps its full text as the name and never
equals a service.

Public API (also used by the simulator)::

    service_key("reviews.bookinfo.svc.cluster.local", None)  -> ("reviews", "bookinfo")
    service_key("reviews", "bookinfo")                        -> ("reviews", "bookinfo")
    service_key("reviews", None)                              -> ("reviews", None)
    same_service("reviews", "reviews.bookinfo.svc.cluster.local", "bookinfo")  -> True
    fqdn("reviews", "bookinfo")                                -> "reviews.bookinfo.svc.cluster.local"
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

CLUSTER_DOMAIN = "cluster.local"


def service_key(host: str, default_namespace: Optional[str] = None) -> tuple[str, Optional[str]]:
    """``(name, namespace)`` of a host; namespace None when the host does not say and no default is given.

    Recognised service forms: ``name``, ``name.ns``, ``name.ns.svc`` and ``name.ns.svc.<cluster domain>``.
    Other hosts (external names, wildcards) come back whole, lower-cased, with namespace None.
    """
    if isinstance(host, str) and (default_namespace is None or isinstance(default_namespace, str)):
        return _service_key(host, default_namespace)  # memoised: the simulator asks for the same hosts often
    return _service_key.__wrapped__(host, default_namespace)


@lru_cache(maxsize=65536)
def _service_key(host: str, default_namespace: Optional[str]) -> tuple[str, Optional[str]]:
    text = str(host or "").strip().lower().rstrip(".")
    if not text or "*" in text:
        return text, None
    labels = text.split(".")
    if len(labels) == 1:
        return labels[0], default_namespace
    if len(labels) == 2 or labels[2] == "svc":
        return labels[0], labels[1]
    return text, None


def same_service(a: str, b: str, namespace: Optional[str] = None) -> bool:
    """Whether hosts ``a`` and ``b`` name the same service, short names resolving in ``namespace``.

    When one side has no namespace (a short name and no ``namespace`` given), only the names must agree.
    """
    name_a, namespace_a = service_key(a, namespace)
    name_b, namespace_b = service_key(b, namespace)
    if not name_a or name_a != name_b:
        return False
    return namespace_a is None or namespace_b is None or namespace_a == namespace_b


def is_service_host(host: str) -> bool:
    """Whether ``host`` is one of the cluster-service forms (not an external name or a wildcard)."""
    name, _namespace = service_key(host)
    return bool(name) and "." not in name and "*" not in name


def fqdn(host: str, namespace: Optional[str] = None, domain: str = CLUSTER_DOMAIN) -> str:
    """The fully qualified form of a service host (``name.ns.svc.<domain>``); other hosts unchanged."""
    if not is_service_host(host):
        return str(host or "").strip().lower().rstrip(".")
    name, resolved = service_key(host, namespace)
    if resolved is None:
        return name
    return f"{name}.{resolved}.svc.{domain}"


def host_matches(pattern: str, host: str, namespace: Optional[str] = None) -> bool:
    """Whether a DestinationRule/Sidecar-style host ``pattern`` (maybe a ``*.suffix`` wildcard) covers ``host``."""
    pattern_text = str(pattern or "").strip().lower().rstrip(".")
    if pattern_text == "*":
        return True
    if pattern_text.startswith("*."):
        return fqdn(host, namespace).endswith(pattern_text[1:])
    if is_service_host(pattern_text) and is_service_host(host):
        return same_service(pattern_text, host, namespace)
    return pattern_text == str(host or "").strip().lower().rstrip(".")
