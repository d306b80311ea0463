"""Access to a live cluster through the official ``kubernetes`` client.

Configuration is found the way kubectl finds it: ``--kubeconfig``, else ``$KUBECONFIG`` (a list of files,
merged), else ``~/.kube/config``, else the in-cluster service account. ``--context`` picks a context; the
default namespace is the context's namespace (in a pod: the pod's namespace), else ``default``.

Every write carries the field manager ``graylane``. Every API failure becomes a ClusterError that names the
object and quotes the server's message; a 409 becomes ``Conflict`` and a 404 ``NotFound`` so callers can
retry or report them.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from engine.errors import ClusterError, InvalidInputError

FIELD_MANAGER = "graylane"
REQUEST_TIMEOUT = (10, 60)  # connect, read (seconds)
TRAFFIC_ROUTING = ("rollouts.kruise.io/v1alpha1", "TrafficRouting")
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class Conflict(ClusterError):
    """409: the object changed since it was read (stale resourceVersion) or already exists."""


class NotFound(ClusterError):
    """404: the object (or its kind) does not exist."""


@dataclass(frozen=True)
class Resource:
    """A resolved kind: where its objects live in the API."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def describe(self, name: str) -> str:
        """kubectl's ``virtualservice.networking.istio.io/reviews``."""
        return f"{self.kind.lower()}.{self.group}/{name}" if self.group else f"{self.kind.lower()}/{name}"


def _split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def api_error(exc: Exception, what: str) -> ClusterError:
    """One-line ClusterError for an API failure: ``<what>: <Reason> (<code>): <server message>``."""
    if isinstance(exc, ApiException):
        message = exc.reason or ""
        try:
            body = json.loads(exc.body) if exc.body else {}
            message = body.get("message") or message
            reason = body.get("reason") or exc.reason
        except (TypeError, ValueError):
            reason = exc.reason
        text = f"{what}: {reason} ({exc.status}): {message}" if message != reason else f"{what}: {reason} ({exc.status})"
        if exc.status == 409:
            return Conflict(text)
        if exc.status == 404:
            return NotFound(text)
        return ClusterError(text)
    if isinstance(exc, urllib3.exceptions.HTTPError):
        reason = getattr(exc, "reason", None) or exc
        return ClusterError(f"{what}: cannot reach the API server: {reason}")
    return ClusterError(f"{what}: {exc}")


class RateLimiter:
    """Client-side token bucket (client-go's QPS and burst): at most ``burst`` requests at once, refilled at
    ``qps`` per second. ``qps <= 0`` means no limit."""

    def __init__(self, qps: float = 0.0, burst: int = 1):
        self.qps, self.burst = qps, max(1, burst)
        self._tokens = float(self.burst)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()
        self.requests = 0  # every request that passed, for the benchmark

    def wait(self) -> None:
        with self._lock:
            self.requests += 1
            if self.qps <= 0:
                return
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.qps)
            self._stamp = now
            self._tokens -= 1
            delay = -self._tokens / self.qps if self._tokens < 0 else 0.0
        if delay > 0:
            time.sleep(delay)


class Cluster:
    """A connection to one API server: kind resolution plus get/list/replace/patch on any namespaced kind."""

    def __init__(self, api_client: client.ApiClient, default_namespace: str = "default", where: str = ""):
        self.api_client = api_client
        self.default_namespace = default_namespace
        self.where = where or api_client.configuration.host
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self._resources: dict[tuple[str, str], Resource] = {}
        self._lock = threading.Lock()
        self.limiter = RateLimiter()  # the controller sets --kube-api-qps/--kube-api-burst

    # -- kinds --------------------------------------------------------------------------------------------

    def resource(self, api_version: str, kind: str) -> Resource:
        """Resolve apiVersion + kind to its plural through discovery (cached for the process)."""
        with self._lock:
            cached = self._resources.get((api_version, kind))
        if cached:
            return cached
        group, version = _split_api_version(api_version)
        if not group:
            raise InvalidInputError(f"{kind} ({api_version}) is a core-group kind; graylane manages custom "
                                    "network resources (customNetworkRefs) such as Istio VirtualServices")
        self.limiter.wait()
        try:
            listing = self.custom.get_api_resources(group, version, _request_timeout=REQUEST_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - translated
            error = api_error(exc, f"discovering {api_version}")
            if isinstance(error, NotFound):
                raise NotFound(f"the server does not serve {api_version} (is its CRD installed?)") from None
            raise error from None
        for item in listing.resources or []:
            if item.kind == kind and "/" not in item.name:
                found = Resource(group, version, kind, item.name, bool(item.namespaced))
                with self._lock:
                    self._resources[(api_version, kind)] = found
                return found
        raise NotFound(f"the server does not serve kind {kind} in {api_version} (is its CRD installed?)")

    # -- objects ------------------------------------------------------------------------------------------

    def get(self, resource: Resource, namespace: str, name: str) -> Optional[dict]:
        """The object, or None when it does not exist."""
        self.limiter.wait()
        try:
            return self.custom.get_namespaced_custom_object(resource.group, resource.version, namespace,
                                                            resource.plural, name,
                                                            _request_timeout=REQUEST_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - translated
            error = api_error(exc, f"reading {resource.describe(name)} in namespace {namespace}")
            if isinstance(error, NotFound):
                return None
            raise error from None

    def list(self, resource: Resource, namespace: Optional[str] = None, label_selector: Optional[str] = None,
             field_selector: Optional[str] = None) -> list[dict]:
        kwargs: dict[str, Any] = {"_request_timeout": REQUEST_TIMEOUT}
        if label_selector:
            kwargs["label_selector"] = label_selector
        if field_selector:
            kwargs["field_selector"] = field_selector
        self.limiter.wait()
        try:
            if namespace:
                result = self.custom.list_namespaced_custom_object(resource.group, resource.version, namespace,
                                                                   resource.plural, **kwargs)
            else:
                result = self.custom.list_cluster_custom_object(resource.group, resource.version,
                                                                resource.plural, **kwargs)
        except Exception as exc:  # noqa: BLE001 - translated
            raise api_error(exc, f"listing {resource.plural}.{resource.group}") from None
        return list(result.get("items") or [])

    def replace(self, resource: Resource, body: dict, dry_run: bool = False) -> dict:
        """PUT the whole object; its metadata.resourceVersion makes the write conditional (409 if stale)."""
        metadata = body.get("metadata") or {}
        name, namespace = metadata.get("name"), metadata.get("namespace")
        kwargs: dict[str, Any] = {"field_manager": FIELD_MANAGER, "_request_timeout": REQUEST_TIMEOUT}
        if dry_run:
            kwargs["dry_run"] = "All"
        self.limiter.wait()
        try:
            return self.custom.replace_namespaced_custom_object(resource.group, resource.version, namespace,
                                                                resource.plural, name, writable(body), **kwargs)
        except Exception as exc:  # noqa: BLE001 - translated
            raise api_error(exc, f"updating {resource.describe(name)} in namespace {namespace}") from None

    def apply(self, resource: Resource, body: dict, dry_run: bool = False) -> dict:
        """Server-side apply of ``body`` (only the fields graylane sets) as field manager ``graylane``, taking
        over fields another manager set (force). A ``metadata.resourceVersion`` in the body makes it
        conditional (409 if stale), as for ``replace``."""
        metadata = body.get("metadata") or {}
        name, namespace = metadata.get("name"), metadata.get("namespace")
        kwargs: dict[str, Any] = {"field_manager": FIELD_MANAGER, "force": True, "_request_timeout": REQUEST_TIMEOUT,
                                  "_content_type": "application/apply-patch+yaml"}
        if dry_run:
            kwargs["dry_run"] = "All"
        self.limiter.wait()
        try:
            return self.custom.patch_namespaced_custom_object(resource.group, resource.version, namespace,
                                                              resource.plural, name, body, **kwargs)
        except Exception as exc:  # noqa: BLE001 - translated
            raise api_error(exc, f"updating {resource.describe(name)} in namespace {namespace}") from None

    def replace_status(self, resource: Resource, body: dict) -> dict:
        metadata = body.get("metadata") or {}
        name, namespace = metadata.get("name"), metadata.get("namespace")
        self.limiter.wait()
        try:
            return self.custom.replace_namespaced_custom_object_status(
                resource.group, resource.version, namespace, resource.plural, name, writable(body),
                field_manager=FIELD_MANAGER, _request_timeout=REQUEST_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - translated
            raise api_error(exc, f"updating the status of {resource.describe(name)} in namespace {namespace}") \
                from None

    def create(self, resource: Resource, body: dict) -> dict:
        metadata = body.get("metadata") or {}
        namespace = metadata.get("namespace") or self.default_namespace
        self.limiter.wait()
        try:
            return self.custom.create_namespaced_custom_object(resource.group, resource.version, namespace,
                                                               resource.plural, body, field_manager=FIELD_MANAGER,
                                                               _request_timeout=REQUEST_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - translated
            raise api_error(exc, f"creating {resource.describe(metadata.get('name'))} in namespace {namespace}") \
                from None

    def delete(self, resource: Resource, namespace: str, name: str) -> None:
        self.limiter.wait()
        try:
            self.custom.delete_namespaced_custom_object(resource.group, resource.version, namespace,
                                                        resource.plural, name, _request_timeout=REQUEST_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - translated
            error = api_error(exc, f"deleting {resource.describe(name)} in namespace {namespace}")
            if not isinstance(error, NotFound):
                raise error from None

    def list_builtin(self, kind: str, namespace: str) -> list[dict]:
        """The Services (v1) or Deployments (apps/v1) of a namespace, as their manifests are written."""
        api_version, api, call = {"Service": ("v1", self.core, "list_namespaced_service"),
                                  "Deployment": ("apps/v1", client.AppsV1Api(self.api_client),
                                                 "list_namespaced_deployment")}[kind]
        self.limiter.wait()
        try:
            result = getattr(api, call)(namespace, _request_timeout=REQUEST_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - translated
            raise api_error(exc, f"listing {kind}s in namespace {namespace}") from None
        items = self.api_client.sanitize_for_serialization(result).get("items") or []
        return [{"apiVersion": api_version, "kind": kind, **item} for item in items]

    def get_configmap(self, namespace: str, name: str) -> Optional[dict]:
        self.limiter.wait()
        try:
            found = self.core.read_namespaced_config_map(name, namespace, _request_timeout=REQUEST_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - translated
            error = api_error(exc, f"reading ConfigMap {namespace}/{name}")
            if isinstance(error, NotFound):
                return None
            raise error from None
        return self.api_client.sanitize_for_serialization(found)


def writable(body: dict) -> dict:
    """The object as sent back on PUT: without managedFields, so the server keeps tracking them itself."""
    metadata = dict(body.get("metadata") or {})
    metadata.pop("managedFields", None)
    return {**body, "metadata": metadata}


def connect(kubeconfig: Optional[str] = None, context: Optional[str] = None) -> Cluster:
    """A Cluster for the kubeconfig/context a kubectl user would expect, or the in-cluster account."""
    configuration = client.Configuration()
    default_paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    home_config = os.path.expanduser("~/.kube/config")
    have_kubeconfig = bool(kubeconfig) or any(os.path.exists(p) for p in default_paths) \
        or (not default_paths and os.path.exists(home_config))
    try:
        if have_kubeconfig:
            config_file = kubeconfig or (os.pathsep.join(default_paths) if default_paths else home_config)
            if kubeconfig and not os.path.exists(kubeconfig):
                raise ClusterError(f"kubeconfig {kubeconfig} does not exist")
            config.load_kube_config(config_file=config_file, context=context,
                                    client_configuration=configuration, persist_config=False)
            contexts, active = config.list_kube_config_contexts(config_file=config_file)
            chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
            namespace = ((chosen or {}).get("context") or {}).get("namespace") or "default"
            where = f"context {(chosen or {}).get('name', '?')} ({configuration.host})"
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            if context:
                raise ClusterError("--context needs a kubeconfig; running in a cluster without one")
            config.load_incluster_config(client_configuration=configuration)
            try:
                with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as handle:
                    namespace = handle.read().strip() or "default"
            except OSError:
                namespace = "default"
            where = f"in-cluster ({configuration.host})"
        else:
            raise ClusterError("no kubeconfig found ($KUBECONFIG is unset and ~/.kube/config does not exist) "
                               "and not running in a cluster; pass --kubeconfig FILE")
    except ConfigException as exc:
        raise ClusterError(f"kubeconfig: {exc}") from None
    except (ValueError, TypeError, AttributeError, KeyError, OSError, RecursionError, yaml.YAMLError) as exc:
        # a file that is not a kubeconfig at all (binary, a YAML list, ...): the client fails in many ways
        raise ClusterError(f"kubeconfig {kubeconfig or 'from $KUBECONFIG'} is not a valid kubeconfig: "
                           f"{type(exc).__name__}") from None
    api_client = client.ApiClient(configuration)
    api_client.user_agent = f"graylane/{version('graylane')}"
    return Cluster(api_client, namespace, where)


def version(package: str) -> str:
    try:
        from importlib.metadata import version as installed
        return installed(package)
    except Exception:  # noqa: BLE001 - a source checkout without metadata
        return "dev"
