"""Kubernetes manifests as documents that remember where they came from (for error messages)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Optional

import yaml

from engine.errors import InvalidInputError


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings, as the Kubernetes API does."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _Dumper(yaml.SafeDumper):
    """Block-style YAML like kubectl's: keys in their given order, multi-line strings as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)


@dataclass
class Document:
    """One YAML document: its body, the file it came from and its 1-based index in that file."""

    body: dict
    source: str
    index: int

    @property
    def api_version(self) -> str:
        return str(self.body.get("apiVersion", ""))

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def group(self) -> str:
        return self.api_version.split("/", 1)[0] if "/" in self.api_version else ""

    @property
    def metadata(self) -> dict:
        metadata = self.body.get("metadata")
        return metadata if isinstance(metadata, dict) else {}

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> Optional[str]:
        namespace = self.metadata.get("namespace")
        return str(namespace) if namespace else None

    def error(self, message: str, field: Optional[str] = None) -> InvalidInputError:
        return InvalidInputError(message, source=self.source, document=self.index, field=field)

    def describe(self) -> str:
        return f"{self.kind}/{self.name}"


def parse_documents(text: str, source: str) -> list[Document]:
    """Parse a multi-document YAML (or JSON) stream; empty documents are skipped, lists are expanded."""
    try:
        raw = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInputError(f"not valid YAML{where}: {problem}", source=source) from None
    documents: list[Document] = []
    for index, body in enumerate(raw, 1):
        if body is None:
            continue
        if not isinstance(body, dict):
            raise InvalidInputError(f"expected a Kubernetes object (a map), got {type(body).__name__}",
                                    source=source, document=index)
        if body.get("kind") == "List" and isinstance(body.get("items"), list):
            for item in body["items"]:
                if not isinstance(item, dict):
                    raise InvalidInputError("List items must be objects", source=source, document=index,
                                            field="items")
                documents.append(Document(item, source, index))
            continue
        for field in ("apiVersion", "kind"):
            if not isinstance(body.get(field), str) or not body.get(field):
                raise InvalidInputError("is required", source=source, document=index, field=field)
        documents.append(Document(body, source, index))
    return documents


# Kinds that live outside namespaces: -n never gives them one.
CLUSTER_SCOPED_KINDS = {"Namespace", "Node", "PersistentVolume", "StorageClass", "CustomResourceDefinition",
                        "ClusterRole", "ClusterRoleBinding", "PriorityClass", "IngressClass", "APIService",
                        "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
                        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}


def default_namespace(documents: list[Document], namespace: str) -> None:
    """Give every namespaced document without ``metadata.namespace`` this one (kubectl's ``-n``), placed right
    after ``metadata.name`` so output keeps a natural key order."""
    for document in documents:
        if document.namespace or document.kind in CLUSTER_SCOPED_KINDS:
            continue
        metadata = document.metadata
        updated: dict = {}
        for key, value in metadata.items():
            if key != "namespace":
                updated[key] = value
            if key == "name":
                updated["namespace"] = namespace
        updated.setdefault("namespace", namespace)
        document.body["metadata"] = updated


def dump_yaml(objects: Iterable[Any]) -> str:
    """A YAML stream (``---`` between documents), ready for ``kubectl apply -f -``."""
    return "---\n".join(yaml.dump(obj, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                                  default_flow_style=False, width=120) for obj in objects)


def dump_json(objects: list[Any]) -> str:
    """One object as itself, several as a ``kind: List`` (what ``kubectl get -o json`` prints)."""
    if len(objects) == 1:
        return json.dumps(objects[0], indent=2, ensure_ascii=False) + "\n"
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2,
                      ensure_ascii=False) + "\n"


def load_yaml_text(text: str, source: str) -> Any:
    """One plain YAML value (not a manifest stream), with a located error."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"not valid YAML: {exc}", source=source) from None
