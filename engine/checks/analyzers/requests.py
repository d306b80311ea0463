"""Example requests for the analyzers: how Istio matches one request against a VirtualService's http rules,
and requests built to satisfy given match blocks (for "is there a request that ...?" questions).

Istio's semantics, as its translation to Envoy routes has them: rules in order, the first whose match holds wins
(no match: every request); the blocks of ``match`` are alternatives and the conditions of a block must all hold;
a block exists only on the port it names and at the gateways it names (then ``sourceLabels`` are not looked at);
``uri`` is the path without the query, ``ignoreUriCase`` folds case for exact and prefix (not regex); regexes are
RE2 full matches; a header or query condition ``{}`` (or regex ``*``) asks for presence; ``withoutHeaders`` inverts
a condition and treats a missing header as the empty string. Pure.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional
from urllib.parse import quote

from engine.checks.analyzers.common import as_list, as_map, re2_fullmatch
from engine.records import FrozenRecord

PROBE_PATH = "/graylane-probe"
PROBE_VALUE = "graylane-probe"


# ------------------------------------------------------------------------------------------- requests

class Probe(FrozenRecord):
    """An example request and where it is routed (a gateway ``ns/name`` or ``mesh``); ``headers``: ((name,
    value), ...), names lower-case."""

    __slots__ = ("method", "authority", "path", "scheme", "headers", "query", "port", "gateway", "source_labels",
                 "source_namespace")

    def __init__(self, method: str = "GET", authority: str = "example.com", path: str = PROBE_PATH,
                 scheme: str = "http", headers: tuple = (), query: tuple = (), port: Optional[int] = None,
                 gateway: str = "mesh", source_labels: tuple = (), source_namespace: Optional[str] = None):
        self._freeze(method, authority, path, scheme, headers, query, port, gateway, source_labels,
                     source_namespace)

    def header(self, name: str) -> Optional[str]:
        return dict(self.headers).get(name.lower())

    def describe(self, show_gateway: bool = False) -> str:
        query = "&".join(f"{quote(k)}={quote(v)}" for k, v in self.query)
        text = f"{self.method} {self.authority}{self.path}" + (f"?{query}" if query else "")
        if self.headers:
            text += (" with header" + ("s " if len(self.headers) > 1 else " ")
                     + ", ".join(f"{name}: {value}" for name, value in self.headers))
        extras = []
        if self.port is not None:
            extras.append(f"port {self.port}")
        if show_gateway:
            extras.append("in the mesh" if self.gateway == "mesh" else f"at gateway {self.gateway}")
        if self.source_labels:
            extras.append("from pods " + ",".join(f"{k}={v}" for k, v in self.source_labels))
        return text + (f" ({', '.join(extras)})" if extras else "")


def _kind(condition: Any, presence_regex: bool = True) -> tuple[Optional[str], Optional[str]]:
    """("any"|"exact"|"prefix"|"regex", value) of an Istio StringMatch; (None, None) when unreadable."""
    condition = as_map(condition)
    if not condition:
        return "any", None
    if len(condition) != 1:
        return None, None
    (kind, value), = condition.items()
    if not isinstance(value, str) or kind not in ("exact", "prefix", "regex"):
        return None, None
    if kind == "regex" and value == "*" and presence_regex:
        return "any", None  # Istio turns regex "*" into a presence match
    return kind, value


def string_matches(condition: Any, value: Optional[str], ignore_case: bool = False,
                   presence_regex: bool = True) -> bool:
    """Istio StringMatch on a value (None: absent): exact, prefix, RE2 full match; ``{}`` means present."""
    if value is None:
        return False
    kind, expected = _kind(condition, presence_regex)
    if kind == "any":
        return True
    if kind is None or expected is None:
        return False
    if kind == "regex":
        return re2_fullmatch(expected, value)
    if ignore_case:
        value, expected = value.lower(), expected.lower()
    return value == expected if kind == "exact" else value.startswith(expected)


def gateway_key(name: Any, namespace: Optional[str]) -> str:
    text = str(name)
    if text == "mesh" or "/" in text:
        return text
    return f"{namespace or 'default'}/{text}"


def block_applies(block: dict, probe: Probe, namespace: Optional[str]) -> bool:
    """Where a match block exists at all (Istio builds no route elsewhere): port, gateways, source."""
    port = block.get("port")
    if port is not None and port != probe.port:
        return False
    gateways = as_list(block.get("gateways"))
    if gateways:  # Istio checks only the gateways then, not sourceLabels
        return probe.gateway in {gateway_key(g, namespace) for g in gateways}
    labels = dict(probe.source_labels)
    if any(labels.get(str(k)) != str(v) for k, v in as_map(block.get("sourceLabels")).items()):
        return False
    source_namespace = block.get("sourceNamespace")
    return not source_namespace or source_namespace == probe.source_namespace


def block_matches(block: dict, probe: Probe, namespace: Optional[str]) -> bool:
    """One HTTPMatchRequest against a request: every condition must hold (Envoy's semantics)."""
    if not block_applies(block, probe, namespace):
        return False
    path = probe.path
    if "uri" in block and not string_matches(block["uri"], path, bool(block.get("ignoreUriCase")), False):
        return False
    for field_name, value in (("method", probe.method), ("scheme", probe.scheme), ("authority", probe.authority)):
        if field_name in block and not string_matches(block[field_name], value):
            return False
    for name, condition in as_map(block.get("headers")).items():
        if not string_matches(condition, probe.header(str(name))):
            return False
    for name, condition in as_map(block.get("withoutHeaders")).items():
        value = probe.header(str(name))
        if _kind(condition)[0] == "any":
            if value is not None:
                return False
        elif string_matches(condition, "" if value is None else value):  # a missing header counts as ""
            return False
    query = dict(probe.query)
    for name, condition in as_map(block.get("queryParams")).items():
        if not string_matches(condition, query.get(str(name))):
            return False
    return True


def rule_blocks(rule: dict) -> list[dict]:
    """The match blocks of an http rule; one empty block (every request) when it has none."""
    blocks = [as_map(b) for b in as_list(rule.get("match"))]
    return blocks or [{}]


def rule_matches(rule: dict, probe: Probe, namespace: Optional[str]) -> bool:
    return any(block_matches(block, probe, namespace) for block in rule_blocks(rule))


# ------------------------------------------------------------------------------------ example requests

def _regex_examples(pattern: str) -> list[str]:
    """A few strings RE2 ``pattern`` fully matches (none when it is beyond this small generator)."""
    try:
        from re import _parser as parser  # type: ignore[attr-defined]  # Python >= 3.11
    except ImportError:  # pragma: no cover - Python 3.10
        import sre_parse as parser  # type: ignore[no-redef]
    try:
        parsed = parser.parse(pattern)
    except Exception:  # noqa: BLE001 - any syntax Python's parser does not know: no examples
        return []
    found = []
    for variant in (0, 1):
        text = _generate(list(parsed), variant)
        if text is not None and text not in found and re2_fullmatch(pattern, text):
            found.append(text)
    return found


_CATEGORY_CHARS = {"CATEGORY_DIGIT": "0", "CATEGORY_NOT_DIGIT": "a", "CATEGORY_SPACE": " ",
                   "CATEGORY_NOT_SPACE": "a", "CATEGORY_WORD": "a", "CATEGORY_NOT_WORD": "-"}
_CANDIDATE_CHARS = "a0-_/.xZ~"


def _in_class(char: str, items: list) -> bool:
    code = ord(char)
    for op, value in items:
        name = str(op)
        if name == "LITERAL" and value == code:
            return True
        if name == "RANGE" and value[0] <= code <= value[1]:
            return True
        if name == "CATEGORY" and _category_contains(str(value), char):
            return True
    return False


def _category_contains(category: str, char: str) -> bool:
    checks = {"CATEGORY_DIGIT": char.isdigit(), "CATEGORY_NOT_DIGIT": not char.isdigit(),
              "CATEGORY_SPACE": char.isspace(), "CATEGORY_NOT_SPACE": not char.isspace(),
              "CATEGORY_WORD": char.isalnum() or char == "_", "CATEGORY_NOT_WORD": not (char.isalnum() or char == "_")}
    return checks.get(category, False)


def _class_char(items: list, variant: int) -> Optional[str]:
    negated = bool(items) and str(items[0][0]) == "NEGATE"
    body = items[1:] if negated else items
    if negated:
        return next((c for c in _CANDIDATE_CHARS if not _in_class(c, body)), None)
    ordered = body if variant == 0 else list(reversed(body))
    for op, value in ordered:
        name = str(op)
        if name == "LITERAL":
            return chr(value)
        if name == "RANGE":
            return chr(value[0])
        if name == "CATEGORY" and str(value) in _CATEGORY_CHARS:
            return _CATEGORY_CHARS[str(value)]
    return None


def _generate(items: list, variant: int) -> Optional[str]:
    out = []
    for op, value in items:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(value))
        elif name == "NOT_LITERAL":
            out.append("a" if value != ord("a") else "b")
        elif name == "ANY":
            out.append("a")
        elif name == "IN":
            char = _class_char(value, variant)
            if char is None:
                return None
            out.append(char)
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = value
            count = low if variant == 0 else min(max(low, 1), high)
            part = _generate(list(sub), variant)
            if part is None:
                return None
            out.append(part * count)
        elif name in ("SUBPATTERN", "ATOMIC_GROUP"):
            part = _generate(list(value[-1]), variant)
            if part is None:
                return None
            out.append(part)
        elif name == "BRANCH":
            branches = value[1]
            part = _generate(list(branches[0 if variant == 0 else -1]), variant)
            if part is None:
                return None
            out.append(part)
        elif name == "AT":
            continue
        else:  # backreferences, lookarounds, conditionals: not RE2 anyway
            return None
    return "".join(out)


def _candidates(condition: Any, default: str, presence_regex: bool = True) -> list[str]:
    kind, value = _kind(condition, presence_regex)
    if kind == "any" or kind is None or value is None:
        return [default]
    if kind == "exact":
        return [value]
    if kind == "prefix":
        return [value, value + ("-" if value.endswith("/") else "/") + PROBE_VALUE]
    return _regex_examples(value)


def _choose(conditions: list, default: str, variant: int, ignore_case: bool = False,
            presence_regex: bool = True) -> Optional[str]:
    """A value every condition accepts (candidates from each condition, then the default)."""
    pool: list[str] = []
    for condition in conditions:
        pool.extend(_candidates(condition, default, presence_regex))
    pool.append(default)
    good = [v for v in dict.fromkeys(pool)
            if all(string_matches(c, v, ignore_case, presence_regex) for c in conditions)]
    if not good:
        return None
    return good[0] if variant == 0 else good[-1]


def _merge_maps(blocks: list[dict], key: str, fold: bool) -> dict:
    merged: dict = {}
    for block in blocks:
        for name, condition in as_map(block.get(key)).items():
            merged.setdefault(str(name).lower() if fold else str(name), []).append(condition)
    return merged


def witnesses(blocks: list[dict], namespace: Optional[str], base: Probe) -> Iterator[Probe]:
    """Example requests meant to satisfy every block at once (callers check that they do)."""
    ports = {b["port"] for b in blocks if b.get("port") is not None}
    namespaces = {b["sourceNamespace"] for b in blocks if b.get("sourceNamespace")}
    if len(ports) > 1 or len(namespaces) > 1:
        return
    labels: dict = {}
    for block in blocks:
        for key, value in as_map(block.get("sourceLabels")).items():
            if labels.setdefault(str(key), str(value)) != str(value):
                return
    gateway_sets = [{gateway_key(g, namespace) for g in as_list(b.get("gateways"))} for b in blocks
                    if as_list(b.get("gateways"))]
    gateway = base.gateway
    if gateway_sets:
        common = set.intersection(*gateway_sets)
        if not common:
            return
        gateway = base.gateway if base.gateway in common else sorted(common)[0]
    ignore_case = any(b.get("ignoreUriCase") for b in blocks)
    headers = _merge_maps(blocks, "headers", True)
    without = _merge_maps(blocks, "withoutHeaders", True)
    query = _merge_maps(blocks, "queryParams", False)
    seen = set()
    for variant in (0, 1):
        path = _choose([b["uri"] for b in blocks if "uri" in b], base.path, variant, ignore_case, False)
        method = _choose([b["method"] for b in blocks if "method" in b], base.method, variant)
        scheme = _choose([b["scheme"] for b in blocks if "scheme" in b], base.scheme, variant)
        authority = _choose([b["authority"] for b in blocks if "authority" in b], base.authority, variant)
        if None in (path, method, scheme, authority):
            return
        header_values = []
        for name, conditions in headers.items():
            value = _choose(conditions, PROBE_VALUE, variant)
            if value is None:
                return
            header_values.append((name, value))
        for name, conditions in without.items():
            if name not in headers and any(_kind(c)[0] != "any" and string_matches(c, "") for c in conditions):
                header_values.append((name, PROBE_VALUE + "-other"))
        query_values = []
        for name, conditions in query.items():
            value = _choose(conditions, PROBE_VALUE, variant)
            if value is None:
                return
            query_values.append((name, value))
        probe = base.replace(method=str(method), authority=str(authority), path=str(path), scheme=str(scheme),
                        headers=tuple(header_values), query=tuple(query_values),
                        port=next(iter(ports)) if ports else base.port, gateway=gateway,
                        source_labels=tuple(sorted(labels.items())),
                        source_namespace=next(iter(namespaces)) if namespaces else base.source_namespace)
        if probe not in seen:
            seen.add(probe)
            yield probe
