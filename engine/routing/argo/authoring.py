"""``graylane new argo-rollout``: an argoproj.io/v1alpha1 Rollout with Istio traffic routing, from flags."""
from __future__ import annotations

from typing import Optional

from engine.errors import InvalidInputError
from engine.routing.authoring import _metadata, name_value, object_name, parse_percentages

HEADER_ROUTE = "canary-by-header"


def argo_rollout(name: str, workload: str, virtual_services: list[str], routes: list[str], steps: str,
                 canary_service: Optional[str], stable_service: Optional[str], destination_rule: Optional[str],
                 subsets: tuple[str, str], header: Optional[str], pause_seconds: Optional[int],
                 namespace: Optional[str]) -> dict:
    """One ``setWeight`` per percentage with a pause after each but the last; with ``header`` (NAME=VALUE) a
    managed header route to the canary first, removed before the last step."""
    object_name(name, "NAME")
    if not virtual_services:
        raise InvalidInputError("--virtual-service is required (NAME or NAME.NAMESPACE, repeatable)")
    if destination_rule is None and not (canary_service and stable_service):
        raise InvalidInputError("give --canary-service and --stable-service (host-level split) or "
                                "--destination-rule (subset-level split)")
    if pause_seconds is not None and pause_seconds < 0:
        raise InvalidInputError("--pause must be a number of seconds, at least 0")
    weights = [int(p.rstrip("%")) for p in parse_percentages(steps, "--steps")]
    kind, _, workload_name = workload.partition("/")
    if kind != "Deployment" or not workload_name:
        raise InvalidInputError(f"--workload {workload}: use Deployment/NAME (Argo's workloadRef)")
    entries = []
    for vs in virtual_services:
        entry: dict = {"name": vs}
        if routes:
            entry["routes"] = list(routes)
        entries.append(entry)
    istio: dict = {"virtualService": entries[0]} if len(entries) == 1 else {"virtualServices": entries}
    if destination_rule:
        istio["destinationRule"] = {"name": destination_rule, "canarySubsetName": subsets[0],
                                    "stableSubsetName": subsets[1]}
    routing: dict = {"istio": istio}
    result_steps: list[dict] = []
    if header:
        header_name, value = name_value(header, "--header-route")
        routing["managedRoutes"] = [{"name": HEADER_ROUTE}]
        result_steps.append({"setHeaderRoute": {"name": HEADER_ROUTE, "match": [
            {"headerName": header_name, "headerValue": {"exact": value}}]}})
    pause = {} if pause_seconds is None else {"duration": f"{pause_seconds}s"}
    for index, weight in enumerate(weights):
        if header and index == len(weights) - 1:
            result_steps.append({"setHeaderRoute": {"name": HEADER_ROUTE}})
        result_steps.append({"setWeight": weight})
        if index < len(weights) - 1:
            result_steps.append({"pause": dict(pause)})
    canary: dict = {}
    if canary_service:
        canary["canaryService"] = canary_service
    if stable_service:
        canary["stableService"] = stable_service
    canary["trafficRouting"] = routing
    canary["steps"] = result_steps
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": _metadata(name, namespace),
            "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload_name},
                     "strategy": {"canary": canary}}}
