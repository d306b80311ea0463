"""``graylane controller``: keeps the objects TrafficRoutings reference in the state their spec.strategy asks
for, with the same apply/restore code as the CLI.

Lifecycle and status (phases and messages as Kruise's TrafficRouting controller writes them):
- Initial ("TrafficRouting is Initializing"): first seen; the finalizer graylane.io/restore is added. It
  stays Initial, with the error as message, while the first apply fails.
- Progressing ("TrafficRouting is Progressing"): spec.strategy routes traffic to the canary (a weight,
  matches or a header modifier) and it is applied to every referenced object.
- Finalizing ("TrafficRouting is Finalizing") -> Healthy ("TrafficRouting is Healthy"): the strategy is
  emptied (``strategy: {}``): the objects are restored from their stored originals; Healthy once done.
- Terminating: the TrafficRouting is being deleted: every referenced object is restored, then the finalizer
  is removed and the API server lets the object go.
A failure (missing object, script error, validation error, API error) changes nothing (apply is all or
nothing), leaves the phase as it was and says what happened in status.message; the key is retried with
backoff. status.observedGeneration is the generation last reconciled.

Drift: every kind a TrafficRouting references is watched; an edit by someone else (resourceVersion other
than the one graylane wrote) re-queues the owning TrafficRouting, at most once per --drift-interval. The
re-assertion folds the other writer's changes into the stored original (ownership.fold_original), so only
graylane's own parts are put back.

Reads come from informer caches (one list per kind at start, then only watches): idle, the controller sends
the API server nothing. A failing TrafficRouting costs only its own retries, with jittered back-off and one
log line per attempt; no error ends a worker. Writes happen only while this replica's Lease renewal is
younger than the renew deadline (GuardedLeaseLock.may_write).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Callable, Optional

import yaml

from engine import inputs
from engine.documents import Document
from engine.errors import ClusterError, GraylaneError, InvalidInputError
from engine.progress import Progress
from engine.routing.render import Engine
from engine.lua.scripts import ScriptLibrary, builtin_layer, configmap_layer, directory_layer, lua_path_from_env
from engine.routing.strategy import TrafficStrategy, plan
from engine.cluster.apply import Applier, Report, Target, targets_of
from engine.cluster.client import TRAFFIC_ROUTING, Cluster, Conflict, NotFound, RateLimiter, connect
from engine.cluster.runtime import (CachedInformer, GuardedLeaseLock, HealthServer, WorkQueue, election_timing,
                                    informer_for, quiet_informer_logs, start_leader_election)

FINALIZER = "graylane.io/restore"
# Set on a TrafficRouting to let it go without restoring its objects (when they cannot be restored).
RELEASE_ANNOTATION = "graylane.io/release-without-restore"
INITIAL, HEALTHY, PROGRESSING, FINALIZING, TERMINATING = (
    "Initial", "Healthy", "Progressing", "Finalizing", "Terminating")
MESSAGES = {INITIAL: "TrafficRouting is Initializing", HEALTHY: "TrafficRouting is Healthy",
            PROGRESSING: "TrafficRouting is Progressing", FINALIZING: "TrafficRouting is Finalizing",
            TERMINATING: "TrafficRouting is Terminating"}

log = logging.getLogger("graylane.controller")
Key = tuple[str, str]  # namespace, name
ObjectKey = tuple[str, str, str, str]  # group, kind, namespace, name


def _meta(body: dict) -> dict:
    return body.get("metadata") or {}


def _object_key(body: dict) -> ObjectKey:
    meta = _meta(body)
    return (str(body.get("apiVersion", "")).rpartition("/")[0], body.get("kind", ""), meta.get("namespace", ""),
            meta.get("name", ""))


def _routes_canary(strategy: TrafficStrategy) -> bool:
    return bool(strategy.weight is not None or strategy.matches or strategy.request_header_modifier)


def _newer(a: Optional[dict], b: Optional[dict]) -> Optional[dict]:
    """The later of two versions of one object (resourceVersions are etcd revisions)."""
    if a is None or b is None:
        return a or b
    try:
        return a if int(_meta(a).get("resourceVersion") or 0) >= int(_meta(b).get("resourceVersion") or 0) else b
    except ValueError:
        return a


def _signature(body: dict) -> tuple:
    """What a TrafficRouting event must change to need a reconcile (status changes do not)."""
    meta = _meta(body)
    return (meta.get("generation"), bool(meta.get("deletionTimestamp")), FINALIZER in (meta.get("finalizers") or []),
            (meta.get("annotations") or {}).get(RELEASE_ANNOTATION))


class NotLeader(ClusterError):
    """This replica may not write: its Lease renewal is older than the renew deadline."""


def _summary(report: Report) -> str:
    return "; ".join(o.line() for o in report.outcomes if o.state not in ("configured", "unchanged", "restored"))


@dataclass
class Options:
    namespace: Optional[str]  # None: all namespaces
    selector: Optional[str] = None
    scripts_configmap: Optional[tuple[str, str]] = None
    lua_dirs: tuple = ()
    timeout: Optional[float] = None
    max_memory: Optional[int] = None
    workers: int = 4
    drift_interval: float = 5.0
    resync: float = 300.0
    sync_timeout: float = 60.0  # how long a reconcile waits for a new kind's cache to fill


class Controller:
    def __init__(self, cluster: Cluster, options: Options, check=None,
                 may_write: Optional[Callable[[], bool]] = None):
        self.cluster, self.options, self.check = cluster, options, check
        self.may_write = may_write or (lambda: True)
        self.tr_resource = cluster.resource(*TRAFFIC_ROUTING)
        self.queue = WorkQueue()
        self.stopping = threading.Event()
        self._lock = threading.Condition()
        self._claims: dict[ObjectKey, Key] = {}      # network object -> the TrafficRouting that routes it
        self._claimed: dict[Key, set] = defaultdict(set)  # and back (scanning _claims per reconcile was O(N))
        self._written: dict[ObjectKey, deque] = defaultdict(lambda: deque(maxlen=4))  # resourceVersions we wrote
        self._latest: dict[ObjectKey, dict] = {}     # what we wrote, until the cache has caught up with it
        self._in_flight: dict[ObjectKey, int] = defaultdict(int)  # objects being written right now
        self._last_drift: dict[Key, float] = {}
        self._signatures: dict[Key, tuple] = {}
        self._informers: dict[tuple[str, str], CachedInformer] = {}  # (group, kind) -> its informer
        self._tr_informer: Optional[CachedInformer] = None
        self._workers: list[threading.Thread] = []
        self._attempted: Optional[set[Key]] = set()  # reconciled at least once, until the initial sync is shown
        self.sandbox = inputs.sandbox(options.timeout, options.max_memory)
        self.engine = Engine(self._library(None), self.sandbox)
        self._scripts_data: Optional[dict] = None
        self.started = threading.Event()

    # -- scripts --------------------------------------------------------------------------------------------

    def _library(self, configmap: Optional[dict]) -> ScriptLibrary:
        layers = [directory_layer(d) for d in [*self.options.lua_dirs, *lua_path_from_env()]]
        if configmap is not None and self.options.scripts_configmap:
            namespace, name = self.options.scripts_configmap
            layers.append(configmap_layer(yaml.safe_dump(configmap), f"ConfigMap {namespace}/{name}"))
        layers.append(builtin_layer())
        return ScriptLibrary(layers)

    def _load_scripts(self, configmap: Optional[dict], why: str) -> None:
        self._scripts_data = (configmap or {}).get("data")
        try:
            library = self._library(configmap)
        except GraylaneError as exc:  # keep serving with the built-ins; every reconcile reports the problem
            log.error("scripts from the ConfigMap could not be loaded: %s", exc)
            library = _BrokenLibrary(str(exc))
        self.engine = Engine(library, self.sandbox)
        log.info("scripts %s: %s", why, ", ".join(library.keys()) if isinstance(library, ScriptLibrary) else "-")

    def _on_configmap(self, event: str, body: dict) -> None:
        configmap = None if event == "DELETED" else body
        if (configmap or {}).get("data") == self._scripts_data:
            return  # the initial list, a resync, or a change outside data
        self._load_scripts(configmap, "reloaded from the changed ConfigMap" if configmap else
                           "reset to the built-ins (ConfigMap deleted)")
        self.enqueue_all()

    # -- start/stop -----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Begin reconciling (called once this replica leads)."""
        if self.stopping.is_set():
            return
        log.info("reconciling TrafficRoutings in %s%s", f"namespace {self.options.namespace}"
                 if self.options.namespace else "all namespaces",
                 f" matching {self.options.selector}" if self.options.selector else "")
        if self.options.scripts_configmap:
            namespace, name = self.options.scripts_configmap
            self._load_scripts(self.cluster.get_configmap(namespace, name), "loaded")
            self._configmap_informer(namespace, name)
        for index in range(self.options.workers):
            worker = threading.Thread(target=self._work, name=f"worker-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)
        self._tr_informer = informer_for(self.cluster, self.tr_resource, self.options.namespace,
                                         self._on_traffic_routing, label_selector=self.options.selector,
                                         stopping=self.stopping)
        threading.Thread(target=self._resync_loop, name="resync", daemon=True).start()
        progress = Progress("syncing TrafficRoutings")
        if progress.enabled:
            threading.Thread(target=self._show_initial_sync, args=(progress,), name="initial-sync",
                             daemon=True).start()
        else:
            with self._lock:
                self._attempted = None
        self.started.set()

    def _show_initial_sync(self, progress: Progress) -> None:
        """For a person at a terminal: how many of the TrafficRoutings in the informer's first list have had
        their first reconcile (done, or failed and queued for a retry)."""
        informer = self._tr_informer
        while not informer.synced.wait(0.5):
            if self.stopping.is_set():
                return
        listed = {(_meta(body).get("namespace"), _meta(body).get("name")) for body in informer.cache.list()}
        progress.total = len(listed)
        with progress:
            while True:
                with self._lock:
                    synced = len(listed & self._attempted)
                progress.advance(count=synced - progress.done)
                if synced == len(listed) or self.stopping.wait(0.2):
                    break
        with self._lock:
            self._attempted = None

    def _configmap_informer(self, namespace: str, name: str) -> None:
        from kubernetes.informer import SharedInformer

        def handler(event: str, obj) -> None:
            self._on_configmap(event, self.cluster.api_client.sanitize_for_serialization(obj))

        def list_configmaps(**kwargs):
            """:rtype: V1ConfigMapList"""
            if kwargs.get("watch"):
                kwargs.setdefault("timeout_seconds", 300)
                kwargs["_request_timeout"] = (10, 330)
                if self.stopping.wait(self._configmap_retry):  # back off after a failure
                    raise ClusterError("stopping")
            try:
                result = self.cluster.core.list_namespaced_config_map(**kwargs)
            except Exception:
                self._configmap_retry = min(30.0, max(0.5, self._configmap_retry * 2))
                raise
            self._configmap_retry = 0.0
            return result
        self._configmap_retry = 0.0
        quiet_informer_logs()
        informer = SharedInformer(list_configmaps, namespace=namespace, field_selector=f"metadata.name={name}")
        for event in ("ADDED", "MODIFIED", "DELETED"):
            informer.add_event_handler(event, lambda obj, event=event: handler(event, obj))
        informer.start()
        self._informers[("", "ConfigMap")] = informer

    def stop(self, timeout: float = 20.0) -> None:
        """Stop watching, let running reconciles finish (abandon them after ``timeout``), stop the workers."""
        self.stopping.set()
        self.queue.shutdown()
        quiet_informer_logs()
        for informer in [*self._informers.values(), *([self._tr_informer] if self._tr_informer else [])]:
            threading.Thread(target=informer.stop, daemon=True).start()
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        busy = [w.name for w in self._workers if w.is_alive()]
        if busy:
            log.warning("abandoned the reconciles still running in %s", ", ".join(busy))

    def health(self) -> dict:
        """Liveness fails when a worker has died; readiness until the TrafficRoutings are listed."""
        dead = [w.name for w in self._workers if not w.is_alive()]
        live = None if not dead or self.stopping.is_set() else f"dead workers: {', '.join(dead)}"
        ready = None if self._tr_informer is not None and self._tr_informer.synced.is_set() \
            else "TrafficRoutings not listed yet"
        return {"healthz": live, "readyz": ready}

    def _resync_loop(self) -> None:
        while not self.stopping.wait(self.options.resync):
            self.enqueue_all()

    def enqueue_all(self) -> None:
        """Every TrafficRouting again, from the cache (no API request)."""
        if self._tr_informer is None:
            return
        for body in self._tr_informer.cache.list():
            self.queue.add((_meta(body).get("namespace"), _meta(body).get("name")))

    # -- events ---------------------------------------------------------------------------------------------

    def _on_traffic_routing(self, event: str, body: dict) -> None:
        meta = _meta(body)
        key = (meta.get("namespace"), meta.get("name"))
        if event == "DELETED":
            self._signatures.pop(key, None)
            self.queue.add(key)
            return
        object_key = _object_key(body)
        with self._lock:
            self._lock.wait_for(lambda: not self._in_flight.get(object_key), timeout=5)
            ours = self._seen(object_key, event, body)
            signature, self._signatures[key] = self._signatures.get(key), _signature(body)
        if event == "MODIFIED" and (ours or signature == _signature(body)):
            return  # our own write, or only the status (ours) or unrelated metadata changed
        self.queue.add(key)

    def _on_network_object(self, event: str, body: dict) -> None:
        key = _object_key(body)
        with self._lock:
            # The watch can deliver our own write before the writer has recorded its resourceVersion.
            self._lock.wait_for(lambda: not self._in_flight.get(key), timeout=5)
            owner = self._claims.get(key)
            ours = self._seen(key, event, body)
        if owner is None or (ours and event != "DELETED"):
            return
        if event == "ADDED":  # created after its TrafficRouting: reconcile it once
            self.queue.add(owner)
            return
        now = time.monotonic()
        with self._lock:
            last = self._last_drift.get(owner)
            if last is not None and last > now:
                return  # a re-assert is already scheduled and will see this change too
            due = now if last is None else max(now, last + self.options.drift_interval)
            self._last_drift[owner] = due
        log.info("%s %s/%s changed by someone else (%s); re-asserting %s/%s%s", key[1], key[2], key[3],
                 event.lower(), owner[0], owner[1], f" in {due - now:.1f}s" if due > now else "")
        self.queue.add_after(owner, due - now)

    def _seen(self, key: ObjectKey, event: str, body: dict) -> bool:
        """(With the lock held.) Whether the event is our own write; forgets what we wrote once the cache
        holds it (or the object is gone)."""
        latest = self._latest.get(key)
        if latest is not None and (event == "DELETED" or _newer(body, latest) is body):
            del self._latest[key]
        return _meta(body).get("resourceVersion") in self._written.get(key, ())

    def _informer(self, target: Target) -> CachedInformer:
        """The (started) informer of the target's kind; waits until its cache holds the first list."""
        group_kind = (target.resource.group, target.resource.kind)
        with self._lock:
            informer = self._informers.get(group_kind)
            if informer is None:
                informer = informer_for(self.cluster, target.resource, self.options.namespace,
                                        self._on_network_object, stopping=self.stopping)
                self._informers[group_kind] = informer
        if not informer.synced.wait(self.options.sync_timeout):
            raise ClusterError(f"{target.resource.plural}.{target.resource.group} could not be listed within "
                               f"{self.options.sync_timeout:.0f}s")
        return informer

    def _read(self, target: Target) -> Optional[dict]:
        """The object from its kind's cache, or what we wrote to it if the cache has not caught up yet."""
        cached = self._informer(target).get(target.namespace, target.name)
        with self._lock:
            found = _newer(cached, self._latest.get(target.key))
        return copy.deepcopy(found) if found is not None else None

    def _on_write(self, target: Target, written: dict) -> None:
        self._remember(target.key, written)

    def _remember(self, key: ObjectKey, written: dict) -> None:
        """Our own write: its watch event is not drift, and reads prefer it until the cache catches up."""
        with self._lock:
            self._written[key].append(_meta(written).get("resourceVersion"))
            self._latest[key] = written

    @contextlib.contextmanager
    def _writing(self, target_or_key):
        key = target_or_key if isinstance(target_or_key, tuple) else target_or_key.key
        if self.stopping.is_set() or not self.may_write():
            raise NotLeader("not writing: this replica is stopping or could not renew its Lease in time")
        with self._lock:
            self._in_flight[key] += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[key] -= 1
                if not self._in_flight[key]:
                    del self._in_flight[key]
                self._lock.notify_all()

    # -- reconcile ------------------------------------------------------------------------------------------

    def _work(self) -> None:
        """One worker: no error ends it; a failing key costs only its own retries, with back-off."""
        while not self.stopping.is_set():
            try:
                key = self.queue.get(timeout=1.0)
            except Exception as exc:  # noqa: BLE001 - a worker never dies
                log.error("work queue: %s: %s", type(exc).__name__, exc)
                continue
            if key is None:
                continue
            try:
                problem = None
                done = self.reconcile(key)
            except GraylaneError as exc:
                done, problem = False, str(exc)
            except Exception as exc:  # noqa: BLE001 - a bug must not kill the worker: one line, then retry
                done, problem = False, f"unexpected {type(exc).__name__}: {exc} ({_where(exc)})"
            with self._lock:
                if self._attempted is not None:
                    self._attempted.add(key)
            try:
                if done:
                    self.queue.forget(key)
                elif not self.stopping.is_set():
                    delay = self.queue.add_rate_limited(key)
                    log.warning("%s/%s: %sretrying in %.1fs", key[0], key[1], f"{problem}; " if problem else "",
                                delay)
            finally:
                self.queue.done(key)

    def _traffic_routing(self, key: Key) -> Optional[dict]:
        """The TrafficRouting from the cache (None when deleted or not selected), or what we last wrote to it
        if the cache has not caught up yet."""
        cached = self._tr_informer.get(*key) if self._tr_informer else None
        if cached is None:
            return None
        with self._lock:
            found = _newer(cached, self._latest.get(_object_key(cached)))
        return copy.deepcopy(found)

    def _write_tr(self, body: dict, status: bool = False) -> dict:
        key = _object_key(body)
        with self._writing(key):
            written = self.cluster.replace_status(self.tr_resource, body) if status \
                else self.cluster.replace(self.tr_resource, body)
            self._remember(key, written)
        return written

    def reconcile(self, key: Key) -> bool:
        """One pass for one TrafficRouting; True when done, False to retry with backoff."""
        namespace, name = key
        body = self._traffic_routing(key)
        if body is None:
            return self._gone(key)
        meta = _meta(body)
        finalizers = list(meta.get("finalizers") or [])
        status = dict(body.get("status") or {})
        phase = status.get("phase") or INITIAL
        deleting = bool(meta.get("deletionTimestamp"))
        if deleting and FINALIZER in finalizers and \
                (meta.get("annotations") or {}).get(RELEASE_ANNOTATION) == "true":
            log.warning("%s/%s: %s=true: letting it go without restoring its objects", namespace, name,
                        RELEASE_ANNOTATION)
            return self._drop_finalizer(key, body, finalizers)
        try:
            routing = plan(Document(body, f"TrafficRouting {namespace}/{name}", 1))
            targets = targets_of([routing], self.cluster)
        except GraylaneError as exc:  # fixed only by editing the TrafficRouting: no retry until then
            if deleting and FINALIZER in finalizers:
                return self._set_status(body, TERMINATING, f"cannot be restored: {exc}; {self._way_out()}",
                                        done=True)
            return self._set_status(body, phase, f"invalid TrafficRouting: {exc}", done=True)
        try:
            for target in targets:
                target.resource = self.cluster.resource(target.api_version, target.kind)
        except GraylaneError as exc:  # e.g. a CRD not installed yet: retried with backoff
            return self._set_status(body, phase, f"TrafficRouting is not applied: {exc}", done=False)
        conflict = self._claim(key, targets)
        if conflict and deleting:
            targets = self._owned(key, targets)  # restore only what this TrafficRouting routes
        elif conflict:
            return self._set_status(body, phase, conflict, done=True)
        applier = Applier(self.cluster, self.engine, self.check, on_write=self._on_write, writing=self._writing,
                          read=self._read)

        if deleting:
            if FINALIZER not in finalizers:
                return self._release(key)
            if phase != TERMINATING:  # a retry keeps the message that says what went wrong
                body = self._put_status(body, TERMINATING, MESSAGES[TERMINATING]) or body
            report = applier.restore(targets)
            if not report.ok:
                return self._set_status(body, TERMINATING, f"restoring failed: {_summary(report)}; "
                                                           f"{self._way_out()}", done=False)
            log.info("%s/%s: restored %d object(s)", namespace, name, len(targets))
            return self._drop_finalizer(key, body, finalizers)

        if FINALIZER not in finalizers:
            body = dict(body, metadata={**meta, "finalizers": [*finalizers, FINALIZER]})
            try:
                body = self._write_tr(body)
            except Conflict:
                return False
        if _routes_canary(routing.strategy):
            report = applier.apply(targets)
            if not report.ok:
                return self._set_status(body, phase, f"TrafficRouting is not applied: {report.error}: "
                                                     f"{_summary(report)}", done=False)
            self._log(key, report)
            return self._set_status(body, PROGRESSING, MESSAGES[PROGRESSING], done=True)
        if phase == PROGRESSING:
            body = self._put_status(body, FINALIZING, MESSAGES[FINALIZING]) or body
        report = applier.restore(targets)
        if not report.ok:
            return self._set_status(body, phase if phase != PROGRESSING else FINALIZING,
                                    f"restoring failed: {_summary(report)}", done=False)
        self._log(key, report)
        return self._set_status(body, HEALTHY, MESSAGES[HEALTHY], done=True)

    @staticmethod
    def _way_out() -> str:
        return (f"fix the stored original, or annotate the TrafficRouting {RELEASE_ANNOTATION}=true to let it go "
                "without restoring")

    def _drop_finalizer(self, key: Key, body: dict, finalizers: list) -> bool:
        body = dict(body, metadata={**_meta(body), "finalizers": [f for f in finalizers if f != FINALIZER]})
        try:
            self._write_tr(body)
        except Conflict:
            return False
        except NotFound:
            pass
        log.info("%s/%s: finalizer removed", *key)
        return self._release(key)

    def _log(self, key: Key, report: Report) -> None:
        changed = [o.line() for o in report.outcomes if o.state in ("configured", "restored")]
        if changed:
            log.info("%s/%s: %s", key[0], key[1], "; ".join(changed))

    def _claim(self, key: Key, targets: list[Target]) -> Optional[str]:
        with self._lock:
            for target in targets:
                owner = self._claims.get(target.key)
                if owner is not None and owner != key:
                    return (f"{target.describe()} is already routed by TrafficRouting {owner[0]}/{owner[1]}; "
                            "one object can follow only one routing")
            self._unclaim(key)
            for target in targets:
                self._claims[target.key] = key
                self._claimed[key].add(target.key)
        return None

    def _unclaim(self, key: Key) -> None:
        """(With the lock held.) Forget what ``key`` routes."""
        for object_key in self._claimed.pop(key, ()):
            if self._claims.get(object_key) == key:
                del self._claims[object_key]

    def _owned(self, key: Key, targets: list[Target]) -> list[Target]:
        with self._lock:
            return [t for t in targets if self._claims.get(t.key) in (None, key)]

    def _gone(self, key: Key) -> bool:
        """Not in the cache: deleted, or no longer selected (then its finalizer is dropped, objects kept)."""
        body = self.cluster.get(self.tr_resource, *key)
        if body is not None and self.options.selector and FINALIZER in (_meta(body).get("finalizers") or []):
            return self._drop_finalizer(key, body, list(_meta(body)["finalizers"]))
        return self._release(key)

    def _release(self, key: Key) -> bool:
        """Forget a TrafficRouting that is gone."""
        with self._lock:
            self._unclaim(key)
            self._last_drift.pop(key, None)
        return True

    def _put_status(self, body: dict, phase: str, message: str) -> Optional[dict]:
        status = body.get("status") or {}
        wanted = {**status, "observedGeneration": _meta(body).get("generation"), "phase": phase, "message": message}
        if wanted == status:
            return body
        try:
            return self._write_tr(dict(body, status=wanted), status=True)
        except Conflict:
            return None

    def _set_status(self, body: dict, phase: str, message: str, done: bool) -> bool:
        meta = _meta(body)
        if message != MESSAGES.get(phase) and done:
            log.warning("%s/%s: %s", meta.get("namespace"), meta.get("name"), message)
        try:
            written = self._put_status(body, phase, message)
        except NotFound:
            return True
        if not done:
            raise RetryLater(message)
        return written is not None


class RetryLater(GraylaneError):
    """A reconcile that failed in a way worth retrying; the worker logs it once with the back-off delay."""


def _where(exc: BaseException) -> str:
    """file:line of the innermost frame, so a one-line message still says where a bug is."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}" if tb else "?"


class _BrokenLibrary(ScriptLibrary):
    """Scripts that could not be loaded: every lookup fails with the load error."""

    def __init__(self, error: str):
        super().__init__([])
        self.error = error

    def find(self, key: str):
        raise InvalidInputError(f"scripts could not be loaded: {self.error}")


# -- the command ---------------------------------------------------------------------------------------------


def _configmap_ref(value: Optional[str], default_namespace: str) -> Optional[tuple[str, str]]:
    if not value:
        return None
    namespace, _, name = value.rpartition("/")
    return (namespace or default_namespace, name)


def run(args: argparse.Namespace) -> int:
    from engine.checks.validate import check_rendered
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # connection retries: reported once by graylane
    if args.leader_elect and args.lease_duration < 3:
        raise InvalidInputError("--lease-duration must be at least 3 seconds")
    if args.drift_interval < 0 or args.resync <= 0:
        raise InvalidInputError("--drift-interval must be >= 0 and --resync > 0")
    if args.kube_api_qps < 0 or args.kube_api_burst < 1 or args.workers < 1:
        raise InvalidInputError("--kube-api-qps must be >= 0, --kube-api-burst and --workers at least 1")
    cluster = connect(args.kubeconfig, args.context)
    cluster.limiter = RateLimiter(args.kube_api_qps, args.kube_api_burst)
    # The controller's own namespace (its pod's, or the context's): where its Lease and scripts ConfigMap
    # live. -n only chooses which TrafficRoutings to watch.
    own_namespace = cluster.default_namespace
    options = Options(namespace=None if args.all_namespaces else (args.namespace or own_namespace),
                      selector=args.selector, scripts_configmap=_configmap_ref(args.scripts_configmap, own_namespace),
                      lua_dirs=tuple(args.lua_dir), timeout=args.timeout, max_memory=args.max_memory,
                      workers=args.workers, drift_interval=args.drift_interval, resync=args.resync)
    finished = threading.Event()
    exit_code = {"value": 0}

    def fail(message: str) -> None:
        if not finished.is_set():
            log.error("%s", message)
            exit_code["value"] = 1
            finished.set()

    def on_signal(signum, _frame):
        log.info("%s: stopping", signal.Signals(signum).name)
        finished.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    lock = None
    identity = args.identity or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    cluster.api_client.user_agent += f" ({identity})"  # tells replicas apart in the API server's audit log
    if args.leader_elect:
        renew_deadline, _ = election_timing(args.lease_duration)
        lock = GuardedLeaseLock(args.lease_name, args.lease_namespace or own_namespace, identity,
                                cluster.api_client, renew_deadline)
    controller = Controller(cluster, options, check_rendered, may_write=lock.may_write if lock else None)
    election: Optional[threading.Thread] = None

    def health() -> dict:
        checks = controller.health()
        if election is not None and not election.is_alive() and not finished.is_set():
            checks["healthz"] = "leader election stopped"
        if lock is not None and not controller.started.is_set():
            checks["readyz"] = None  # a standby replica is ready: it is waiting for the Lease
        return checks
    server = HealthServer(args.health_port, health) if args.health_port else None

    if lock is not None:
        def started():
            log.info("%s became the leader (Lease %s/%s)", identity, lock.namespace, lock.name)
            try:
                controller.start()
            except Exception as exc:  # noqa: BLE001 - reported, then the process exits
                fail(f"could not start reconciling: {exc}")

        def stopped():
            fail(f"{identity} lost the leadership (or could not renew the Lease within "
                 f"{lock.renew_deadline:.0f}s); exiting so that only one replica reconciles")
        log.info("%s waiting for the Lease %s/%s", identity, lock.namespace, lock.name)
        election = start_leader_election(lock, args.lease_duration, started, stopped)
    else:
        controller.start()  # errors here end the command like any other (one line, exit 1)
    while not finished.wait(0.5):
        if election is not None and not election.is_alive():
            fail("leader election stopped; exiting")
    failed = exit_code["value"] != 0
    # A replica that lost its Lease may not write any more anyway: it leaves at once (requests still hanging
    # on a lost connection are abandoned) and leaves the Lease to its successor.
    controller.stop(1.0 if failed else args.shutdown_grace)
    if lock is not None and not failed:
        lock.release()
    if server is not None:
        server.stop()
    log.info("stopped")
    # Leave without interpreter finalisation: abandoned daemon threads (a watch or request on a lost
    # connection) can otherwise abort it (SIGABRT while they hold the stderr lock), and the exit status is
    # what Kubernetes reads.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code["value"])
