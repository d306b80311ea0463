"""Render an Argo Rollout step by step, through the same pluggable scripts as the Kruise flow.

Argo's controller reconciles one step at a time on the live objects, so step N is a fold: start from each
object's original (the stored-original annotation when present, so rendering stays idempotent) and run the
object's script once per step 1..N, each run seeing the previous run's output and the step's ``obj.argo``.
"""
from __future__ import annotations

import copy
from typing import Callable, Iterator, Optional

from engine.documents import Document, DocumentIndex
from engine.errors import ScriptError
from engine.records import Record
from engine.lua.scripts import resource_key
from engine.routing.argo.rollout import (HASH_LABEL, ArgoRollout, ArgoStep, is_argo_rollout, read_rollout,
                                         routes_with_istio)
from engine.routing.render import Engine, OutputCheck, Rendered, find_object
from engine.routing.script_input import (ORIGINAL_ANNOTATION, OriginalState, apply_result, build_argo_script_input,
                                         encode_original, original_of)
from engine.routing.strategy import NetworkRef, RouteTarget, RoutingPlan, TrafficStrategy

ISTIO_API = "networking.istio.io/v1alpha3"
REVISION_ANNOTATION = "rollout.argoproj.io/revision"


def argo_plan(rollout: ArgoRollout, step: int) -> RoutingPlan:
    """The RoutingPlan of one step: targets name the VirtualServices (and DestinationRule) Argo patches."""
    chosen = rollout.step(step)
    refs = [NetworkRef(ISTIO_API, "VirtualService", vs.name, vs.field) for vs in rollout.virtual_services]
    subsets = None
    canary, stable = rollout.canary_service, rollout.stable_service
    if rollout.destination_rule is not None:
        dr = rollout.destination_rule
        refs.append(NetworkRef(ISTIO_API, "DestinationRule", dr["name"],
                               "spec.strategy.canary.trafficRouting.istio.destinationRule"))
        subsets = (dr["canarySubsetName"], dr["stableSubsetName"])
    target = RouteTarget(stable, canary, refs, None, "spec.strategy.canary.trafficRouting.istio", subsets)
    strategy = TrafficStrategy(weight=chosen.weight, description=f"{chosen.description} (weight {chosen.weight}%)")
    return RoutingPlan(rollout.document, [target], strategy, step, len(rollout.steps), rollout)


class PodHashes(Record):
    """``source``: where they came from, for notes."""

    __slots__ = ("canary", "stable", "source")

    def __init__(self, canary: Optional[str], stable: Optional[str], source: str):
        self.canary, self.stable, self.source = canary, stable, source

    @property
    def known(self) -> bool:
        return bool(self.canary or self.stable)


def pod_hashes(rollout: ArgoRollout, documents: list[Document], given: dict) -> PodHashes:
    """The canary and stable ``rollouts-pod-template-hash``: ``--canary-hash``/``--stable-hash``, else the
    Rollout's status (currentPodHash, stableRS), else its ReplicaSets among the inputs (newest revision is the
    canary, the one before it the stable)."""
    if given.get("canary") or given.get("stable"):
        return PodHashes(given.get("canary"), given.get("stable"), "--canary-hash/--stable-hash")
    status = rollout.document.body.get("status")
    if isinstance(status, dict) and status.get("currentPodHash") and status.get("stableRS"):
        return PodHashes(str(status["currentPodHash"]), str(status["stableRS"]), "the Rollout's status")
    owned = []
    for document in documents:
        if document.kind != "ReplicaSet" or document.namespace != rollout.namespace:
            continue
        owners = document.metadata.get("ownerReferences") or []
        if not any(isinstance(o, dict) and o.get("kind") == "Rollout" and o.get("name") == rollout.document.name
                   for o in owners):
            continue
        labels = document.metadata.get("labels") or {}
        revision = str((document.metadata.get("annotations") or {}).get(REVISION_ANNOTATION, "0"))
        if labels.get(HASH_LABEL):
            owned.append((int(revision) if revision.isdigit() else 0, str(labels[HASH_LABEL])))
    owned.sort()
    if owned:
        stable = owned[-2][1] if len(owned) > 1 else None
        return PodHashes(owned[-1][1], stable, "the Rollout's ReplicaSets")
    return PodHashes(None, None, "")


def hash_notes(documents: list[Document], engine: Engine) -> list[str]:
    """One note per subset-level Argo Rollout whose pod-template hashes are unknown (its subsets keep their
    labels, where Argo would write rollouts-pod-template-hash into them)."""
    notes = []
    for document in documents:
        if is_argo_rollout(document) and routes_with_istio(document):
            rollout = read_rollout(document)
            if rollout.destination_rule and not pod_hashes(rollout, documents, engine.argo_hashes).known:
                notes.append(f"note: {document.source}: document {document.index}: Rollout/{document.name}: no "
                             f"pod-template hashes (--canary-hash/--stable-hash, status or ReplicaSets), so the "
                             f"subsets of DestinationRule/{rollout.destination_rule['name']} keep their labels; "
                             f"Argo would add {HASH_LABEL}")
    return notes


def _argo_fields(rollout: ArgoRollout, step: ArgoStep, hashes: PodHashes, entry: Optional[dict],
                 dr_host: Optional[str]) -> dict:
    dr = rollout.destination_rule
    destination_rule = None if dr is None else {**dr, "host": dr_host}
    return {
        "rollout": rollout.document.name,
        "namespace": rollout.namespace,
        "step": step.number,
        "weight": step.weight,
        "canaryService": rollout.canary_service,
        "stableService": rollout.stable_service,
        "canaryHost": dr_host if dr_host else rollout.canary_service,
        "virtualService": entry,
        "destinationRule": destination_rule,
        "managedRoutes": rollout.managed_routes,
        "setHeaderRoute": step.header_route,
        "setMirrorRoute": step.mirror_route,
        "canaryHash": hashes.canary,
        "stableHash": hashes.stable,
    }


def _find(rollout: ArgoRollout, inputs: DocumentIndex, kind: str, name: str, namespace: Optional[str],
          where: str) -> Document:
    found = find_object(inputs, ISTIO_API, kind, name, namespace)
    if found is None:
        raise rollout.document.error(f"references {kind}/{name}, which is not among the inputs", where)
    return found


def render_rollout(routing: RoutingPlan, inputs: DocumentIndex, engine: Engine, claimed: dict,
                   check: Optional[OutputCheck] = None) -> list[Rendered]:
    """The VirtualServices (and DestinationRule) of an Argo Rollout as Argo leaves them after steps 1..N."""
    rollout: ArgoRollout = routing.argo
    steps = rollout.steps[:routing.step]
    hashes = pod_hashes(rollout, inputs.documents, engine.argo_hashes)
    dr_document, dr_host = None, None
    if rollout.destination_rule is not None:
        dr_document = _find(rollout, inputs, "DestinationRule", rollout.destination_rule["name"],
                            rollout.namespace, "spec.strategy.canary.trafficRouting.istio.destinationRule.name")
        spec = dr_document.body.get("spec")
        dr_host = str(spec.get("host") or "") if isinstance(spec, dict) else ""
    work: list[tuple[Document, Optional[dict], str]] = []
    for vs in rollout.virtual_services:
        work.append((_find(rollout, inputs, "VirtualService", vs.name, vs.namespace or rollout.namespace,
                           f"{vs.field}.name"), vs.entry, vs.field))
    if dr_document is not None and hashes.known:
        work.append((dr_document, None, "spec.strategy.canary.trafficRouting.istio.destinationRule"))
    rendered = []
    for document, entry, where in work:
        if id(document) in claimed:
            raise rollout.document.error(f"{document.describe()} is already routed by "
                                         f"{claimed[id(document)].document.describe()}; one object can follow only "
                                         "one routing", where)
        claimed[id(document)] = routing
        rendered.append(_render_object(rollout, routing, document, entry, dr_host, steps, hashes, engine, where,
                                       check))
    return rendered


def _render_object(rollout: ArgoRollout, routing: RoutingPlan, document: Document, entry: Optional[dict],
                   dr_host: Optional[str], steps: list[ArgoStep], hashes: PodHashes, engine: Engine, where: str,
                   check: Optional[OutputCheck]) -> Rendered:
    try:
        original, _stored = original_of(document.body)
    except ValueError as exc:
        raise document.error(str(exc), f"metadata.annotations[{ORIGINAL_ANNOTATION}]") from None
    key = resource_key(document.api_version, document.kind)
    state = OriginalState(*_copy(original))
    try:
        for _step, state in fold_steps(rollout, original, steps, hashes, entry, dr_host,
                                       lambda obj: engine.run_script_input(key, obj)):
            pass
    except StepScriptError as failed:
        exc, step = failed.error, failed.step
        raise rollout.document.error(f"step {step.number} ({step.description}) on {document.describe()}: "
                                     f"{exc.message} ({exc.script})", where) from None
    body = apply_result(document.body, state.spec, state.labels, state.annotations, encode_original(original))
    if check:
        check(document, body)
    return Rendered(document, body, routing, body != document.body)


class StepScriptError(Exception):
    """A script error at one step of the fold (the step says where, for the caller's message)."""

    def __init__(self, error: ScriptError, step: ArgoStep):
        super().__init__(str(error))
        self.error, self.step = error, step


def fold_steps(rollout: ArgoRollout, original: OriginalState, steps: list[ArgoStep], hashes: PodHashes,
               entry: Optional[dict], dr_host: Optional[str],
               run: Callable[[dict], OriginalState]) -> Iterator[tuple[ArgoStep, OriginalState]]:
    """Argo's step-by-step reconcile of one object: each step's script run (``run``) sees the previous step's
    output and the step's ``obj.argo``; yields the state after each step. Render and ``graylane test`` both
    fold through here."""
    state = OriginalState(*_copy(original))
    for step in steps:
        obj = build_argo_script_input(state, step.weight, rollout.stable_service, rollout.canary_service,
                                      _argo_fields(rollout, step, hashes, entry, dr_host))
        try:
            state = run(obj)
        except ScriptError as exc:
            raise StepScriptError(exc, step) from None
        yield step, state


def _copy(original: OriginalState) -> tuple:
    return copy.deepcopy(original.spec), dict(original.labels), dict(original.annotations)


def render_live(routing: RoutingPlan, document: Document, engine: Engine, dr_host: Optional[str],
                check: Optional[OutputCheck] = None) -> dict:
    """Cluster mode's desired state of one live object (a VirtualService or the DestinationRule) of an Argo
    Rollout at ``routing.step``: the same fold as render, from the object's stored original."""
    rollout: ArgoRollout = routing.argo
    hashes = PodHashes(engine.argo_hashes.get("canary"), engine.argo_hashes.get("stable"), "flags")
    entry, where = None, "spec.strategy.canary.trafficRouting.istio.destinationRule"
    if document.kind == "VirtualService":
        found = [vs for vs in rollout.virtual_services if vs.name == document.name
                 and (vs.namespace or rollout.namespace) in (None, document.namespace)]
        if not found:
            raise rollout.document.error(f"does not route VirtualService/{document.name}", "spec.strategy.canary")
        entry, where = found[0].entry, found[0].field
    elif not hashes.known:
        return document.body
    return _render_object(rollout, routing, document, entry, dr_host, rollout.steps[:routing.step], hashes, engine,
                          where, check).body
