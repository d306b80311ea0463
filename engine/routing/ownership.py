"""What graylane owns on the objects it routes, recognised by shape on the live object (the controller's view).

graylane shares VirtualServices and DestinationRules with other writers (GitOps syncs, people, other
controllers). It owns only what a strategy adds: on a VirtualService the rules that route to the canary (the
lane rules a match inserts, and the rule whose weights a canary weight splits), on a DestinationRule the
canary subset, and on both the stored-original annotation. Everything else belongs to the other writers.

The controller uses it to keep the original it stores and restores (``fold_original``): the live object with
graylane's parts replaced by the stored original's (or dropped when the original had none), so other writers'
edits survive re-assertion and deletion, and graylane's own additions are recognised on sight even when the
annotation is gone (so a strategy is never applied twice). What a GitOps tool should ignore is not stated here:
``graylane argocd`` (engine.routing.gitops) computes it from what rendering every step actually changes, so it
also covers Kruise's and Argo Rollouts' changes and names list items by what identifies them in git.

Recognition is by shape, not by name, so the scripts' output format stays Kruise's: a rule is graylane's
when one of its routes goes to the canary (the canary service, or subset ``canary`` of the stable service
when both services are the same), a subset is graylane's when it is named ``canary``.
"""
from __future__ import annotations

import copy
from typing import Any, Optional

from engine.routing.script_input import ORIGINAL_ANNOTATION, OriginalState

CANARY_SUBSET = "canary"  # the subset Kruise's and graylane's scripts route a subset-level canary to
ROUTE_PROTOCOLS = ("http", "tcp", "tls")


def same_service(host: Any, service: str, namespace: Optional[str] = None) -> bool:
    """``reviews`` and ``reviews.<namespace>.svc.cluster.local`` name service reviews, as Istio resolves hosts
    and as the built-in script decides (``namespace``: the object's; without it the full form's namespace is
    not compared, as the script does without ``obj.namespace``); ``reviews.shop`` and ``reviews.shop.svc`` name
    no Service in Istio."""
    if not isinstance(host, str):
        return False
    if host == service:
        return True
    labels = host.split(".")
    return (len(labels) == 5 and labels[0] == service and labels[2:] == ["svc", "cluster", "local"]
            and (not namespace or labels[1] == namespace))


def is_canary_destination(destination: Any, stable: str, canary: str, namespace: Optional[str] = None) -> bool:
    if not isinstance(destination, dict):
        return False
    if canary == stable:
        return (same_service(destination.get("host"), stable, namespace)
                and destination.get("subset") == CANARY_SUBSET)
    return same_service(destination.get("host"), canary, namespace)


def routes_to_canary(rule: Any, stable: str, canary: str, namespace: Optional[str] = None) -> bool:
    """A VirtualService rule graylane owns: one of its routes goes to the canary."""
    return isinstance(rule, dict) and any(isinstance(route, dict) and
                                          is_canary_destination(route.get("destination"), stable, canary, namespace)
                                          for route in rule.get("route") or [])


def _without_canary_routes(rule: dict, stable: str, canary: str, namespace: Optional[str]) -> dict:
    result = dict(rule)
    result["route"] = [r for r in rule.get("route") or [] if not (
        isinstance(r, dict) and is_canary_destination(r.get("destination"), stable, canary, namespace))]
    return result


def _ignoring_weights(rule: dict) -> dict:
    return {**rule, "route": [{k: v for k, v in r.items() if k != "weight"} if isinstance(r, dict) else r
                              for r in rule.get("route") or []]}


def _unsplit(rule: dict, originals: list, stable: str, canary: str, namespace: Optional[str]) -> Optional[dict]:
    """The rule as it was before graylane touched it: the stored original's version when one matches, else
    the live rule without its canary routes (a lane rule, which has a match, is dropped)."""
    stable_part = _without_canary_routes(rule, stable, canary, namespace)
    for original in originals:
        if isinstance(original, dict) and \
                _ignoring_weights(_without_canary_routes(original, stable, canary, namespace)) \
                == _ignoring_weights(stable_part):
            return copy.deepcopy(original)
    if rule.get("match") or not stable_part["route"]:
        return None
    if len(stable_part["route"]) == 1 and isinstance(stable_part["route"][0], dict):
        stable_part["route"] = [{k: v for k, v in stable_part["route"][0].items() if k != "weight"}]
    return copy.deepcopy(stable_part)


def _fold_spec(kind: str, live_spec: Any, stored_spec: Any, stable: str, canary: str,
               namespace: Optional[str]) -> Any:
    if not isinstance(live_spec, dict):
        return copy.deepcopy(live_spec)
    spec = copy.deepcopy(live_spec)
    stored = stored_spec if isinstance(stored_spec, dict) else {}
    if kind == "VirtualService":
        for protocol in ROUTE_PROTOCOLS:
            rules = live_spec.get(protocol)
            if not isinstance(rules, list):
                continue
            originals = [r for r in stored.get(protocol) or [] if isinstance(r, dict)]
            folded = []
            for rule in rules:
                if not routes_to_canary(rule, stable, canary, namespace):
                    folded.append(copy.deepcopy(rule))
                    continue
                if rule in (stored.get(protocol) or []):  # the original itself routed here: not ours
                    folded.append(copy.deepcopy(rule))
                    continue
                kept = _unsplit(rule, originals, stable, canary, namespace)
                if kept is not None:
                    folded.append(kept)
            spec[protocol] = folded
    elif kind == "DestinationRule" and isinstance(live_spec.get("subsets"), list):
        original_canary = next((s for s in stored.get("subsets") or []
                                if isinstance(s, dict) and s.get("name") == CANARY_SUBSET), None)
        subsets = []
        for subset in live_spec["subsets"]:
            if isinstance(subset, dict) and subset.get("name") == CANARY_SUBSET:
                if original_canary is not None:
                    subsets.append(copy.deepcopy(original_canary))
                continue
            subsets.append(copy.deepcopy(subset))
        spec["subsets"] = subsets
    return spec


def knows(kind: str) -> bool:
    """Whether graylane can tell its own parts of a ``kind`` object from everyone else's."""
    return kind in ("VirtualService", "DestinationRule")


def _fold_map(live: dict, stored: dict, scripted: Optional[dict]) -> dict:
    """Labels or annotations: the live map, except keys the script set (``scripted`` differs from
    ``stored`` there) that still hold the script's value: those go back to the stored value."""
    result = dict(live)
    if scripted is None:
        return result
    for key in set(scripted) | set(stored):
        if scripted.get(key) != stored.get(key) and live.get(key) == scripted.get(key):
            if key in stored:
                result[key] = stored[key]
            else:
                result.pop(key, None)
    return result


def fold_original(live: dict, stored: Optional[OriginalState], stable: str, canary: str,
                  scripted: Optional[OriginalState] = None) -> OriginalState:
    """The original to keep for ``live``: other writers' changes folded in, graylane's own parts replaced by
    the stored original's (``stored``; None when no annotation is there). ``scripted`` is what the script
    made of ``stored`` (for labels and annotations the script sets); without it the live maps are kept.

    Kinds graylane cannot read (``knows``) keep the stored original as it is (or the live object)."""
    metadata = live.get("metadata") or {}
    live_annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if k != ORIGINAL_ANNOTATION}
    live_labels = dict(metadata.get("labels") or {})
    kind = live.get("kind", "")
    if not knows(kind):
        return stored if stored is not None else OriginalState(copy.deepcopy(live.get("spec")), live_labels,
                                                               live_annotations)
    base = stored or OriginalState(None, {}, {})
    spec = _fold_spec(kind, live.get("spec"), base.spec, stable, canary, metadata.get("namespace"))
    labels = _fold_map(live_labels, base.labels, scripted.labels if scripted and stored else None)
    annotations = _fold_map(live_annotations, base.annotations,
                            {k: v for k, v in scripted.annotations.items() if k != ORIGINAL_ANNOTATION}
                            if scripted and stored else None)
    return OriginalState(spec, labels, annotations)
