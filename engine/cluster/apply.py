"""apply, restore and status against a live cluster; the controller reconciles with the same code.

apply, per referenced object: GET (or read the controller's cache); take the original: the live object with
graylane's own parts replaced by those of the original stored in rollouts.kruise.io/original-spec-configuration
(engine.routing.ownership: other writers' edits are kept, graylane's additions recognised on sight); run the
script on the original; validate; compare with the live object. Every object is planned before anything is
written, so a missing object, a script error or a validation error changes nothing. Then each changed object
is written with one server-side apply (field manager graylane) that carries the resourceVersion it was
computed from and stores the original in the same write, so there is no moment where the spec is changed but
the original is not stored. Restore and roll back are conditional PUTs. A 409 means someone wrote in between: the object
is read again and the script re-run on the fresh data (never a blind overwrite), with bounded, jittered
exponential backoff. If a write fails, the objects this call already changed are put back to their
pre-call state (again conditional on the resourceVersion this call wrote), and every object's fate is
reported.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Optional

from engine.documents import Document
from engine.errors import ClusterError, GraylaneError, InvalidInputError
from engine.routing.render import Engine, OutputCheck
from engine.routing.ownership import CANARY_SUBSET, fold_original, is_canary_destination, knows
from engine.routing.script_input import (ORIGINAL_ANNOTATION, OriginalState, apply_result, encode_original,
                                         original_of, restore_body)
from engine.lua.scripts import resource_key
from engine.routing.strategy import RoutingPlan, TrafficStrategy
from engine.cluster.client import Cluster, Conflict, Resource

MAX_ATTEMPTS = 6
BACKOFF_BASE = 0.05  # seconds; doubles per conflict, with jitter, capped at BACKOFF_CAP
BACKOFF_CAP = 2.0
TEST_BARRIER_ENV = "GRAYLANE_TEST_BARRIER"
ISTIO_GROUP = "networking.istio.io"
DESTINATION_RULE_API = f"{ISTIO_GROUP}/v1alpha3"  # served by every Istio release's CRDs

# Outcome states (what happened to one object).
CONFIGURED, UNCHANGED, RESTORED, MISSING, FAILED = "configured", "unchanged", "restored", "missing", "failed"
ROLLED_BACK, NOT_ROLLED_BACK, NOT_CHANGED = "rolled back", "NOT rolled back", "not changed"


@dataclass
class Target:
    """One network object a TrafficRouting/Rollout references, with the strategy it should follow."""

    routing: RoutingPlan
    api_version: str
    kind: str
    name: str
    namespace: str
    strategy: TrafficStrategy
    stable_service: str
    canary_service: str
    resource: Optional[Resource] = None
    subsets: Optional[tuple[str, str]] = None  # (canary, stable) subset names of an Argo subset-level split

    def describe(self) -> str:
        if self.resource:
            return self.resource.describe(self.name)
        group = self.api_version.rpartition("/")[0]
        return f"{self.kind.lower()}.{group}/{self.name}" if group else f"{self.kind.lower()}/{self.name}"

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.api_version.rpartition("/")[0], self.kind, self.namespace, self.name)


@dataclass
class Outcome:
    target: Target
    state: str
    message: str = ""
    before: Optional[dict] = None  # the object as this call found it
    after: Optional[dict] = None   # as this call left it (or would, in a dry run)
    attempts: int = 0

    def line(self, dry_run: Optional[str] = None) -> str:
        suffix = {"client": " (dry run)", "server": " (server dry run)"}.get(dry_run or "", "")
        text = f"{self.target.describe()} {self.state}"
        if self.state in (CONFIGURED, RESTORED):
            text += suffix
        if self.attempts > 1:
            text += f" after {self.attempts} attempts (conflicting writes)"
        return text + (f": {self.message}" if self.message else "")


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    error: Optional[str] = None  # why the whole call failed, if it did

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def changed(self) -> bool:
        return any(o.state in (CONFIGURED, RESTORED) for o in self.outcomes)


def targets_of(plans: list[RoutingPlan], cluster: Cluster, namespace: Optional[str] = None) -> list[Target]:
    """Every object the plans reference, in order; namespaces resolved the way kubectl resolves them."""
    targets: list[Target] = []
    seen: dict[tuple, Target] = {}
    for routing in plans:
        document = routing.document
        if namespace and document.namespace and document.namespace != namespace:
            raise document.error(f'the namespace from the provided object "{document.namespace}" does not match '
                                 f'the namespace "{namespace}"; pass --namespace={document.namespace}',
                                 "metadata.namespace")
        object_namespace = document.namespace or namespace or cluster.default_namespace
        for target in routing.targets:
            if target.ingress:
                raise document.error("cluster mode does not manage Ingress canaries yet; use customNetworkRefs "
                                     "(or graylane render for Ingress)", f"{target.field}.ingress")
            for ref in target.network_refs:
                item = Target(routing, ref.api_version, ref.kind, ref.name, object_namespace, routing.strategy,
                              target.stable_service, target.canary_service, subsets=target.subsets)
                if item.key in seen:
                    raise document.error(f"{ref.kind}/{ref.name} is already routed by "
                                         f"{seen[item.key].routing.document.describe()}; one object can follow only "
                                         "one routing", ref.field)
                seen[item.key] = item
                targets.append(item)
    return targets


def _barrier(point: str, target: Target) -> None:
    """Test seam (documented in README.md (cluster section)): with $GRAYLANE_TEST_BARRIER=DIR, if the file
    ``DIR/<point>.<Kind>.<name>.wait`` exists, create ``....reached`` and wait until the .wait file is removed.
    Lets e2e tests edit an object between our GET and PUT, or kill the process right after a write."""
    directory = os.environ.get(TEST_BARRIER_ENV)
    if not directory:
        return
    stem = Path(directory) / f"{point}.{target.kind}.{target.name}"
    wait = stem.with_name(stem.name + ".wait")
    if not wait.exists():
        return
    stem.with_name(stem.name + ".reached").touch()
    deadline = time.monotonic() + 120
    while wait.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


class Applier:
    """apply/restore/status for a list of targets on one cluster."""

    def __init__(self, cluster: Cluster, engine: Optional[Engine] = None, check: Optional[OutputCheck] = None,
                 dry_run: Optional[str] = None, max_attempts: int = MAX_ATTEMPTS, judge_requests: bool = False,
                 on_write: Optional[Callable[[Target, dict], None]] = None,
                 writing: Optional[Callable[[Target], ContextManager]] = None,
                 read: Optional[Callable[[Target], Optional[dict]]] = None):
        if dry_run not in (None, "client", "server"):
            raise InvalidInputError(f"--dry-run must be client or server, got {dry_run!r}")
        self.cluster, self.engine, self.check, self.dry_run = cluster, engine, check, dry_run
        self.max_attempts = max_attempts
        # apply judges the planned objects together, as render does (GL0402/GL0403), against the namespaces'
        # DestinationRules, Services and Deployments; the controller does not (it would list them on every change)
        self.judge_requests = judge_requests
        self.on_write = on_write  # told about every object this call wrote (the controller tracks them)
        self.warnings: list = []  # findings the output check let through (--force), for the caller to show
        self.writing = writing or (lambda target: contextlib.nullcontext())  # held around each write
        self.read = read  # the controller reads from its informer caches; None: GET from the API server

    # -- shared -------------------------------------------------------------------------------------------

    def _read(self, target: Target, fresh: bool = False) -> Optional[dict]:
        """The object from the reader (a cache) or, when ``fresh`` or without one, from the API server."""
        if target.resource is None:
            target.resource = self.cluster.resource(target.api_version, target.kind)
        if self.read is not None and not fresh:
            return self.read(target)
        return self.cluster.get(target.resource, target.namespace, target.name)

    def _run(self, target: Target, original: OriginalState) -> OriginalState:
        assert self.engine is not None
        # the script gets a serialised copy in the worker, so the original needs no copy of its own here
        result = self.engine.run_network_script(resource_key(target.api_version, target.kind),
                                                original, target.strategy, target.stable_service,
                                                target.canary_service, namespace=target.namespace)
        return OriginalState(result.spec, dict(result.labels or {}), dict(result.annotations or {}))

    def original(self, target: Target, live: dict) -> tuple[OriginalState, Optional[OriginalState]]:
        """(the original to keep, what the script makes of it when already computed). The original is the
        live object with graylane's own parts replaced by the stored original's (ownership.fold_original):
        other writers' edits are folded in, and graylane's additions are recognised even without the
        annotation, so nothing is applied twice."""
        stored, is_stored = _original_or_error(target, live)
        if target.routing.argo is not None:
            # Argo Rollouts' changes (weights on the routes it names, its managed routes, subset hash labels)
            # have no shape fold_original knows: the stored original is what apply ran from and what restore
            # gives back.
            return stored, None
        scripted = self._run(target, stored) if is_stored and self.engine is not None else None
        folded = fold_original(live, stored if is_stored else None, target.stable_service, target.canary_service,
                               scripted)
        if is_stored and folded == stored:
            return stored, scripted  # unchanged: keep the stored JSON (and its key order) as it is
        return folded, None

    def desired(self, target: Target, live: dict) -> dict:
        """The object as the script wants it, computed from the original (see ``original``)."""
        document = Document(live, _source(target), 1)
        if target.routing.argo is not None:  # an Argo Rollout: Argo's steps 1..N from the stored original
            from engine.routing.argo.render import render_live
            assert self.engine is not None
            return render_live(target.routing, document, self.engine, self._argo_dr_host(target), self.check)
        original, result = self.original(target, live)
        if result is None:
            result = self._run(target, original)
        body = apply_result(live, result.spec, result.labels, result.annotations, encode_original(original))
        if self.check:
            self.warnings.extend(self.check(document, body) or [])
        return body

    def _argo_dr_host(self, target: Target) -> Optional[str]:
        """The live DestinationRule's host, where an Argo Rollout's header and mirror routes send requests."""
        rule = target.routing.argo.destination_rule
        if rule is None:
            return None
        live = self.cluster.get(self.cluster.resource(DESTINATION_RULE_API, "DestinationRule"),
                                target.namespace, rule["name"])
        spec = (live or {}).get("spec")
        return str(spec.get("host") or "") if isinstance(spec, dict) else None

    def _backoff(self, attempt: int) -> None:
        delay = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** (attempt - 1)))
        time.sleep(delay * (0.5 + random.random()))

    def _write(self, target: Target, live: dict, compute: Callable[[dict], dict],
               wanted: Optional[dict] = None, server_side: bool = False) -> Outcome:
        """Write ``compute(live)`` (or ``wanted``, already computed from ``live``); on 409 re-read and recompute
        from the fresh object, a bounded number of times. Returns CONFIGURED/UNCHANGED; raises ClusterError
        (NotFound when it vanished meanwhile)."""
        attempt = 1
        while True:
            wanted = compute(live) if wanted is None else wanted
            if wanted == live:
                return Outcome(target, UNCHANGED, before=live, after=live, attempts=attempt)
            _barrier("before-write", target)
            if self.dry_run == "client":
                return Outcome(target, CONFIGURED, before=live, after=wanted, attempts=attempt)
            try:
                with self.writing(target):
                    patch = apply_patch(live, wanted) if server_side else None
                    if patch is not None:
                        written = self.cluster.apply(target.resource, patch, dry_run=self.dry_run == "server")
                    else:
                        written = self.cluster.replace(target.resource, wanted, dry_run=self.dry_run == "server")
                    if not self.dry_run and self.on_write:
                        self.on_write(target, written)
            except Conflict as exc:
                if attempt >= self.max_attempts:
                    raise ClusterError(f"{exc} (gave up after {attempt} conflicting attempts)") from None
                self._backoff(attempt)
                attempt += 1
                fresh = self._read(target, fresh=True)
                if fresh is None:
                    raise ClusterError(f"{target.describe()} was deleted while being updated") from None
                live, wanted = fresh, None
                continue
            if not self.dry_run and _rv(written) == _rv(live):
                # The server found nothing to change (e.g. it normalised what we sent back to what it had).
                return Outcome(target, UNCHANGED, before=live, after=written, attempts=attempt)
            _barrier("after-write", target)
            return Outcome(target, CONFIGURED, before=live, after=written, attempts=attempt)

    # -- apply --------------------------------------------------------------------------------------------

    def apply(self, targets: list[Target]) -> Report:
        report = Report()
        planned: list[tuple[Target, dict, dict]] = []
        failures = 0
        for target in targets:  # 1. plan everything; nothing is written if any object fails here
            try:
                live = self._read(target)
                if live is None:
                    report.outcomes.append(Outcome(target, MISSING, f"not found in namespace {target.namespace}"))
                    failures += 1
                    continue
                planned.append((target, live, self.desired(target, live)))
            except GraylaneError as exc:
                report.outcomes.append(Outcome(target, FAILED, str(exc)))
                failures += 1
        refused = set() if failures else self._judge_requests(planned, report)
        failures += len(refused)
        if failures:
            for target, live, _wanted in planned:
                if target.key not in refused:
                    report.outcomes.append(Outcome(target, NOT_CHANGED, "another referenced object failed",
                                                   before=live))
            report.error = f"{failures} of {len(targets)} object(s) failed; nothing was changed"
            return self._ordered(report, targets)
        done: list[Outcome] = []
        for index, (target, live, wanted) in enumerate(planned):  # 2. write, all or nothing
            try:
                outcome = self._write(target, live, lambda current, t=target: self.desired(t, current), wanted,
                                      server_side=True)
            except GraylaneError as exc:
                report.outcomes.append(Outcome(target, FAILED, str(exc)))
                for later, later_live, _wanted in planned[index + 1:]:
                    report.outcomes.append(Outcome(later, NOT_CHANGED, "not attempted after the failure",
                                                   before=later_live))
                report.outcomes.extend(self._roll_back(done))
                rolled = sum(1 for o in report.outcomes if o.state == ROLLED_BACK)
                kept = sum(1 for o in report.outcomes if o.state == NOT_ROLLED_BACK)
                report.error = (f"{target.describe()} failed; {rolled} object(s) changed by this call were put "
                                "back" + (f", {kept} could NOT be put back" if kept else ""))
                return self._ordered(report, targets)
            done.append(outcome)
        report.outcomes.extend(done)
        return self._ordered(report, targets)

    def _judge_requests(self, planned: list[tuple[Target, dict, dict]], report: Report) -> set:
        """Run the output check on every planned object with the others as they would be written (render's
        GL0402/GL0403: a subset no DestinationRule defines or that selects no pods); the keys of the targets it
        refuses, each reported as FAILED. Nothing to judge when the DestinationRules cannot be listed."""
        if not (self.judge_requests and self.check and planned):
            return set()
        state = self._request_context(planned)
        refused = set()
        for target, live, wanted in planned if state is not None else []:
            try:
                self.warnings.extend(self.check(Document(live, _source(target), 1), wanted, state) or [])
            except GraylaneError as exc:
                report.outcomes.append(Outcome(target, FAILED, str(exc)))
                refused.add(target.key)
        return refused

    def _request_context(self, planned: list[tuple[Target, dict, dict]]) -> Optional[list[Document]]:
        """The planned objects as they would be written, their routings, and the DestinationRules, Services and
        Deployments of their namespaces; None when the DestinationRules cannot be listed."""
        documents = [Document(wanted, _source(target), 1) for target, _live, wanted in planned]
        documents += list({id(t.routing.document): t.routing.document for t, _l, _w in planned}.values())
        planned_keys = {target.key for target, _live, _wanted in planned}
        for namespace in sorted({target.namespace for target, _live, _wanted in planned}):
            try:
                rules = self.cluster.list(self.cluster.resource(DESTINATION_RULE_API, "DestinationRule"), namespace)
            except GraylaneError:
                return None
            documents += [Document(body, f"cluster {namespace}", 1) for body in rules
                          if (ISTIO_GROUP, "DestinationRule", namespace, (body.get("metadata") or {}).get("name"))
                          not in planned_keys]
            for kind in ("Service", "Deployment"):
                try:
                    documents += [Document(body, f"cluster {namespace}", 1)
                                  for body in self.cluster.list_builtin(kind, namespace)]
                except GraylaneError:
                    continue  # without them, subsets are not judged by their pods
        return documents

    def _roll_back(self, done: list[Outcome]) -> list[Outcome]:
        """Put back what this call changed, newest first, only if nobody changed it after us."""
        results = []
        for outcome in reversed(done):
            if outcome.state != CONFIGURED:
                results.append(outcome)
                continue
            if self.dry_run:
                results.append(Outcome(outcome.target, NOT_CHANGED, "dry run; would be put back with the others",
                                       before=outcome.before))
                continue
            body = copy.deepcopy(outcome.before)
            body["metadata"]["resourceVersion"] = _rv(outcome.after)
            try:
                with self.writing(outcome.target):
                    restored = self.cluster.replace(outcome.target.resource, body)
                    if self.on_write:
                        self.on_write(outcome.target, restored)
                results.append(Outcome(outcome.target, ROLLED_BACK, "put back to its state before this call",
                                       before=outcome.before, after=restored))
            except Conflict:
                results.append(Outcome(outcome.target, NOT_ROLLED_BACK,
                                       "someone changed it after this call did; left as is (graylane restore "
                                       "puts back the stored original)", before=outcome.before))
            except GraylaneError as exc:
                results.append(Outcome(outcome.target, NOT_ROLLED_BACK, str(exc), before=outcome.before))
        return results

    @staticmethod
    def _ordered(report: Report, targets: list[Target]) -> Report:
        order = {id(t): i for i, t in enumerate(targets)}
        report.outcomes.sort(key=lambda o: order.get(id(o.target), len(order)))
        return report

    # -- restore ------------------------------------------------------------------------------------------

    def restore(self, targets: list[Target]) -> Report:
        """Put every object back from its stored original and drop the annotation; idempotent."""
        report = Report()
        failures = 0
        for target in targets:
            try:
                live = self._read(target)
                if live is None:
                    report.outcomes.append(Outcome(target, MISSING, f"not found in namespace {target.namespace}; "
                                                                    "skipped"))
                    continue
                _original_or_error(target, live)
                outcome = self._write(target, live, lambda current, t=target: self.restored(t, current))
                if outcome.state == CONFIGURED:
                    outcome.state = RESTORED
                else:
                    outcome.message = "no stored original"
                report.outcomes.append(outcome)
            except GraylaneError as exc:
                report.outcomes.append(Outcome(target, FAILED, str(exc)))
                failures += 1
        if failures:
            report.error = f"{failures} of {len(targets)} object(s) could not be restored"
        return report

    def restored(self, target: Target, live: dict) -> dict:
        """``live`` put back to its original (other writers' edits kept); ``live`` itself when graylane has
        nothing there to take back."""
        stored, is_stored = _original_or_error(target, live)
        if not is_stored and not knows(target.kind):
            return live
        original, _ = self.original(target, live)
        body = restore_body(live, original)
        return live if not is_stored and body == restore_body(live, _as_found(live)) else body

    # -- status -------------------------------------------------------------------------------------------

    def status(self, targets: list[Target]) -> list[dict]:
        rows = []
        for target in targets:
            row: dict[str, Any] = {"object": target.describe(), "namespace": target.namespace,
                                   "routing": target.routing.document.describe()}
            try:
                live = self._read(target)
            except GraylaneError as exc:
                rows.append({**row, "error": str(exc)})
                continue
            if live is None:
                rows.append({**row, "found": False})
                continue
            annotations = (live.get("metadata") or {}).get("annotations") or {}
            row.update(found=True, originalStored=ORIGINAL_ANNOTATION in annotations)
            row.update(inspect(live, target.stable_service, target.canary_service, target.subsets))
            rows.append(row)
        return rows


def _source(target: Target) -> str:
    """How findings and messages name a live object: ``cluster <namespace>/<kind.group/name>``."""
    return f"cluster {target.namespace}/{target.describe()}"


def _rv(body: Optional[dict]) -> Optional[str]:
    return ((body or {}).get("metadata") or {}).get("resourceVersion")


def _original_or_error(target: Target, live: dict):
    try:
        return original_of(live)
    except ValueError as exc:
        raise InvalidInputError(str(exc), source=f"cluster {target.namespace}/{target.describe()}",
                                field=f"metadata.annotations[{ORIGINAL_ANNOTATION}]") from None


def apply_patch(live: dict, wanted: dict) -> Optional[dict]:
    """The server-side apply body for ``wanted``: what graylane sets (spec, the stored original, the labels
    and annotations the script sets) and nothing of other writers' metadata, with the resourceVersion it was
    computed from. None when a plain update is needed (the script removes a label or annotation, which an
    apply cannot do for fields another manager set)."""
    meta, live_meta = wanted.get("metadata") or {}, live.get("metadata") or {}
    annotations = dict(meta.get("annotations") or {})
    try:
        original = json.loads(annotations.get(ORIGINAL_ANNOTATION) or "{}")
    except ValueError:
        return None
    kept_labels, kept_annotations = original.get("labels") or {}, original.get("annotations") or {}
    labels = dict(meta.get("labels") or {})
    for key in set(kept_labels) - set(labels):
        if key in (live_meta.get("labels") or {}):
            return None
    for key in set(kept_annotations) - set(annotations):
        if key in (live_meta.get("annotations") or {}):
            return None
    applied_meta: dict[str, Any] = {
        "name": meta.get("name"), "namespace": meta.get("namespace"), "resourceVersion": meta.get("resourceVersion"),
        "annotations": {k: v for k, v in annotations.items()
                        if k == ORIGINAL_ANNOTATION or kept_annotations.get(k) != v}}
    script_labels = {k: v for k, v in labels.items() if kept_labels.get(k) != v}
    if script_labels:
        applied_meta["labels"] = script_labels
    return {"apiVersion": wanted.get("apiVersion"), "kind": wanted.get("kind"), "metadata": applied_meta,
            "spec": wanted.get("spec")}


def _as_found(live: dict) -> OriginalState:
    metadata = live.get("metadata") or {}
    return OriginalState(live.get("spec"), dict(metadata.get("labels") or {}), dict(metadata.get("annotations") or {}))


# -- status: what an object says about the canary ------------------------------------------------------------


def inspect(body: dict, stable: str, canary: str, subsets: Optional[tuple[str, str]] = None) -> dict:
    """Canary weight, matches and gray subset as an Istio VirtualService/DestinationRule states them.
    ``subsets``: an Argo subset-level split's (canary, stable) subset names, where the canary is a subset of
    the DestinationRule's host rather than a Service of its own."""
    spec = body.get("spec") or {}
    kind = body.get("kind")
    namespace = (body.get("metadata") or {}).get("namespace")
    canary_subset = subsets[0] if subsets else CANARY_SUBSET

    def is_canary(destination: Any) -> bool:
        if subsets:
            return isinstance(destination, dict) and destination.get("subset") == canary_subset
        return is_canary_destination(destination, stable, canary, namespace)

    if kind == "VirtualService":
        weights, matches = [], []
        for protocol in ("http", "tcp", "tls"):
            for rule in spec.get(protocol) or []:
                routes = [r for r in (rule or {}).get("route") or [] if isinstance(r, dict)]
                canary_routes = [r for r in routes if is_canary(r.get("destination"))]
                if not canary_routes:
                    continue
                if rule.get("match"):
                    matches.extend(rule["match"])
                else:
                    weights.append(sum(int(r.get("weight", 100 if len(routes) == 1 else 0))
                                       for r in canary_routes))
        return {"canaryWeight": weights[0] if weights else None, "matches": matches}
    if kind == "DestinationRule":
        subset = next((s for s in spec.get("subsets") or [] if isinstance(s, dict)
                       and s.get("name") == canary_subset), None)
        return {"graySubset": subset}
    return {}
