"""Render and restore: pure functions from documents to mutated (or restored) network objects.

Rendering always starts from the stored original (the Kruise annotation) when there is one, so rendering
an already-rendered object gives the same result instead of stacking a second canary on top.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Optional

from engine.documents import Document, DocumentIndex
from engine.records import Record
from engine.errors import InvalidInputError, ScriptError
from engine.lua.sandbox import LuaSandbox, Script
from engine.routing.script_input import (ORIGINAL_ANNOTATION, OriginalState, apply_result, build_ingress_input,
                           build_script_input, encode_original, original_of, restore_body)
from engine.lua.scripts import ScriptLibrary, ingress_key, resource_key
from engine.routing.strategy import NO_ROUTING, RoutingPlan, TrafficStrategy, is_routing_document, plan
from engine.routing.names import did_you_mean

#: Checks a script's output: (input object, rendered body, every input as rendered or None) -> the findings to
#: show as warnings; raises to refuse it. ``engine.checks.validate.check_rendered`` is the one graylane uses.
OutputCheck = Callable[..., Optional[list]]


class Engine(Record):
    """Scripts plus the sandbox that runs them; ``argo_hashes``: Argo pod-template hashes given on the command
    line."""

    __slots__ = ("library", "sandbox", "printer", "argo_hashes")

    def __init__(self, library: ScriptLibrary, sandbox: Optional[LuaSandbox] = None,
                 printer: Optional[Callable[[str], None]] = None, argo_hashes: Optional[dict] = None):
        self.library, self.sandbox = library, LuaSandbox() if sandbox is None else sandbox
        self.printer, self.argo_hashes = printer, {} if argo_hashes is None else argo_hashes

    def run_network_script(self, key: str, original: OriginalState, strategy: TrafficStrategy,
                           stable_service: str, canary_service: str,
                           meanwhile: Optional[Callable[[], None]] = None,
                           namespace: Optional[str] = None) -> OriginalState:
        """``meanwhile``: the caller's own work, done while the script runs in the worker process; ``namespace``:
        the object's (see build_script_input)."""
        return self.run_script_input(key, build_script_input(original, strategy, stable_service, canary_service,
                                                             namespace), meanwhile)

    def run_script_input(self, key: str, obj: dict, meanwhile: Optional[Callable[[], None]] = None) -> OriginalState:
        """Run the network script for ``key`` on a prepared ``obj`` (see engine.routing.script_input)."""
        script = self.library.find(key)
        value = self.sandbox.run(script, obj, self.printer, meanwhile=meanwhile).value
        return network_result(script, value)

    def run_ingress_script(self, class_type: str, annotations: dict, strategy: TrafficStrategy,
                           canary_service: str) -> dict:
        script = self.library.find(ingress_key(class_type))
        obj = build_ingress_input(annotations, strategy, canary_service)
        value = self.sandbox.run(script, obj, self.printer).value
        return _string_map(script, value, "the returned annotations")


def network_result(script: Script, value: Any) -> OriginalState:
    """Check a custom-network script's return value: ``{spec = ..., labels = ..., annotations = ...}``."""
    if not isinstance(value, dict):
        raise ScriptError(script.origin, "output: must return a table with spec, labels and annotations",
                          reason="output")
    unknown = set(value) - {"spec", "labels", "annotations"}
    if unknown:
        raise ScriptError(script.origin, f"output: unexpected key(s) {', '.join(sorted(unknown))}; "
                          "return {spec = ..., labels = ..., annotations = ...}", reason="output")
    if "spec" not in value or not isinstance(value["spec"], dict):
        raise ScriptError(script.origin, "output: spec must be a table (did the script return obj instead of "
                          "obj.data?)", reason="output")
    return OriginalState(value["spec"], _string_map(script, value.get("labels"), "labels"),
                         _string_map(script, value.get("annotations"), "annotations"))


def _string_map(script: Script, value: Any, what: str) -> dict:
    if value is None or value == [] or value == {}:
        return {}
    if not isinstance(value, dict):
        raise ScriptError(script.origin, f"output: {what} must be a map of strings", reason="output")
    for key, item in value.items():
        if not isinstance(item, str):
            raise ScriptError(script.origin, f"output: {what}[{key!r}] must be a string, got {type(item).__name__}",
                              reason="output")
    return value


class Rendered(Record):
    """One output object: the input document it came from and the routing plan that changed it; ``warnings``:
    what the output check let through (findings)."""

    __slots__ = ("source", "body", "plan", "changed", "warnings")

    def __init__(self, source: Document, body: dict, plan: RoutingPlan, changed: bool,
                 warnings: Optional[list] = None):
        self.source, self.body, self.plan, self.changed = source, body, plan, changed
        self.warnings = [] if warnings is None else warnings


def find_object(inputs: DocumentIndex, api_version: str, kind: str, name: str,
                namespace: Optional[str]) -> Optional[Document]:
    """The input object a reference points at (:meth:`DocumentIndex.matching`); two of them are an error."""
    found = inputs.matching(api_version, kind, name, namespace)
    if len(found) > 1:
        raise found[1].error(f"{kind}/{name} appears more than once in the inputs (first in {found[0].source} "
                             f"document {found[0].index})")
    return found[0] if found else None


def routing_plans(documents: list[Document], step: Optional[int] = None) -> list[RoutingPlan]:
    plans = [plan(d, step) for d in documents if is_routing_document(d)]
    if not plans:
        raise InvalidInputError(NO_ROUTING)
    return plans


def rendered_documents(documents: list[Document], rendered: list[Rendered]) -> list[Document]:
    """``documents`` with every object render changed replaced by its rendered form (same file and position)."""
    replaced = {id(item.source): item.body for item in rendered if not _is_new(item)}
    return [Document(replaced[id(d)], d.source, d.index) if id(d) in replaced else d for d in documents]


def _is_new(item: Rendered) -> bool:
    """An object render creates (a canary Ingress), rather than the input object it changed."""
    return (item.body.get("metadata") or {}).get("name") != item.source.name


def render(documents: list[Document], engine: Engine, step: Optional[int] = None,
           check: Optional[OutputCheck] = None) -> list[Rendered]:
    """Every network object referenced by the TrafficRoutings/Rollouts in ``documents``, mutated.

    ``check`` runs on each changed input object once everything is rendered, so it can judge an object against
    the others as rendered (a VirtualService against the DestinationRule that gains the canary subset).
    """
    rendered = _render_all(documents, engine, step)
    if check:
        state = rendered_documents(documents, rendered)
        for item in rendered:
            if not _is_new(item):
                item.warnings = list(check(item.source, item.body, state) or [])
    return rendered


def _render_all(documents: list[Document], engine: Engine, step: Optional[int]) -> list[Rendered]:
    rendered: list[Rendered] = []
    claimed: dict[int, RoutingPlan] = {}
    inputs = DocumentIndex(documents)
    for routing in routing_plans(documents, step):
        if routing.argo is not None:
            from engine.routing.argo.render import render_rollout
            rendered.extend(render_rollout(routing, inputs, engine, claimed))
            continue
        namespace = routing.document.namespace
        for target in routing.targets:
            for ref in target.network_refs:
                found = find_object(inputs, ref.api_version, ref.kind, ref.name, namespace)
                if found is None:
                    raise routing.document.error(
                        f"references {ref.kind}/{ref.name} ({ref.api_version}), which is not among the inputs"
                        + did_you_mean(ref.name, inputs.names(ref.kind)),
                        ref.field)
                if id(found) in claimed:
                    raise routing.document.error(
                        f"{ref.kind}/{ref.name} is already routed by {claimed[id(found)].document.describe()}; "
                        "one object can follow only one routing", ref.field)
                claimed[id(found)] = routing
                if not routing.strategy.routes_traffic:
                    rendered.append(Rendered(found, found.body, routing, False))
                    continue
                rendered.append(render_object(found, routing.strategy, target.stable_service,
                                              target.canary_service, engine, routing))
            if target.ingress and routing.strategy.routes_traffic:
                canary = render_canary_ingress(inputs, routing, target.ingress, target, engine)
                if canary is not None:
                    rendered.append(canary)
    return rendered


def render_object(document: Document, strategy: TrafficStrategy, stable_service: str, canary_service: str,
                  engine: Engine, routing: RoutingPlan) -> Rendered:
    try:
        original, _stored = original_of(document.body)
    except ValueError as exc:
        raise document.error(str(exc), f"metadata.annotations[{ORIGINAL_ANNOTATION}]") from None
    key = resource_key(document.api_version, document.kind)
    stored: list[str] = []  # the original's JSON, encoded while the worker runs the script
    try:
        result = engine.run_network_script(key, original, strategy, stable_service, canary_service,
                                           lambda: stored.append(encode_original(original)), document.namespace)
    except ScriptError as error:
        raise error.about(describe_input(document), describe_routing(routing))
    body = apply_result(document.body, result.spec, result.labels, result.annotations,
                        stored[0] if stored else encode_original(original))
    return Rendered(document, body, routing, body != document.body)


def describe_input(document: Document) -> str:
    """The object a script ran on, as script errors name it: ``file: document N: Kind ns/name``."""
    name = f"{document.namespace}/{document.name}" if document.namespace else document.name
    return f"{document.source}: document {document.index}: {document.kind} {name}"


def describe_routing(routing: RoutingPlan) -> str:
    step = f"step {routing.step} of " if routing.step else ""
    return f"{step}{routing.document.kind}/{routing.document.name}"


INGRESS_API = "networking.k8s.io/v1"


def render_canary_ingress(inputs: DocumentIndex, routing: RoutingPlan, ingress: dict, target: Any,
                          engine: Engine) -> Optional[Rendered]:
    """Kruise's ingress flow, converged: the ``<name>-canary`` Ingress with the annotations the
    ``trafficrouting_ingress/<classType>.lua`` script returns.

    As Kruise's ingress provider: an existing canary Ingress keeps its spec and gets the script's annotations
    (from its own); otherwise one is built from the stable Ingress (see ``canary_ingress``), first annotated by
    the script at weight 0 (what Kruise creates), then by the step's strategy (what its next reconcile sets).
    At weight 0 no canary Ingress is created (None)."""
    name = ingress["name"]
    stable = find_object(inputs, INGRESS_API, "Ingress", name, routing.document.namespace)
    if stable is None:
        raise routing.document.error(f"references Ingress/{name}, which is not among the inputs"
                                     + did_you_mean(name, inputs.names("Ingress")),
                                     f"{target.field}.ingress.name")
    class_type = ingress.get("classType") or "nginx"
    existing = find_object(inputs, INGRESS_API, "Ingress", f"{name}-canary", routing.document.namespace)
    if existing is None and routing.strategy.weight == 0:
        return None
    try:
        if existing is not None:
            body = copy.deepcopy(existing.body)
            annotations = dict(existing.metadata.get("annotations") or {})
        else:
            body = canary_ingress(stable.body, target.stable_service, target.canary_service)
            annotations = engine.run_ingress_script(class_type, dict(stable.metadata.get("annotations") or {}),
                                                    TrafficStrategy(weight=0), target.canary_service)
        annotations = engine.run_ingress_script(class_type, annotations, routing.strategy, target.canary_service)
    except ScriptError as error:
        raise error.about(describe_input(existing or stable), describe_routing(routing))
    metadata = body.setdefault("metadata", {})
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    before = existing.body if existing else None
    return Rendered(existing or stable, body, routing, body != before)


def canary_ingress(stable: dict, stable_service: str, canary_service: str) -> dict:
    """The canary Ingress Kruise builds from the stable one: its name plus ``-canary``, its namespace, labels
    and annotations, ingressClassName and tls; only the rules and paths whose backend is the stable service,
    pointed at the canary service; no defaultBackend."""
    metadata = stable.get("metadata") or {}
    spec = stable.get("spec") or {}
    canary_metadata = {"name": f"{metadata.get('name')}-canary"}
    for key in ("namespace", "labels", "annotations"):
        if metadata.get(key):
            canary_metadata[key] = copy.deepcopy(metadata[key])
    rules = []
    for rule in spec.get("rules") or []:
        paths = []
        for path in ((rule or {}).get("http") or {}).get("paths") or []:
            service = ((path or {}).get("backend") or {}).get("service") or {}
            if service.get("name") != stable_service:
                continue
            canary_path = {key: copy.deepcopy(path[key]) for key in ("path", "pathType", "backend") if key in path}
            canary_path["backend"]["service"]["name"] = canary_service
            paths.append(canary_path)
        if paths:
            rules.append({**({"host": rule["host"]} if rule.get("host") else {}), "http": {"paths": paths}})
    canary_spec: dict = {}
    if spec.get("ingressClassName") is not None:
        canary_spec["ingressClassName"] = spec["ingressClassName"]
    if spec.get("tls"):
        canary_spec["tls"] = copy.deepcopy(spec["tls"])
    if rules:
        canary_spec["rules"] = rules
    return {"apiVersion": INGRESS_API, "kind": "Ingress", "metadata": canary_metadata, "spec": canary_spec}


class Restored(Record):
    __slots__ = ("source", "body")

    def __init__(self, source: Document, body: dict):
        self.source, self.body = source, body


def restore(documents: list[Document]) -> tuple[list[Restored], list[Document]]:
    """Objects carrying a stored original, put back exactly; and the ones that carry none."""
    restored: list[Restored] = []
    untouched: list[Document] = []
    for document in documents:
        if is_routing_document(document):
            continue
        try:
            original, stored = original_of(document.body)
        except ValueError as exc:
            raise document.error(str(exc), f"metadata.annotations[{ORIGINAL_ANNOTATION}]") from None
        if stored:
            restored.append(Restored(document, restore_body(document.body, original)))
        else:
            untouched.append(document)
    return restored, untouched
