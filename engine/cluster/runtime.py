"""Controller machinery, kept thin over the official client: its SharedInformer (list + watch + reconnect +
410 re-list), its LeaderElection with a coordination.k8s.io Lease, plus the one piece the Python client
lacks, a client-go style work queue (dedup, one worker per key, delayed and rate-limited re-adds).

Two small adaptations, both documented in README.md (cluster section):
- SharedInformer expects typed list results (``.items``, ``.metadata.resource_version``); custom objects come
  back as dicts, so ``informer_for`` wraps the CustomObjectsApi list call.
- LeaseLock builds its API from the global default configuration and LeaderElection.run() cannot be
  stopped; ``ReleasableLeaseLock`` uses our ApiClient and, on shutdown, hands the Lease back (as client-go's
  ReleaseOnCancel does) and refuses further renewals, so a successor takes over at once.
"""
from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import deque
from types import SimpleNamespace
from typing import Any, Callable, Hashable, Optional

from kubernetes import client
from kubernetes.informer import ADDED, DELETED, ERROR, MODIFIED, SharedInformer
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from engine.cluster.client import Cluster, Resource

log = logging.getLogger("graylane.controller")


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
        delay = min(self._max, self._base * (2 ** failures))
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


def _list_function(cluster: Cluster, resource: Resource, resync: float) -> Callable[..., Any]:
    custom = cluster.custom

    def list_objects(namespace: Optional[str] = None, **kwargs: Any):
        """List or watch custom objects for SharedInformer.

        :rtype: object
        """
        if kwargs.get("watch"):
            kwargs["_request_timeout"] = (10, max(resync, 30) + 30)  # never hang on a dead connection
        else:
            kwargs["_request_timeout"] = (10, 120)
        if namespace:
            result = custom.list_namespaced_custom_object(resource.group, resource.version, namespace,
                                                          resource.plural, **kwargs)
        else:
            result = custom.list_cluster_custom_object(resource.group, resource.version, resource.plural, **kwargs)
        if kwargs.get("watch"):
            return result  # the raw response, streamed by kubernetes.watch.Watch
        return SimpleNamespace(items=result.get("items") or [],
                               metadata=SimpleNamespace(resource_version=(result.get("metadata") or {})
                                                        .get("resourceVersion")))
    return list_objects


def informer_for(cluster: Cluster, resource: Resource, namespace: Optional[str],
                 handler: Callable[[str, dict], None], label_selector: Optional[str] = None,
                 field_selector: Optional[str] = None, resync: float = 300.0,
                 stopping: Optional[threading.Event] = None) -> SharedInformer:
    """A started SharedInformer on a custom resource that calls ``handler(event_type, obj)``; watch errors are
    logged (the informer reconnects by itself) unless ``stopping`` is set."""
    informer = SharedInformer(_list_function(cluster, resource, resync), namespace=namespace,
                              resync_period=resync, label_selector=label_selector, field_selector=field_selector)
    for event in (ADDED, MODIFIED, DELETED):
        informer.add_event_handler(event, lambda obj, event=event: handler(event, obj))
    informer.add_event_handler(ERROR, lambda exc: (stopping is not None and stopping.is_set()) or log.warning(
        "watch on %s.%s: %s; reconnecting", resource.plural, resource.group, exc))
    informer.start()
    return informer


class ReleasableLeaseLock(LeaseLock):
    """The official LeaseLock on our ApiClient; ``release()`` gives the Lease up and stops further renewals."""

    def __init__(self, name: str, namespace: str, identity: str, api_client: client.ApiClient):
        super().__init__(name, namespace, identity)
        self.api_instance = client.CoordinationV1Api(api_client)
        self.released = threading.Event()

    def create(self, name, namespace, election_record):
        return False if self.released.is_set() else super().create(name, namespace, election_record)

    def update(self, name, namespace, updated_record):
        return False if self.released.is_set() else super().update(name, namespace, updated_record)

    def release(self) -> None:
        self.released.set()
        try:
            lease = self.api_instance.read_namespaced_lease(self.name, self.namespace)
            if lease.spec and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.lease_duration_seconds = 1
                self.api_instance.replace_namespaced_lease(self.name, self.namespace, lease)
                log.info("released Lease %s/%s", self.namespace, self.name)
        except Exception as exc:  # noqa: BLE001 - best effort; the Lease expires anyway
            log.warning("could not release Lease %s/%s: %s", self.namespace, self.name, exc)


def start_leader_election(lock: ReleasableLeaseLock, lease_duration: float, on_started: Callable[[], None],
                          on_stopped: Callable[[], None]) -> threading.Thread:
    """Run the official LeaderElection in a daemon thread (its run() blocks and cannot be interrupted)."""
    renew_deadline = lease_duration * 2 / 3
    retry_period = max(1.0, lease_duration / 6)
    if lease_duration < 3 or renew_deadline <= 1.2 * retry_period:
        raise ValueError("--lease-duration must be at least 3 seconds")
    config = electionconfig.Config(lock, lease_duration=lease_duration, renew_deadline=renew_deadline,
                                   retry_period=retry_period, onstarted_leading=on_started,
                                   onstopped_leading=on_stopped)
    logging.getLogger("leaderelection").setLevel(logging.WARNING)
    thread = threading.Thread(target=leaderelection.LeaderElection(config).run, name="leader-election",
                              daemon=True)
    thread.start()
    return thread
