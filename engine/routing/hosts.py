"""Service host names as Istio resolves them, the one rule graylane decides "which service is this host" by.

Istio (``ResolveShortnameToFQDN``/``ConvertHostToFQDN``) expands only a name without dots: ``reviews`` in an object
of namespace ``bookinfo`` is ``reviews.bookinfo.svc.cluster.local``. Every host with a dot is taken literally, so
``reviews.bookinfo`` and ``reviews.bookinfo.svc`` name no Service (Kubernetes DNS resolves them, Istio's routing
does not: a destination written so routes nowhere). A short name resolves in the namespace of the object that
holds the host (the VirtualService or DestinationRule), not the TrafficRouting's. ``*`` and ``*.suffix`` are
wildcards; other names (``api.example.com``) are external hosts.

Requests are different: an application calling ``http://reviews.bookinfo/`` reaches Service reviews through
Kubernetes DNS, and Istio's sidecar gives that Service the virtual-host domains ``reviews.bookinfo``,
``reviews.bookinfo.svc`` and the FQDN. :func:`request_service_key` reads a request's host (or a service named on
graylane's own command line) that way.

Public API (also used by the simulator)::

    service_key("reviews.bookinfo.svc.cluster.local", None)  -> ("reviews", "bookinfo")
    service_key("reviews", "bookinfo")                        -> ("reviews", "bookinfo")
    service_key("reviews", None)                              -> ("reviews", None)
    service_key("reviews.bookinfo", "bookinfo")               -> ("reviews.bookinfo", None)   # literal
    request_service_key("reviews.bookinfo", "default")        -> ("reviews", "bookinfo")
    same_service("reviews", "reviews.bookinfo.svc.cluster.local", "bookinfo")  -> True
    fqdn("reviews", "bookinfo")                                -> "reviews.bookinfo.svc.cluster.local"
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

CLUSTER_DOMAIN = "cluster.local"
_FQDN_SUFFIX = (".svc." + CLUSTER_DOMAIN).split(".")[1:]  # ["svc", "cluster", "local"]


def service_key(host: str, default_namespace: Optional[str] = None) -> tuple[str, Optional[str]]:
    """``(name, namespace)`` of a host as Istio resolves it; namespace None when the host is not a Service (then the
    name is the whole host, lower-cased) or is a short name and no namespace is given.

    Service forms: ``name`` (in ``default_namespace``, the namespace of the object holding the host) and
    ``name.ns.svc.cluster.local``. Everything else with a dot is literal, ``name.ns`` and ``name.ns.svc`` included.
    """
    if isinstance(host, str) and (default_namespace is None or isinstance(default_namespace, str)):
        return _service_key(host, default_namespace)  # memoised: the simulator asks for the same hosts often
    return _service_key.__wrapped__(host, default_namespace)


def _normal(host: object) -> str:
    return str(host or "").strip().lower().rstrip(".")


@lru_cache(maxsize=65536)
def _service_key(host: str, default_namespace: Optional[str]) -> tuple[str, Optional[str]]:
    text = _normal(host)
    if not text or "*" in text or ":" in text:  # an IPv6 address has no dot but is not expanded either
        return text, None
    labels = text.split(".")
    if len(labels) == 1:
        return labels[0], default_namespace
    if len(labels) == 2 + len(_FQDN_SUFFIX) and labels[2:] == _FQDN_SUFFIX:
        return labels[0], labels[1]
    return text, None


def request_service_key(host: str, client_namespace: Optional[str] = None) -> tuple[str, Optional[str]]:
    """``(name, namespace)`` of the Service a request to ``host`` reaches through Kubernetes DNS and the sidecar's
    virtual-host domains: ``name`` (in the client's namespace), ``name.ns``, ``name.ns.svc`` and the FQDN. Other
    hosts come back whole with namespace None. Also how graylane reads a service named on its command line."""
    return service_key(unexpanded_service_form(host) or host, client_namespace)


def request_fqdn(host: str, client_namespace: Optional[str] = None) -> str:
    """The Service FQDN a request's host reaches (:func:`request_service_key`); other hosts unchanged."""
    name, namespace = request_service_key(host, client_namespace)
    return f"{name}.{namespace}.svc.{CLUSTER_DOMAIN}" if namespace is not None else name


def same_service(a: str, b: str, namespace: Optional[str] = None) -> bool:
    """Whether hosts ``a`` and ``b`` (of one object, short names resolving in ``namespace``) name the same Service.

    When one side has no namespace (a short name and no ``namespace`` given), only the names must agree.
    """
    name_a, namespace_a = service_key(a, namespace)
    name_b, namespace_b = service_key(b, namespace)
    if not name_a or name_a != name_b:
        return False
    return namespace_a is None or namespace_b is None or namespace_a == namespace_b


def is_service_host(host: str) -> bool:
    """Whether Istio resolves ``host`` to a cluster Service: a short name or ``name.ns.svc.cluster.local``."""
    name, _namespace = service_key(host)
    return bool(name) and "." not in name and "*" not in name


def fqdn(host: str, namespace: Optional[str] = None, domain: str = CLUSTER_DOMAIN) -> str:
    """The host as Istio resolves it: ``name.ns.svc.<domain>`` for a Service; every other host unchanged
    (lower-cased), ``name.ns`` included; a short name without a namespace stays short."""
    if not is_service_host(host):
        return _normal(host)
    name, resolved = service_key(host, namespace)
    if resolved is None:
        return name
    return f"{name}.{resolved}.svc.{domain}"


def host_matches(pattern: str, host: str, namespace: Optional[str] = None) -> bool:
    """Whether a DestinationRule/Sidecar-style host ``pattern`` (maybe a ``*.suffix`` wildcard) covers ``host``,
    both resolved by Istio's rules in ``namespace``."""
    return istio_hosts_match(fqdn(pattern, namespace), fqdn(host, namespace))


def how_to_write(host: str, namespace: Optional[str], holder: str = "this object") -> str:
    """For a host Istio takes literally but Kubernetes DNS would resolve (``name.ns``, ``name.ns.svc``), the advice
    on how to write it in ``holder``, an object of ``namespace``; "" for every other host."""
    full = unexpanded_service_form(host)
    if full is None:
        return ""
    name, service_namespace = full.split(".")[:2]
    if namespace == service_namespace:
        return f"write {full!r}, or the short name {name!r} ({holder} is in namespace {service_namespace})"
    where = f"namespace {namespace}" if namespace else f"the namespace of {holder}"
    return f"write {full!r} (the short name {name!r} would mean Service {name} of {where})"


# ------------------------------------------------------------------------- Istio's own resolution rules

def istio_hosts_match(a: str, b: str) -> bool:
    """Whether two Istio host names overlap (``*.example.com`` covers ``a.example.com``; ``*`` covers all),
    as Istio's host.Name.Matches."""
    if a.startswith("*"):
        if b.startswith("*"):
            return b[1:].endswith(a[1:]) if len(a) < len(b) else a[1:].endswith(b[1:])
        return b.endswith(a[1:])
    if b.startswith("*"):
        return a.endswith(b[1:])
    return a == b


def unexpanded_service_form(host: str, domain: str = CLUSTER_DOMAIN) -> Optional[str]:
    """For ``name.ns`` or ``name.ns.svc`` (which Kubernetes DNS resolves but Istio takes literally, so they name no
    Service), the fully qualified form Istio needs; None for every other host."""
    text = str(host or "").strip().rstrip(".")
    labels = text.split(".")
    if "*" in text or len(labels) not in (2, 3) or (len(labels) == 3 and labels[2] != "svc"):
        return None
    return f"{labels[0]}.{labels[1]}.svc.{domain}"
