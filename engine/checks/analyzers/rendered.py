"""What render refuses because requests would fail (GL04xx), checked on its output against the inputs as rendered.

A rendered VirtualService must not leak lanes (GL0401, :mod:`lanes`), and each route render adds must reach pods:
its subset is defined by a DestinationRule among the inputs (GL0402) and, when the service's workloads are among
the inputs, selects some of their pods or of the canary pods a Rollout among the inputs would add (GL0403).
Routes the input object already had are not judged here (``graylane validate`` does that). Pure.
"""
from __future__ import annotations

from typing import Optional

from engine.checks.analyzers.common import Finding, as_list, as_map, finding
from engine.checks.analyzers.istio import DestinationRulesByHost, destinations, is_destination_rule, is_virtual_service
from engine.checks.analyzers.lanes import Canaries, lane_leaks, release_canaries
from engine.checks.workloads import Workload, labels_of, rollout_canary_workloads, selects, workloads_of
from engine.documents import Document
from engine.routing.hosts import service_key
from engine.routing.script_input import original_of


def _labels(labels: dict) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in labels.items()) + "}"


def added_destinations(original: Document, rendered: Document) -> list[tuple[str, dict]]:
    """(path, destination) of each destination with a subset that the rendered object routes to and the
    original (the stored original, else the input as given) did not."""
    try:
        state, _stored = original_of(original.body)
        before = state.spec if isinstance(state.spec, dict) else {}
    except ValueError:
        before = as_map(original.body.get("spec"))
    namespace = original.namespace
    known = {(service_key(str(d.get("host", "")), namespace), d.get("subset")) for _p, d in destinations(before)}
    found, seen = [], set()
    for path, destination in destinations(as_map(rendered.body.get("spec"))):
        subset, host = destination.get("subset"), destination.get("host")
        if not isinstance(subset, str) or not subset or not isinstance(host, str):
            continue
        key = (service_key(host, namespace), subset)
        if key not in known and key not in seen:
            seen.add(key)
            found.append((path, destination))
    return found


class _State:
    """What the GL04xx checks read off the inputs as rendered, worked out once for a state: render checks every
    object it made against the same state (600 objects of a 300-service mesh took 10 s when each check read
    all of it again)."""

    def __init__(self, state: list[Document]):
        self.documents = list(state)  # holds them, so that no other document can take their ids (see _state_of)
        self.rules = DestinationRulesByHost([d for d in state if is_destination_rule(d)])
        self.canaries: Canaries = release_canaries(state)
        self._services: dict[str, list[Document]] = {}
        for document in state:
            if document.group == "" and document.kind == "Service":
                self._services.setdefault(document.name, []).append(document)
        self._workloads: dict[str, list[Workload]] = {}

    def service(self, host: str, namespace: Optional[str]) -> Optional[Document]:
        name, host_namespace = service_key(host, namespace)
        wanted = host_namespace or namespace
        return next((d for d in self._services.get(name, ())
                     if wanted is None or (d.namespace or namespace) == wanted), None)

    def workloads(self, default_namespace: str) -> list[Workload]:
        """The workloads among the inputs and the canary pods Kruise Rollouts among them would add."""
        if default_namespace not in self._workloads:
            workloads = workloads_of(self.documents, default_namespace)
            self._workloads[default_namespace] = workloads + rollout_canary_workloads(self.documents, workloads,
                                                                                      default_namespace)
        return self._workloads[default_namespace]


_LAST_STATE: list[_State] = []


def _state_of(state: list[Document]) -> _State:
    """The worked-out state, kept for the next check on the same documents (render checks all its objects
    against one state in a row)."""
    last = _LAST_STATE[0] if _LAST_STATE else None
    if last is None or len(last.documents) != len(state) or any(a is not b for a, b in zip(last.documents, state)):
        last = _State(state)
        _LAST_STATE[:] = [last]  # another thread may replace it at once: this call keeps its own
    return last


def subset_failures(original: Document, rendered: Document, state: list[Document]) -> list[Finding]:
    """GL0402 (subset no DestinationRule defines) and GL0403 (subset selecting no pods) for routes render added."""
    namespace = rendered.namespace
    inputs = _state_of(state)
    workloads = inputs.workloads(namespace or "default")
    findings = []
    for path, destination in added_destinations(original, rendered):
        host, subset = str(destination["host"]), str(destination["subset"])
        covering = inputs.rules.covering(host, namespace)
        defined = [as_map(s) for r in covering for s in as_list(as_map(r.body.get("spec")).get("subsets"))
                   if as_map(s).get("name") == subset]
        if not defined:
            if covering:
                names = ", ".join(f"DestinationRule {r.namespace or namespace or 'default'}/{r.name}" for r in covering)
                why = f"{names} (host {host}) defines no subset {subset!r}"
            else:
                why = f"no DestinationRule for host {host} is among the inputs"
            findings.append(finding("GL0402", rendered, f"{path}.subset",
                                    f"requests routed to subset {subset!r} of {host} would all get 503: {why}; "
                                    f"reference the DestinationRule of {host} in the routing's customNetworkRefs "
                                    "(its script adds the canary subset) and give it among the inputs"))
            continue
        service = inputs.service(host, namespace)
        selector = labels_of(as_map(as_map(service.body.get("spec")).get("selector"))) if service else {}
        if not selector:
            continue
        service_namespace = service.namespace or namespace or "default"
        mine = [w for w in workloads if w.namespace == service_namespace and selects(selector, w.labels)]
        if not mine:
            continue  # the service's workloads are not among the inputs: nothing to judge by
        subset_labels = labels_of(defined[0].get("labels"))
        if any(selects(subset_labels, w.labels) for w in mine):
            continue
        shown = "; ".join(f"{w.describe()} {_labels(w.labels)}" for w in mine[:3]) + ("; ..." if len(mine) > 3 else "")
        findings.append(finding("GL0403", rendered, f"{path}.subset",
                                f"requests routed to subset {subset!r} of {host} would all get 503 (no healthy "
                                f"upstream): it selects pods labelled {_labels(subset_labels)}, and no pod of the "
                                f"Service's workloads among the inputs has them ({shown}); label the canary pods "
                                "(a Rollout's patchPodTemplateMetadata, or the canary workload's template) or change "
                                "the subset's labels"))
    return findings


def request_failures(original: Document, rendered: Document, state: Optional[list[Document]]) -> list[Finding]:
    """Every GL04xx finding for one rendered object (``state``: all inputs as rendered; None: leaks only)."""
    findings: list[Finding] = []
    if is_virtual_service(rendered):
        findings.extend(lane_leaks(rendered, _state_of(state).canaries if state is not None else None))
        if state is not None:
            findings.extend(subset_failures(original, rendered, state))
    return findings
