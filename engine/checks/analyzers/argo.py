"""Analyzers for Argo Rollouts with Istio (GL06xx): the Rollout's own rules, its references, and whether Argo's
controller would accept every step on the VirtualServices given (it refuses a route without both the stable
and the canary destination, a route name that is not there, several routes when ``routes`` is omitted)."""
from __future__ import annotations

from engine.checks.analyzers.common import Finding, finding
from engine.documents import Document, DocumentIndex
from engine.errors import GraylaneError, InvalidInputError
from engine.routing.argo.rollout import is_argo_rollout, read_rollout, routes_with_istio

ISTIO_API = "networking.istio.io/v1alpha3"


def analyze_references(documents: list[Document]) -> list[Finding]:
    findings: list[Finding] = []
    inputs = DocumentIndex(documents)
    for document in documents:
        if not (is_argo_rollout(document) and routes_with_istio(document)):
            continue
        try:
            rollout = read_rollout(document)
        except InvalidInputError as exc:
            findings.append(finding("GL0601", document, exc.field or "spec.strategy.canary", exc.message))
            continue
        missing = False
        refs = [("VirtualService", vs.name, vs.namespace or document.namespace, f"{vs.field}.name")
                for vs in rollout.virtual_services]
        if rollout.destination_rule is not None:
            refs.append(("DestinationRule", rollout.destination_rule["name"], document.namespace,
                         "spec.strategy.canary.trafficRouting.istio.destinationRule.name"))
        for kind, name, namespace, path in refs:
            if not inputs.matching(ISTIO_API, kind, name, namespace):
                missing = True
                findings.append(finding("GL0602", document, path, f"{kind} {namespace + '/' if namespace else ''}"
                                        f"{name} is not among the inputs"))
        if not missing:
            findings.extend(_refused_steps(document, documents, len(rollout.steps)))
    return findings


def _refused_steps(document: Document, documents: list[Document], steps: int) -> list[Finding]:
    """Render each step with the built-in scripts; the first step Argo would refuse is a finding."""
    from engine.lua.scripts import ScriptLibrary, builtin_layer
    from engine.routing.render import Engine, render
    others = [d for d in documents if not is_argo_rollout(d)]
    engine = Engine(ScriptLibrary([builtin_layer()]))
    for step in range(1, steps + 1):
        try:
            render([document, *others], engine, step)
        except InvalidInputError as exc:
            return [finding("GL0603", document, exc.field or "spec.strategy.canary.steps", exc.message)]
        except GraylaneError as exc:
            return [finding("GL0603", document, f"spec.strategy.canary.steps[{step - 1}]", str(exc))]
    return []
