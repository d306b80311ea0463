"""Semantic analyzers, each finding with a stable code (as istioctl analyze): ``analyze(documents)``.

``common`` holds the finding type, the code table and shared helpers; ``istio`` checks VirtualServices and
DestinationRules, ``lanes`` lane rules that catch other services' requests, ``routing`` TrafficRoutings and
Rollouts, ``argo`` Argo Rollouts; ``rendered`` what render refuses because requests would fail; ``admission``
Istio's admission-webhook rules for the fields graylane reads and writes, ``mesh`` the cross-object checks of
``istioctl analyze`` (gateways, hosts, ports, pods, EnvoyFilters). They import ``common`` (and the ones below
them), never this package. Importing the package loads only ``common``: ``render`` needs a few analyzers
for its output check, not all of them (start-up time, issue 12).
"""
from __future__ import annotations

from engine.checks.analyzers.common import (CODES, ERROR, WARNING, Code, Finding, describe, duplicate_objects,
                                            finding, path_of)
from engine.documents import Document

__all__ = ["CODES", "ERROR", "WARNING", "Code", "Finding", "analyze", "describe", "finding", "path_of"]


def analyze(documents: list[Document]) -> list[Finding]:
    """Every analyzer over ``documents`` (single-object and cross-object checks)."""
    from engine.checks.analyzers import admission, argo, istio, lanes, mesh, routing

    findings = duplicate_objects(documents)
    for document in documents:
        findings.extend(istio.analyze_document(document))
        findings.extend(lanes.lane_leaks(document))
        findings.extend(routing.analyze_document(document))
        findings.extend(admission.analyze_document(document))
    findings.extend(istio.analyze_subsets(documents))
    findings.extend(routing.analyze_references(documents))
    findings.extend(mesh.analyze(documents))
    findings.extend(admission.authority_conflicts(documents))
    findings.extend(argo.analyze_references(documents))
    return findings
