"""Pods as the inputs describe them: workloads' pod templates, and the canary pods Kruise Rollouts would add.

Shared by the render checks (does a subset select any pod?) and the simulator (which pods serve a request).
Pure: documents in, :class:`Workload` values out.
"""
from __future__ import annotations

from typing import Any, Optional

from engine.documents import Document
from engine.records import Record

#: (group, kind) of the objects whose pods graylane reads from their pod template (``Pod``: its own labels).
#: ``extensions`` and ``apps`` cover the old API versions (``extensions/v1beta1``, ``apps/v1beta1``/``v1beta2``).
WORKLOAD_KINDS = {
    ("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "DaemonSet"), ("apps", "ReplicaSet"),
    ("extensions", "Deployment"), ("extensions", "DaemonSet"), ("extensions", "ReplicaSet"),
    ("", "ReplicationController"), ("apps.kruise.io", "CloneSet"), ("apps.kruise.io", "StatefulSet"),
    ("apps.kruise.io", "DaemonSet"), ("argoproj.io", "Rollout"), ("", "Pod"),
}
KRUISE = "rollouts.kruise.io"


class Workload(Record):
    """Pods of one workload: their labels and how many run (``synthetic``: pods a Rollout would create)."""

    __slots__ = ("kind", "name", "namespace", "labels", "replicas", "document", "synthetic")

    def __init__(self, kind: str, name: str, namespace: str, labels: dict, replicas: int,
                 document: Optional[Document] = None, synthetic: Optional[str] = None):
        self.kind, self.name, self.namespace, self.labels, self.replicas = kind, name, namespace, labels, replicas
        self.document, self.synthetic = document, synthetic

    def describe(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def labels_of(value: Any) -> dict:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def is_workload(document: Document) -> bool:
    return (document.group, document.kind) in WORKLOAD_KINDS


def looks_like_workload(document: Document) -> bool:
    """An object of another kind with a pod template (a workload graylane does not know how to read)."""
    template = (document.body.get("spec") or {}).get("template") if isinstance(document.body.get("spec"), dict) \
        else None
    return not is_workload(document) and isinstance(template, dict) and isinstance(template.get("metadata"), dict)


def workload_of(document: Document, namespace: str) -> Workload:
    spec = document.body.get("spec") or {}
    if document.kind == "Pod":
        labels, replicas = labels_of(document.metadata.get("labels")), 1
    else:
        labels = labels_of(((spec.get("template") or {}).get("metadata") or {}).get("labels"))
        replicas = spec.get("replicas", 1)
        if document.kind == "DaemonSet" or not isinstance(replicas, int) or isinstance(replicas, bool):
            replicas = 1
    return Workload(document.kind, document.name, namespace, labels, replicas, document)


def workloads_of(documents: list[Document], default_namespace: str = "default") -> list[Workload]:
    return [workload_of(d, d.namespace or default_namespace) for d in documents if is_workload(d)]


def rollout_canary_workloads(documents: list[Document], workloads: list[Workload],
                             default_namespace: str = "default") -> list[Workload]:
    """The canary pods of Kruise Rollouts with patchPodTemplateMetadata (their workload's template plus those
    labels, one replica), as extra workloads."""
    extra = []
    for document in documents:
        if document.group != KRUISE or document.kind != "Rollout":
            continue
        spec = document.body.get("spec") or {}
        ref = spec.get("workloadRef") or (spec.get("objectRef") or {}).get("workloadRef") or {}
        canary = ((spec.get("strategy") or {}).get("canary") or {})
        labels = labels_of((canary.get("patchPodTemplateMetadata") or {}).get("labels"))
        namespace = document.namespace or default_namespace
        base = next((w for w in workloads if w.kind == ref.get("kind") and w.name == ref.get("name")
                     and w.namespace == namespace), None)
        if base is None or not labels:
            continue
        extra.append(Workload(base.kind, f"{base.name}-canary", namespace, {**base.labels, **labels}, 1, None,
                              f"canary pods of Rollout {namespace}/{document.name}"))
    return extra
