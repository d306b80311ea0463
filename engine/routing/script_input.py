"""The one place that builds the ``obj`` a script sees (render, apply, the controller and the harness).

Mirrors Kruise's LuaData: ``obj.data.{spec,labels,annotations}``, ``canaryWeight`` (-1 when unset),
``stableWeight`` (100 - canaryWeight, so 101 when unset), ``matches``, ``canaryService``,
``stableService``, ``requestHeaderModifier``. Empty optional fields are left out (nil in Lua), as Go's
``omitempty`` does, because Kruise scripts test them with ``if obj.matches then``.

Argo Rollouts add one field, ``obj.argo`` (see :func:`build_argo_script_input`); scripts that do not read it
see a Kruise-shaped ``obj`` and keep working.
"""
from __future__ import annotations

import json
from typing import Any, Optional

from engine.documents import check_size
from engine.errors import InvalidInputError
from engine.records import Record
from engine.routing.strategy import TrafficStrategy

ORIGINAL_ANNOTATION = "rollouts.kruise.io/original-spec-configuration"


class OriginalState(Record):
    """What Kruise stores in the original-spec annotation."""

    __slots__ = ("spec", "labels", "annotations")

    def __init__(self, spec: Any, labels: dict, annotations: dict):
        self.spec, self.labels, self.annotations = spec, labels, annotations

    def to_data(self) -> dict:
        data: dict = {"spec": self.spec}
        if self.labels:
            data["labels"] = self.labels
        if self.annotations:
            data["annotations"] = self.annotations
        return data


def build_script_input(original: OriginalState, strategy: TrafficStrategy, stable_service: str,
                       canary_service: str, namespace: Optional[str] = None) -> dict:
    """``obj`` for a custom network resource script (``<group>/<Kind>/trafficRouting.lua``). ``namespace``, the
    object's (and so the services'), is graylane's addition to Kruise's ``obj``: with it the built-in script tells
    ``reviews.<namespace>.svc.cluster.local`` from another namespace's Service of that name, as Istio does."""
    canary_weight = -1 if strategy.weight is None else strategy.weight
    obj: dict = {
        "data": original.to_data(),
        "canaryWeight": canary_weight,
        "stableWeight": 100 - canary_weight,
        "canaryService": canary_service,
        "stableService": stable_service,
    }
    if namespace:
        obj["namespace"] = namespace
    return _with_routing_fields(obj, strategy)


def build_argo_script_input(original: OriginalState, weight: int, stable_service: str, canary_service: str,
                            argo: dict) -> dict:
    """``obj`` for one step of an Argo Rollout: the Kruise fields (``canaryWeight`` is the weight in effect)
    plus ``obj.argo``, the Argo contract (README, "Argo Rollouts"): ``rollout``, ``step``, ``weight``,
    ``canaryService``/``stableService`` (Argo's, "" when not set), ``canaryHost`` (where header and mirror
    routes send requests), ``virtualService`` (this object's entry: name, routes, tlsRoutes, tcpRoutes),
    ``destinationRule`` (name, host, canarySubsetName, stableSubsetName), ``managedRoutes`` (names),
    ``setHeaderRoute``/``setMirrorRoute`` (this step's, as written) and ``canaryHash``/``stableHash``."""
    return {
        "data": original.to_data(),
        "canaryWeight": weight,
        "stableWeight": 100 - weight,
        "canaryService": canary_service,
        "stableService": stable_service,
        "argo": {key: value for key, value in argo.items() if value is not None},
    }


def _with_routing_fields(obj: dict, strategy: TrafficStrategy) -> dict:
    if strategy.matches:
        obj["matches"] = strategy.matches
    if strategy.request_header_modifier is not None:  # {} too: Kruise's pointer field passes an empty table
        obj["requestHeaderModifier"] = strategy.request_header_modifier
    return obj


def build_ingress_input(annotations: dict, strategy: TrafficStrategy, canary_service: str) -> dict:
    """``obj`` for an ingress-annotation script (``trafficrouting_ingress/<classType>.lua``): Kruise's ingress
    LuaData, which has no stableService."""
    obj: dict = {
        "annotations": dict(annotations),
        "weight": "-1" if strategy.weight is None else str(strategy.weight),
        "canaryService": canary_service,
    }
    return _with_routing_fields(obj, strategy)


def original_of(body: dict) -> tuple[OriginalState, bool]:
    """The object's original state: from the annotation if stored (True), else as it is now (False).

    Raises ValueError when the annotation is present but not Kruise's JSON.
    """
    metadata = body.get("metadata") or {}
    annotations = dict(metadata.get("annotations") or {})
    stored = annotations.pop(ORIGINAL_ANNOTATION, None)
    if stored is None:
        return OriginalState(body.get("spec"), dict(metadata.get("labels") or {}), annotations), False
    try:
        data = json.loads(stored, parse_constant=_not_json)
        check_size(data, ORIGINAL_ANNOTATION)
    except (TypeError, ValueError, RecursionError, InvalidInputError) as exc:
        message = exc.message if isinstance(exc, InvalidInputError) else exc
        raise ValueError(f"annotation {ORIGINAL_ANNOTATION} is not valid JSON: {message}") from None
    if not isinstance(data, dict) or not isinstance(data.get("labels") or {}, dict) \
            or not isinstance(data.get("annotations") or {}, dict):
        raise ValueError(f"annotation {ORIGINAL_ANNOTATION} must be a JSON object with spec, labels, annotations")
    return OriginalState(data.get("spec"), dict(data.get("labels") or {}), dict(data.get("annotations") or {})), True


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")  # Python's json reads NaN and Infinity; Kubernetes does not


def encode_original(original: OriginalState) -> str:
    """The annotation value: Kruise's ``Data`` JSON (spec, labels, annotations; empty maps left out), compact
    and with the object's own key order, so a restore gives back the object exactly as it was written."""
    return json.dumps(original.to_data(), separators=(",", ":"), ensure_ascii=False)


def apply_result(body: dict, spec: Any, labels: Optional[dict], annotations: Optional[dict],
                 stored_original: str) -> dict:
    """A copy of ``body`` with the script's spec/labels/annotations and the stored original."""
    result = dict(body)
    metadata = dict(body.get("metadata") or {})
    new_annotations = dict(annotations or {})
    new_annotations[ORIGINAL_ANNOTATION] = stored_original
    if labels:
        metadata["labels"] = dict(labels)
    else:
        metadata.pop("labels", None)
    metadata["annotations"] = new_annotations
    result["metadata"] = metadata
    result["spec"] = spec
    return result


def restore_body(body: dict, original: OriginalState) -> dict:
    """A copy of ``body`` with the original spec/labels/annotations and no stored-original annotation."""
    result = dict(body)
    metadata = dict(body.get("metadata") or {})
    if original.labels:
        metadata["labels"] = dict(original.labels)
    else:
        metadata.pop("labels", None)
    if original.annotations:
        metadata["annotations"] = dict(original.annotations)
    else:
        metadata.pop("annotations", None)
    result["metadata"] = metadata
    result["spec"] = original.spec
    return result
