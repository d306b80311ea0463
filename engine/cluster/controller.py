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
than the one graylane wrote) re-queues the owning TrafficRouting, at most once per --drift-interval.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import socket
import sys
import threading
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Optional

import yaml

from engine import inputs
from engine.documents import Document
from engine.errors import GraylaneError, InvalidInputError
from engine.routing.render import Engine
from engine.lua.scripts import ScriptLibrary, builtin_layer, configmap_layer, directory_layer, lua_path_from_env
from engine.routing.strategy import TrafficStrategy, plan
from engine.cluster.apply import Applier, Report, Target, targets_of
from engine.cluster.client import TRAFFIC_ROUTING, Cluster, Conflict, NotFound, connect
from engine.cluster.runtime import ReleasableLeaseLock, WorkQueue, informer_for, start_leader_election

FINALIZER = "graylane.io/restore"
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


class Controller:
    def __init__(self, cluster: Cluster, options: Options, check=None):
        self.cluster, self.options, self.check = cluster, options, check
        self.tr_resource = cluster.resource(*TRAFFIC_ROUTING)
        self.queue = WorkQueue()
        self.stopping = threading.Event()
        self._lock = threading.Condition()
        self._claims: dict[ObjectKey, Key] = {}      # network object -> the TrafficRouting that routes it
        self._written: dict[ObjectKey, deque] = defaultdict(lambda: deque(maxlen=4))  # resourceVersions we wrote
        self._in_flight: dict[ObjectKey, int] = defaultdict(int)  # objects being written right now
        self._last_drift: dict[Key, float] = {}
        self._watched_kinds: dict[tuple[str, str], object] = {}
        self._informers: list = []
        self._workers: list[threading.Thread] = []
        self.sandbox = inputs.sandbox(options.timeout, options.max_memory)
        self.engine = Engine(self._library(None), self.sandbox)
        self._scripts_data: Optional[dict] = None

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
            self._informers.append(self._configmap_informer(namespace, name))
        for index in range(self.options.workers):
            worker = threading.Thread(target=self._work, name=f"worker-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)
        self._informers.append(informer_for(self.cluster, self.tr_resource, self.options.namespace,
                                            self._on_traffic_routing, label_selector=self.options.selector,
                                            resync=self.options.resync, stopping=self.stopping))
        threading.Thread(target=self._resync_loop, name="resync", daemon=True).start()

    def _configmap_informer(self, namespace: str, name: str):
        from kubernetes.informer import SharedInformer

        def handler(event: str, obj) -> None:
            self._on_configmap(event, self.cluster.api_client.sanitize_for_serialization(obj))
        informer = SharedInformer(self.cluster.core.list_namespaced_config_map, namespace=namespace,
                                  field_selector=f"metadata.name={name}", resync_period=self.options.resync)
        for event in ("ADDED", "MODIFIED", "DELETED"):
            informer.add_event_handler(event, lambda obj, event=event: handler(event, obj))
        informer.start()
        return informer

    def stop(self, timeout: float = 20.0) -> None:
        """Stop watching, let running reconciles finish, stop the workers."""
        self.stopping.set()
        self.queue.shutdown()
        logging.getLogger("kubernetes.informer").setLevel(logging.CRITICAL)  # closed watches are not errors now
        for informer in self._informers:
            threading.Thread(target=informer.stop, daemon=True).start()
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    def _resync_loop(self) -> None:
        while not self.stopping.wait(self.options.resync):
            self.enqueue_all()

    def enqueue_all(self) -> None:
        try:
            for body in self.cluster.list(self.tr_resource, self.options.namespace, self.options.selector):
                self.queue.add((_meta(body).get("namespace"), _meta(body).get("name")))
        except GraylaneError as exc:
            log.warning("listing TrafficRoutings: %s", exc)

    # -- events ---------------------------------------------------------------------------------------------

    def _on_traffic_routing(self, event: str, body: dict) -> None:
        meta = _meta(body)
        key = (meta.get("namespace"), meta.get("name"))
        status = body.get("status") or {}
        if event == "MODIFIED" and not meta.get("deletionTimestamp") and FINALIZER in (meta.get("finalizers") or []) \
                and status.get("observedGeneration") == meta.get("generation") and status.get("phase"):
            return  # only status (ours) or metadata changed: nothing to do
        self.queue.add(key)

    def _on_network_object(self, event: str, body: dict) -> None:
        key = _object_key(body)
        with self._lock:
            # The watch can deliver our own write before the writer has recorded its resourceVersion.
            self._lock.wait_for(lambda: not self._in_flight.get(key), timeout=5)
            owner = self._claims.get(key)
            ours = _meta(body).get("resourceVersion") in self._written.get(key, ())
        if owner is None or (ours and event != "DELETED"):
            return
        if event == "ADDED":  # (re)listed, or created after its TrafficRouting: reconcile it once
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

    def _watch_kind(self, target: Target) -> None:
        group_kind = (target.resource.group, target.resource.kind)
        with self._lock:
            if group_kind in self._watched_kinds or self.stopping.is_set():
                return
            self._watched_kinds[group_kind] = True
        informer = informer_for(self.cluster, target.resource, self.options.namespace, self._on_network_object,
                                resync=self.options.resync, stopping=self.stopping)
        self._informers.append(informer)

    def _on_write(self, target: Target, written: dict) -> None:
        with self._lock:
            self._written[target.key].append(_meta(written).get("resourceVersion"))

    @contextlib.contextmanager
    def _writing(self, target: Target):
        with self._lock:
            self._in_flight[target.key] += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[target.key] -= 1
                if not self._in_flight[target.key]:
                    del self._in_flight[target.key]
                self._lock.notify_all()

    # -- reconcile ------------------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self.stopping.is_set():
            key = self.queue.get(timeout=1.0)
            if key is None:
                continue
            try:
                if self.reconcile(key):
                    self.queue.forget(key)
                else:
                    delay = self.queue.add_rate_limited(key)
                    log.info("%s/%s: retrying in %.1fs", key[0], key[1], delay)
            except Exception:  # noqa: BLE001 - a bug must not kill the worker
                log.exception("reconciling %s/%s", *key)
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)

    def _selected(self, body: dict) -> bool:
        if not self.options.selector:
            return True
        meta = _meta(body)
        found = self.cluster.list(self.tr_resource, meta.get("namespace"), self.options.selector,
                                  field_selector=f"metadata.name={meta.get('name')}")
        return bool(found)

    def reconcile(self, key: Key) -> bool:
        """One pass for one TrafficRouting; True when done, False to retry with backoff."""
        namespace, name = key
        body = self.cluster.get(self.tr_resource, namespace, name)
        if body is None or not self._selected(body):
            return self._release(key, body)
        meta = _meta(body)
        finalizers = list(meta.get("finalizers") or [])
        status = dict(body.get("status") or {})
        phase = status.get("phase") or INITIAL
        try:
            routing = plan(Document(body, f"TrafficRouting {namespace}/{name}", 1))
            targets = targets_of([routing], self.cluster)
        except GraylaneError as exc:  # fixed only by editing the TrafficRouting: no retry until then
            if meta.get("deletionTimestamp") and FINALIZER in finalizers:
                log.error("%s/%s cannot be restored (%s); remove the finalizer %s by hand to let it go",
                          namespace, name, exc, FINALIZER)
            return self._set_status(body, phase, f"invalid TrafficRouting: {exc}", done=True)
        try:
            for target in targets:
                target.resource = self.cluster.resource(target.api_version, target.kind)
        except GraylaneError as exc:  # e.g. a CRD not installed yet: retried with backoff
            return self._set_status(body, phase, f"TrafficRouting is not applied: {exc}", done=False)
        conflict = self._claim(key, targets)
        if conflict and meta.get("deletionTimestamp"):
            targets = self._owned(key, targets)  # restore only what this TrafficRouting routes
        elif conflict:
            return self._set_status(body, phase, conflict, done=True)
        for target in targets:
            self._watch_kind(target)
        applier = Applier(self.cluster, self.engine, self.check, on_write=self._on_write, writing=self._writing)

        if meta.get("deletionTimestamp"):
            if FINALIZER not in finalizers:
                return self._release(key, None)
            body = self._put_status(body, TERMINATING, MESSAGES[TERMINATING]) or body
            report = applier.restore(targets)
            if not report.ok:
                return self._set_status(body, TERMINATING, f"restoring failed: {_summary(report)}", done=False)
            body = dict(body, metadata={**_meta(body), "finalizers": [f for f in finalizers if f != FINALIZER]})
            try:
                self.cluster.replace(self.tr_resource, body)
            except Conflict:
                return False
            log.info("%s/%s: restored %d object(s); finalizer removed", namespace, name, len(targets))
            return self._release(key, None)

        if FINALIZER not in finalizers:
            body = dict(body, metadata={**meta, "finalizers": [*finalizers, FINALIZER]})
            try:
                body = self.cluster.replace(self.tr_resource, body)
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
            for object_key in [k for k, owner in self._claims.items() if owner == key]:
                del self._claims[object_key]
            for target in targets:
                self._claims[target.key] = key
        return None

    def _owned(self, key: Key, targets: list[Target]) -> list[Target]:
        with self._lock:
            return [t for t in targets if self._claims.get(t.key) in (None, key)]

    def _release(self, key: Key, body: Optional[dict]) -> bool:
        """Forget a TrafficRouting that is gone (or no longer selected: its finalizer is dropped, objects kept)."""
        with self._lock:
            for object_key in [k for k, owner in self._claims.items() if owner == key]:
                del self._claims[object_key]
            self._last_drift.pop(key, None)
        if body is not None and FINALIZER in (_meta(body).get("finalizers") or []):
            finalizers = [f for f in _meta(body)["finalizers"] if f != FINALIZER]
            try:
                self.cluster.replace(self.tr_resource, dict(body, metadata={**_meta(body), "finalizers": finalizers}))
            except Conflict:
                return False
        return True

    def _put_status(self, body: dict, phase: str, message: str) -> Optional[dict]:
        status = body.get("status") or {}
        wanted = {**status, "observedGeneration": _meta(body).get("generation"), "phase": phase, "message": message}
        if wanted == status:
            return body
        try:
            return self.cluster.replace_status(self.tr_resource, dict(body, status=wanted))
        except Conflict:
            return None

    def _set_status(self, body: dict, phase: str, message: str, done: bool) -> bool:
        meta = _meta(body)
        if message != MESSAGES.get(phase):
            log.warning("%s/%s: %s", meta.get("namespace"), meta.get("name"), message)
        try:
            written = self._put_status(body, phase, message)
        except NotFound:
            return True
        return done and written is not None


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
    if args.leader_elect and args.lease_duration < 3:
        raise InvalidInputError("--lease-duration must be at least 3 seconds")
    if args.drift_interval < 0 or args.resync <= 0:
        raise InvalidInputError("--drift-interval must be >= 0 and --resync > 0")
    cluster = connect(args.kubeconfig, args.context)
    own_namespace = args.namespace or cluster.default_namespace
    options = Options(namespace=None if args.all_namespaces else own_namespace, selector=args.selector,
                      scripts_configmap=_configmap_ref(args.scripts_configmap, own_namespace),
                      lua_dirs=tuple(args.lua_dir), timeout=args.timeout, max_memory=args.max_memory,
                      workers=max(1, args.workers), drift_interval=args.drift_interval, resync=args.resync)
    controller = Controller(cluster, options, check_rendered)
    finished = threading.Event()
    exit_code = {"value": 0}

    def on_signal(signum, _frame):
        log.info("%s: stopping", signal.Signals(signum).name)
        finished.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    lock = None
    if args.leader_elect:
        identity = args.identity or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        lock = ReleasableLeaseLock(args.lease_name, args.lease_namespace or own_namespace, identity,
                                   cluster.api_client)

        def started():
            log.info("%s became the leader (Lease %s/%s)", identity, lock.namespace, lock.name)
            try:
                controller.start()
            except Exception as exc:  # noqa: BLE001 - reported, then the process exits
                log.error("could not start reconciling: %s", exc)
                exit_code["value"] = 1
                finished.set()

        def stopped():
            if not finished.is_set():
                log.error("%s lost the leadership; exiting so that only one replica reconciles", identity)
                exit_code["value"] = 1
                finished.set()
        log.info("%s waiting for the Lease %s/%s", identity, lock.namespace, lock.name)
        start_leader_election(lock, args.lease_duration, started, stopped)
    else:
        controller.start()  # errors here end the command like any other (one line, exit 1)
    while not finished.wait(0.5):
        pass
    controller.stop()
    if lock is not None:
        lock.release()
    log.info("stopped")
    return exit_code["value"]
