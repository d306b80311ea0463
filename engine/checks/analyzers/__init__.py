"""Semantic analyzers, each finding with a stable code (as istioctl analyze): ``analyze(documents)``.

``common`` holds the finding type, the code table and shared helpers; ``istio`` checks VirtualServices and
DestinationRules, ``lanes`` lane rules that catch other services' requests, ``lane_matches`` lane matches the
built-in script cannot scope, ``routing`` TrafficRoutings and Rollouts, ``argo`` Argo Rollouts; ``rendered`` what
render refuses because requests would fail; ``admission``
Istio's admission-webhook rules for the fields graylane reads and writes, ``mesh`` the cross-object checks of
``istioctl analyze`` (gateways, hosts, ports, pods, EnvoyFilters). They import ``common`` (and the ones below
them), never this package. Importing the package loads only ``common``: ``render`` needs a few analyzers
for its output check, not all of them (start-up time, issue 12).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from engine.checks.analyzers.common import (CODES, ERROR, WARNING, Code, Finding, describe, duplicate_objects,
                                            finding, object_size, path_of)
from engine.documents import Document

if TYPE_CHECKING:
    from engine.checks.analyzers.lanes import Canaries

__all__ = ["CODES", "ERROR", "WARNING", "Code", "Finding", "analyze", "analyze_object", "describe", "finding",
           "path_of"]


def analyze_object(document: Document, canaries: Optional[Canaries] = None) -> list[Finding]:
    """The analyzers that judge one object on its own (no references to other objects, but for the canary
    Services releases name, ``canaries``): what graylane checks on every object it generates before printing it."""
    from engine.checks.analyzers import admission, istio, lanes, mesh, routing

    return [*istio.analyze_document(document), *lanes.lane_leaks(document, canaries),
            *routing.analyze_document(document),
            *admission.analyze_document(document), *mesh.envoy_filter_patches(document), *object_size(document)]


def analyze(documents: list[Document]) -> list[Finding]:
    """Every analyzer over ``documents`` (single-object and cross-object checks)."""
    from engine.checks.analyzers import admission, argo, istio, lane_matches, lanes, mesh, routing

    findings = duplicate_objects(documents)
    canaries = lanes.release_canaries(documents)
    for document in documents:
        findings.extend(analyze_object(document, canaries))
    findings.extend(istio.analyze_subsets(documents))
    findings.extend(routing.analyze_references(documents))
    findings.extend(mesh.analyze(documents))
    findings.extend(admission.authority_conflicts(documents))
    findings.extend(argo.analyze_references(documents))
    findings.extend(lane_matches.inexpressible_lanes(documents))
    return findings
