"""Kubernetes manifests as documents that remember where they came from (for error messages)."""
from __future__ import annotations

import json
import re
from typing import Any, Iterable, Optional

import yaml

try:
    from yaml.cyaml import CParser as _CParser
    _HAVE_LIBYAML = True
except ImportError:  # PyYAML built without libyaml: the pure-Python loader reads everything
    _HAVE_LIBYAML = False

    class _CParser:  # type: ignore[no-redef]
        """Stand-in base for _FastLoader, which is never used then."""

from engine.errors import InvalidInputError
from engine.records import Record


# Limits that keep hostile input from costing more than a clear error (issue 11). Kubernetes objects are
# far below all of them; a YAML alias bomb ("billion laughs") or a pathological nesting is not.
MAX_DEPTH = 300            # nesting levels of a value (Kruise handles 250; Python's own recursion caps us)
MAX_VALUES = 1_000_000     # values in one document once aliases are expanded
MAX_INPUT_BYTES = 32 * 1024 * 1024  # one file or stdin
INT64 = (-2 ** 63, 2 ** 63 - 1)
_SURROGATE = re.compile("[\ud800-\udfff]")


class _InputProblem(yaml.MarkedYAMLError):
    """A YAML stream that parses but is not a valid Kubernetes input (with the line it is on)."""

    def __init__(self, problem: str, mark: Any):
        super().__init__(problem=problem, problem_mark=mark)


class _Constructor(yaml.constructor.SafeConstructor):
    """SafeConstructor that keeps timestamps as strings (as the Kubernetes API does), refuses duplicate keys
    and values JSON cannot carry (non-finite floats, integers beyond 64 bits, binary, ordered pairs)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            first = seen.setdefault(key, key_node)
            if first is not key_node:
                raise _InputProblem(f"key {str(key)!r} is given twice (first on line {first.start_mark.line + 1})",
                                    key_node.start_mark)
        return super().construct_mapping(node, deep)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        value = super().construct_yaml_float(node)
        if value != value or value in (float("inf"), float("-inf")):
            raise _InputProblem(f"{node.value!r} is not a finite number (JSON and Kubernetes have no NaN or "
                                "infinity)", node.start_mark)
        return value

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        value = super().construct_yaml_int(node)
        if not INT64[0] <= value <= INT64[1]:
            raise _InputProblem(f"integer {node.value} does not fit in 64 bits", node.start_mark)
        return value

    def construct_yaml_str(self, node: yaml.ScalarNode) -> str:
        value = super().construct_yaml_str(node)
        if _SURROGATE.search(value):  # "\ud800" escapes: U+FFFD, as Go's decoders read them
            value = _SURROGATE.sub("\ufffd", value.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))
        return value

    def refuse(self, node: yaml.Node) -> Any:
        raise _InputProblem(f"{node.tag} values are not supported in Kubernetes objects", node.start_mark)


_Constructor.add_constructor("tag:yaml.org,2002:str", _Constructor.construct_yaml_str)
_Constructor.add_constructor("tag:yaml.org,2002:float", _Constructor.construct_yaml_float)
_Constructor.add_constructor("tag:yaml.org,2002:int", _Constructor.construct_yaml_int)
for _tag in ("binary", "omap", "pairs", "set"):
    _Constructor.add_constructor(f"tag:yaml.org,2002:{_tag}", _Constructor.refuse)


class _Resolver(yaml.resolver.Resolver):
    """YAML 1.1's implicit types without timestamps."""


_Resolver.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
}


class _Loader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer,
              _Constructor, _Resolver):
    """PyYAML's pure-Python loader with the rules above, refusing nesting deeper than MAX_DEPTH while it scans
    and composes. It is the reference: every error message comes from it."""

    def __init__(self, stream: str):
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _Constructor.__init__(self)
        _Resolver.__init__(self)
        self._depth = 0

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # Stop "[[[[..." while scanning: PyYAML's scanner looks ahead up to 1,024 characters of possible
        # keys at a cost that grows with the nesting, seconds before the composer would see the depth.
        if self.flow_level >= MAX_DEPTH:
            raise _InputProblem(f"nested more than {MAX_DEPTH} levels deep", self.get_mark())
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _InputProblem(f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _FastLoader(_CParser, _Constructor, _Resolver):  # type: ignore[misc, valid-type]
    """libyaml's scanner, parser and composer (about 7 times faster than _Loader) with the same constructor and
    resolver. It only serves input that passes: on any problem load_stream reads the input again with _Loader,
    which accepts or refuses it with its own message, so the outcome is _Loader's. Depth needs no hook here:
    libyaml refuses more than 1,000 levels itself, the constructor builds nested values without recursion,
    and check_size then refuses more than MAX_DEPTH on any path (never fewer levels than written)."""

    def __init__(self, stream: str):
        _CParser.__init__(self, stream)
        _Constructor.__init__(self)
        _Resolver.__init__(self)


def _libyaml_limits_nesting() -> bool:
    """libyaml composes recursively in C; only a libyaml that refuses deep nesting itself (1,000 levels: 0.2.6,
    bundled with PyYAML 6.0.4; 0.2.5 does not) is safe against "[[[[..." of any depth. Asked, not looked up
    by version, so a libyaml built another way is judged by what it does."""
    if not _HAVE_LIBYAML:
        return False
    try:
        yaml.load("[" * 1001 + "]" * 1001, Loader=yaml.CSafeLoader)
    except yaml.YAMLError:
        return True
    return False


_FAST = _libyaml_limits_nesting()
# Where libyaml and PyYAML's pure loader part ways (found by differential fuzzing), the pure loader reads
# alone: tabs (libyaml allows some that PyYAML refuses), explicit tags ("!" alone resolves differently), a
# comment right after a block scalar's header (libyaml allows it), a byte order mark after the start (libyaml
# drops it).
_PURE_ONLY = re.compile(r"\t|!|[|>][-+0-9]*#|(?<!^)\ufeff")


def _libyaml_reads(text: str) -> bool:
    return _FAST and not _PURE_ONLY.search(text)


class _Dumper(yaml.SafeDumper):
    """Block-style YAML like kubectl's: keys in their given order, multi-line strings as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)


class Document(Record):
    """One YAML document: its body, the file it came from and its 1-based index in that file."""

    __slots__ = ("body", "source", "index")

    def __init__(self, body: dict, source: str, index: int):
        self.body, self.source, self.index = body, source, index

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


class DocumentIndex:
    """Documents by group, kind and name, for looking up what references name: a scan of every document per
    reference made render and validate quadratic in the size of a mesh (render: 306 ms for 40 references among
    5,021 documents)."""

    def __init__(self, documents: list[Document]):
        self.documents = documents
        self._by_name: dict[tuple[str, str, str], list[Document]] = {}
        for document in documents:
            self._by_name.setdefault((document.group, document.kind, document.name), []).append(document)

    def matching(self, api_version: str, kind: str, name: str, namespace: Optional[str]) -> list[Document]:
        """The documents a reference points at, in input order: same group, kind and name, and namespace when both
        say one."""
        group = api_version.split("/", 1)[0] if "/" in api_version else ""
        return [d for d in self._by_name.get((group, kind, name), ())
                if namespace is None or d.namespace is None or d.namespace == namespace]

    def names(self, kind: str) -> list[str]:
        """The names of the documents of ``kind``, for a did-you-mean."""
        return [d.name for d in self.documents if d.kind == kind]


def parse_documents(text: str, source: str) -> list[Document]:
    """Parse a multi-document YAML (or JSON) stream; empty documents are skipped, lists are expanded."""
    documents: list[Document] = []
    for index, body in enumerate(load_stream(text, source), 1):
        if body is None:
            continue
        if not isinstance(body, dict):
            raise InvalidInputError(f"expected a Kubernetes object (a map), got {_kind_of(body)}",
                                    source=source, document=index)
        if body.get("kind") == "List" and isinstance(body.get("items"), list):
            for position, item in enumerate(body["items"]):
                if not isinstance(item, dict):
                    raise InvalidInputError("List items must be objects", source=source, document=index,
                                            field=f"items[{position}]")
                check_metadata(item, source, index, f"items[{position}].")
                documents.append(Document(item, source, index))
            continue
        for field in ("apiVersion", "kind"):
            if not isinstance(body.get(field), str) or not body.get(field):
                raise InvalidInputError("is required (a non-empty string)", source=source, document=index,
                                        field=field)
        check_metadata(body, source, index)
        documents.append(Document(body, source, index))
    return documents


def check_metadata(body: dict, source: str, index: int, prefix: str = "") -> None:
    """ObjectMeta as the API server requires it of every kind, so no reader meets a wrong type there:
    a map; name, namespace and generateName strings; labels and annotations maps of strings."""
    metadata = body.get("metadata")
    if metadata is None:
        return

    def fail(message: str, field: str) -> InvalidInputError:
        return InvalidInputError(message, source=source, document=index, field=f"{prefix}metadata{field}")

    if not isinstance(metadata, dict):
        raise fail(f"must be a map, got {_kind_of(metadata)}", "")
    for field in ("name", "namespace", "generateName", "resourceVersion", "uid"):
        if metadata.get(field) is not None and not isinstance(metadata[field], str):
            raise fail(f"must be a string, got {_kind_of(metadata[field])}", f".{field}")
    for field in ("labels", "annotations"):
        value = metadata.get(field)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise fail(f"must be a map of strings, got {_kind_of(value)}", f".{field}")
        for key, item in value.items():
            if not isinstance(key, str) or not isinstance(item, str):
                raise fail(f"must be a string (quote it), got {_kind_of(item if isinstance(key, str) else key)}",
                           f".{field}[{key}]")


def load_stream(text: str, source: str) -> list[Any]:
    """Every document of a YAML stream as plain data, each checked against the limits above."""
    if len(text) > MAX_INPUT_BYTES:
        raise InvalidInputError(f"larger than {MAX_INPUT_BYTES // 1024 ** 2} MiB", source=source)
    if _libyaml_reads(text):
        try:
            return _read(_FastLoader, text, source)
        except Exception:  # noqa: BLE001 - whatever libyaml or a rule objects to, _Loader decides and says
            pass
    try:
        return _read(_Loader, text, source)
    except yaml.YAMLError as exc:
        raise InvalidInputError(_yaml_problem(exc), source=source, document=exc.document) from None


def _read(loader_class: type, text: str, source: str) -> list[Any]:
    values: list[Any] = []
    loader = None
    try:
        loader = loader_class(text)  # the reader already refuses some characters here
        while loader.check_data():
            value = loader.get_data()
            values.append(value)
            check_size(value, source, len(values))
    except yaml.YAMLError as exc:
        exc.document = len(values) + 1
        raise
    finally:
        if loader is not None:
            loader.dispose()
    return values


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    if isinstance(exc, _InputProblem):
        return f"line {mark.line + 1}: {problem}" if mark else problem
    return f"not valid YAML{where}: {problem}"


def check_size(value: Any, source: str, document: Optional[int] = None) -> None:
    """Refuse values nested deeper than MAX_DEPTH or holding more than MAX_VALUES values once shared
    references (YAML aliases) are expanded, before anything walks them."""
    sizes: dict[int, int] = {}

    def size(node: Any, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise InvalidInputError(f"nested more than {MAX_DEPTH} levels deep (through YAML aliases?)",
                                    source=source, document=document)
        if isinstance(node, dict):
            children: Iterable[Any] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            return 1
        known = sizes.get(id(node))
        if known is None:
            known = 1
            for child in children:
                known += size(child, depth + 1)
                if known > MAX_VALUES:
                    raise InvalidInputError(f"holds more than {MAX_VALUES:,} values once YAML aliases are "
                                            "expanded (an alias bomb?)", source=source, document=document)
            sizes[id(node)] = known
        return known

    size(value, 1)


def _kind_of(value: Any) -> str:
    return {list: "a list", dict: "a map", str: "a string", int: "a number", float: "a number",
            bool: "a boolean", type(None): "null"}.get(type(value), type(value).__name__)


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
        return json.dumps(objects[0], indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2,
                      ensure_ascii=False, allow_nan=False) + "\n"


def load_yaml_text(text: str, source: str) -> Any:
    """One plain YAML value (not a manifest stream), with a located error."""
    values = load_stream(text, source)
    if len(values) > 1:
        raise InvalidInputError("expected one YAML document, found several", source=source)
    return values[0] if values else None


def load_json_text(text: str, source: str, field: Optional[str] = None, document: Optional[int] = None) -> Any:
    """JSON as Kubernetes reads it: no NaN or infinity, limits as for YAML, a located error."""
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not valid JSON")

    try:
        value = json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(f"not valid JSON: {exc}", source=source, document=document, field=field) from None
    check_size(value, source, document)
    return value
