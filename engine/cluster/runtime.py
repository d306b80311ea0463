"""Controller machinery, kept thin over the official client: its SharedInformer (list + watch + cache +
410 re-list) and its LeaderElection with a coordination.k8s.io Lease, plus what the Python client lacks: a
client-go style work queue (dedup, one worker per key, delayed and rate-limited re-adds), back-off with
jitter, a client-side rate limit (QPS/burst) and health endpoints.

Adaptations of the official pieces, each for a failure seen against a real API server (README.md, cluster
section):
- SharedInformer expects typed list results; custom objects come back as dicts, so ``_list_function`` wraps
  the CustomObjectsApi list call. The informer retries a failed watch at once and logs a traceback each time
  (12,000 lines a second while the API server is down); the wrapper waits with jittered exponential back-off
  after a failure, and the informer's own logger is silenced in favour of one line per back-off step.
  ``CachedInformer`` also says when its cache holds the first complete list (``synced``).
- LeaseLock builds its API from the global default configuration, calls the API without a timeout, and lets
  errors other than ``ApiException`` (connection refused) kill the election thread, after which the stop
  callback never runs. ``GuardedLeaseLock`` uses our ApiClient with timeouts, turns every failure into a
  failed attempt, remembers when the last successful renewal was *sent*, and answers ``may_write()``: a
  leader that has not renewed within the renew deadline (shorter than the lease duration) stops writing
  before any other replica can take the Lease. On shutdown it hands the Lease back (client-go's
  ReleaseOnCancel) so a successor takes over at once.
"""
from __future__ import annotations

import heapq
import logging
import random
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any, Callable, Hashable, Optional

from kubernetes import client
from kubernetes.informer import ADDED, DELETED, ERROR, MODIFIED, SharedInformer
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from engine.cluster.client import Cluster, Resource, api_error

log = logging.getLogger("graylane.controller")
LEASE_TIMEOUT = (3, 5)  # connect, read (seconds) for Lease calls: well inside the renew deadline


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """Exponential back-off with jitter (between half and all of ``base * 2**failures``, at most ``cap``);
    never overflows, however many failures."""
    delay = min(cap, base * (2 ** min(failures, 32)))
    return delay * (0.5 + random.random() / 2)


class WorkQueue:
    """Keys to reconcile. A key is never handed to two workers at once; adding a key that is being worked on
    queues it once more for after ``done``. ``add_after`` delays; ``add_rate_limited`` backs off per key."""

    def __init__(self, base_delay: float = 0.2, max_delay: float = 60.0):
        self._cond = threading.Condition()
        self._queue: deque = deque()
        self._dirty: set = set()
        self._processing: set = set()
        self._delayed: list = []  # heap of (due, sequence, key)
        self._sequence = 0
        self._failures: dict[Hashable, int] = {}
        self._base, self._max = base_delay, max_delay
        self._shutdown = False

    def add(self, key: Hashable) -> None:
        with self._cond:
            self._add_locked(key)

    def _add_locked(self, key: Hashable) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._cond.notify()

    def add_after(self, key: Hashable, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            self._sequence += 1
            heapq.heappush(self._delayed, (time.monotonic() + delay, self._sequence, key))
            self._cond.notify()

    def add_rate_limited(self, key: Hashable) -> float:
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay = backoff_delay(failures, self._base, self._max)
        self.add_after(key, delay)
        return delay

    def forget(self, key: Hashable) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def get(self, timeout: Optional[float] = None) -> Optional[Hashable]:
        """The next key (mark it processing), or None on timeout/shutdown."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    self._add_locked(heapq.heappop(self._delayed)[2])
                if self._shutdown:
                    return None
                if self._queue:
                    key = self._queue.popleft()
                    self._processing.add(key)
                    self._dirty.discard(key)
                    return key
                waits = [d - now for d in ([self._delayed[0][0]] if self._delayed else [])]
                if deadline is not None:
                    if now >= deadline:
                        return None
                    waits.append(deadline - now)
                self._cond.wait(min(waits) if waits else None)

    def done(self, key: Hashable) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
                self._cond.notify()

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue) + len(self._delayed) + len(self._processing)


class _Retry:
    """Back-off state for one retry path: how long to wait before the next attempt, and whether to log."""

    def __init__(self, base: float = 0.5, cap: float = 30.0):
        self.failures = 0
        self.pending = 0.0  # the wait before the next attempt
        self.base, self.cap = base, cap

    def failed(self) -> float:
        self.pending = backoff_delay(self.failures, self.base, self.cap)
        self.failures += 1
        return self.pending

    def succeeded(self) -> bool:
        """True when this success ends a run of failures (worth one log line)."""
        recovered, self.failures = self.failures > 0, 0
        return recovered


def _list_function(cluster: Cluster, resource: Resource, stopping: threading.Event,
                   watch_timeout: int = 300) -> Callable[..., Any]:
    custom = cluster.custom
    retry = _Retry()
    what = f"{resource.plural}.{resource.group}"

    def list_objects(namespace: Optional[str] = None, **kwargs: Any):
        """List or watch custom objects for SharedInformer.

        :rtype: object
        """
        if retry.failures:
            stopping.wait(retry.pending)
        if kwargs.get("watch"):
            kwargs.setdefault("timeout_seconds", watch_timeout)  # the server ends it cleanly; re-watched from
            kwargs["allow_watch_bookmarks"] = True               # the last resourceVersion, no re-list
            kwargs["_request_timeout"] = (10, kwargs["timeout_seconds"] + 30)  # never hang on a dead connection
        else:
            kwargs["_request_timeout"] = (10, 120)
        cluster.limiter.wait()
        try:
            if namespace:
                result = custom.list_namespaced_custom_object(resource.group, resource.version, namespace,
                                                              resource.plural, **kwargs)
            else:
                result = custom.list_cluster_custom_object(resource.group, resource.version, resource.plural,
                                                           **kwargs)
        except Exception as exc:  # noqa: BLE001 - one line per back-off step, then the informer retries
            retry.failed()
            if not stopping.is_set():
                log.warning("%s; retrying in %.1fs", api_error(exc, f"watching {what}"), retry.pending)
            raise
        if retry.succeeded():
            log.info("watching %s again", what)
        if kwargs.get("watch"):
            return result  # the raw response, streamed by kubernetes.watch.Watch
        return SimpleNamespace(items=result.get("items") or [],
                               metadata=SimpleNamespace(resource_version=(result.get("metadata") or {})
                                                        .get("resourceVersion")))
    return list_objects


class CachedInformer(SharedInformer):
    """SharedInformer that says when its cache first holds a complete list."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.synced = threading.Event()

    def _initial_list(self):
        super()._initial_list()
        self.synced.set()

    def get(self, namespace: str, name: str) -> Optional[dict]:
        return self.cache.get_by_key(f"{namespace}/{name}" if namespace else name)


def quiet_informer_logs() -> None:
    """The informer logs every failed watch with a traceback; ``_list_function`` logs one line instead."""
    logging.getLogger("kubernetes.informer").setLevel(logging.CRITICAL)
    logging.getLogger("kubernetes.informer.informer").setLevel(logging.CRITICAL)


def informer_for(cluster: Cluster, resource: Resource, namespace: Optional[str],
                 handler: Callable[[str, dict], None], label_selector: Optional[str] = None,
                 stopping: Optional[threading.Event] = None) -> CachedInformer:
    """A started informer on a custom resource that calls ``handler(event_type, obj)``. It lists once, then
    only watches (no periodic re-list: idle, it costs the API server nothing but the open watch)."""
    stopping = stopping or threading.Event()
    quiet_informer_logs()
    informer = CachedInformer(_list_function(cluster, resource, stopping), namespace=namespace,
                              resync_period=0, label_selector=label_selector)
    for event in (ADDED, MODIFIED, DELETED):
        informer.add_event_handler(event, lambda obj, event=event: handler(event, obj))
    informer.add_event_handler(ERROR, lambda exc: None)  # logged once per back-off step by the list function
    informer.start()
    return informer


class GuardedLeaseLock(LeaseLock):
    """The official LeaseLock on our ApiClient, with timeouts, no exception escaping, a write guard and
    release on shutdown."""

    def __init__(self, name: str, namespace: str, identity: str, api_client: client.ApiClient,
                 renew_deadline: float):
        super().__init__(name, namespace, identity)
        self.api_instance = client.CoordinationV1Api(api_client)
        self.released = threading.Event()
        self.renew_deadline = renew_deadline
        self._renewed_at: Optional[float] = None  # monotonic time the last successful write was sent
        self._retry = _Retry(cap=5.0)

    def _failed(self, what: str, exc: Exception) -> None:
        self._retry.failed()
        if self._retry.failures in (1, 2, 4, 8) or self._retry.failures % 16 == 0:  # one line per back-off step
            log.warning("%s Lease %s/%s: %s", what, self.namespace, self.name,
                        api_error(exc, "").args[0].lstrip(": "))

    def get(self, name, namespace):
        try:
            lease = self.api_instance.read_namespaced_lease(name, namespace, _request_timeout=LEASE_TIMEOUT)
        except client.exceptions.ApiException as exc:
            if exc.status != 404:
                self._failed("reading", exc)
            return False, exc
        except Exception as exc:  # noqa: BLE001 - connection refused, timeouts: a failed attempt, not a crash
            self._failed("reading", exc)
            return False, exc
        self.lease_reference = lease
        return True, self.get_lock_object(lease)

    def create(self, name, namespace, election_record):
        if self.released.is_set():
            return False
        body = client.V1Lease(metadata={"name": name}, spec=self.get_lease_spec(election_record))
        sent = time.monotonic()
        try:
            self.lease_reference = self.api_instance.create_namespaced_lease(namespace, body,
                                                                             _request_timeout=LEASE_TIMEOUT)
        except Exception as exc:  # noqa: BLE001
            self._failed("creating", exc)
            return False
        self._renewed(sent)
        return True

    def update(self, name, namespace, updated_record):
        if self.released.is_set() or self.lease_reference is None:
            return False
        sent = time.monotonic()
        try:
            self.lease_reference.spec = self.get_lease_spec(updated_record, self.lease_reference.spec)
            self.lease_reference = self.api_instance.replace_namespaced_lease(
                name=name, namespace=namespace, body=self.lease_reference, _request_timeout=LEASE_TIMEOUT)
        except Exception as exc:  # noqa: BLE001
            self._failed("renewing", exc)
            return False
        if updated_record.holder_identity == self.identity:
            self._renewed(sent)
        return True

    def _renewed(self, sent: float) -> None:
        self._renewed_at = sent
        if self._retry.succeeded():
            log.info("Lease %s/%s reachable again", self.namespace, self.name)

    def may_write(self) -> bool:
        """True while this replica holds the Lease with a renewal sent less than the renew deadline ago:
        another replica can take it only a whole lease duration after it last saw it renewed."""
        renewed = self._renewed_at
        return not self.released.is_set() and renewed is not None \
            and time.monotonic() - renewed < self.renew_deadline

    def release(self) -> None:
        self.released.set()
        try:
            lease = self.api_instance.read_namespaced_lease(self.name, self.namespace, _request_timeout=LEASE_TIMEOUT)
            if lease.spec and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.lease_duration_seconds = 1
                self.api_instance.replace_namespaced_lease(self.name, self.namespace, lease,
                                                           _request_timeout=LEASE_TIMEOUT)
                log.info("released Lease %s/%s", self.namespace, self.name)
        except Exception as exc:  # noqa: BLE001 - best effort; the Lease expires anyway
            log.warning("could not release Lease %s/%s: %s", self.namespace, self.name,
                        api_error(exc, "").args[0].lstrip(": "))


def election_timing(lease_duration: float) -> tuple[float, float]:
    """(renew deadline, retry period) for a lease duration, in client-go's 15/10/2 proportions."""
    renew_deadline = lease_duration * 2 / 3
    retry_period = max(1.0, lease_duration / 7.5)  # the official Config wants at least 1 s
    if lease_duration < 3:
        raise ValueError("--lease-duration must be at least 3 seconds")
    return renew_deadline, retry_period


def start_leader_election(lock: GuardedLeaseLock, lease_duration: float, on_started: Callable[[], None],
                          on_stopped: Callable[[], None]) -> threading.Thread:
    """Run the official LeaderElection in a daemon thread. ``on_stopped`` runs when leadership is lost, and
    also when the election ends for any other reason (an exception included), so the caller can exit."""
    renew_deadline, retry_period = election_timing(lease_duration)
    config = electionconfig.Config(lock, lease_duration=lease_duration, renew_deadline=renew_deadline,
                                   retry_period=retry_period, onstarted_leading=on_started,
                                   onstopped_leading=on_stopped)
    logging.getLogger("leaderelection").setLevel(logging.CRITICAL)  # GuardedLeaseLock logs one line instead
    election = leaderelection.LeaderElection(config)

    def run() -> None:
        try:
            election.run()
        except BaseException as exc:  # noqa: BLE001 - whatever ends the election ends this replica
            log.error("leader election failed: %s: %s", type(exc).__name__, exc)
            on_stopped()
    thread = threading.Thread(target=run, name="leader-election", daemon=True)
    thread.start()
    return thread


class HealthServer:
    """``/healthz`` (liveness) and ``/readyz`` (readiness) for the Deployment's probes: 200 ``ok`` or 503
    with the reason, from a ``check() -> dict[str, Optional[str]]`` giving each endpoint's failure."""

    def __init__(self, port: int, check: Callable[[], dict], address: str = "0.0.0.0"):
        checker = check

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                path = self.path.split("?")[0].strip("/")
                if path not in ("healthz", "readyz"):
                    self.send_response(404)
                    self.end_headers()
                    return
                problem = checker().get(path)
                body = (f"{problem}\n" if problem else "ok\n").encode()
                self.send_response(503 if problem else 200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # probes every few seconds: not worth a log line
                pass
        self.server = ThreadingHTTPServer((address, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, name="health", daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

