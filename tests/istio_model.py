"""An independent model of how Istio routes one HTTP request through one VirtualService, for tests.

Written from Istio's documentation and its translation to Envoy routes (pilot's route.go), separately from
graylane's simulator and analyzers, so tests can check graylane's output against it: http rules are tried in
order and the first whose match holds wins (no match: every request); the blocks of ``match`` are alternatives
and the conditions of a block must all hold. A block exists only on the port it names and, when it names
``gateways``, only there (then ``sourceLabels`` are not looked at); ``uri`` is the path without the query,
``ignoreUriCase`` folds case for exact and prefix (not regex); regexes are RE2 full matches; a header or query
condition ``{}`` (or regex ``*``) asks for presence; ``withoutHeaders`` inverts a condition and treats a missing
header as the empty string (presence: the header must be missing). No rule: 404.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Optional
from urllib.parse import parse_qsl

import re2


@dataclass(frozen=True)
class Request:
    path: str = "/"
    method: str = "GET"
    authority: str = "example.com"
    headers: tuple = ()          # ((name, value), ...)
    port: Optional[int] = None
    gateway: str = "mesh"        # "ns/name" of the gateway, or "mesh"
    source_labels: tuple = ()
    source_namespace: Optional[str] = None
    scheme: str = "http"

    def header(self, name: str) -> Optional[str]:
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def query(self, name: str) -> Optional[str]:
        if "?" not in self.path:
            return None
        for key, value in parse_qsl(self.path.split("?", 1)[1], keep_blank_values=True):
            if key == name:
                return value
        return None


@dataclass(frozen=True)
class Outcome:
    """Where the request goes: ``destinations`` maps (host, subset) to its share; else ``status``."""

    rule: Optional[int]
    destinations: tuple = ()   # sorted ((host, subset, Fraction), ...)
    status: int = 200

    def shares(self) -> dict:
        return {(host, subset): share for host, subset, share in self.destinations}


def _string(condition, value: Optional[str], fold: bool = False, regex_star_is_presence: bool = True) -> bool:
    if value is None:
        return False
    if not condition:
        return True
    if "exact" in condition:
        return value.lower() == condition["exact"].lower() if fold else value == condition["exact"]
    if "prefix" in condition:
        return value.lower().startswith(condition["prefix"].lower()) if fold else value.startswith(condition["prefix"])
    if "regex" in condition:
        if regex_star_is_presence and condition["regex"] == "*":
            return True
        return re2.fullmatch(condition["regex"], value) is not None
    raise ValueError(f"unknown StringMatch {condition}")


def _gateway_name(name: str, namespace: str) -> str:
    return name if name == "mesh" or "/" in name else f"{namespace}/{name}"


def _block_holds(block: dict, request: Request, namespace: str) -> bool:
    if block.get("port") and block["port"] != request.port:
        return False
    if block.get("gateways"):
        if request.gateway not in {_gateway_name(g, namespace) for g in block["gateways"]}:
            return False
    else:
        labels = dict(request.source_labels)
        if any(labels.get(k) != v for k, v in (block.get("sourceLabels") or {}).items()):
            return False
        if block.get("sourceNamespace") and block["sourceNamespace"] != request.source_namespace:
            return False
    path = request.path.split("?", 1)[0]
    if "uri" in block and not _string(block["uri"], path, bool(block.get("ignoreUriCase")), False):
        return False
    if "method" in block and not _string(block["method"], request.method):
        return False
    if "authority" in block and not _string(block["authority"], request.authority):
        return False
    if "scheme" in block and not _string(block["scheme"], request.scheme):
        return False
    for name, condition in (block.get("headers") or {}).items():
        if not _string(condition, request.header(name)):
            return False
    for name, condition in (block.get("withoutHeaders") or {}).items():
        value = request.header(name)
        if not condition or condition == {"regex": "*"}:
            if value is not None:
                return False
        elif _string(condition, "" if value is None else value):
            return False
    for name, condition in (block.get("queryParams") or {}).items():
        if not _string(condition, request.query(name)):
            return False
    return True


def route(spec: dict, request: Request, namespace: str = "default") -> Outcome:
    """The first http rule of a VirtualService spec that takes ``request``, and where it sends it."""
    for index, rule in enumerate(spec.get("http") or []):
        blocks = rule.get("match") or [{}]
        if not any(_block_holds(block, request, namespace) for block in blocks):
            continue
        if rule.get("redirect"):
            return Outcome(index, status=301)
        if rule.get("directResponse"):
            return Outcome(index, status=int(rule["directResponse"].get("status", 200)))
        entries = rule.get("route") or []
        weights = [entry.get("weight") or 0 for entry in entries]
        if not any(weights):
            weights = [1] * len(entries)
        total = sum(weights)
        shares: dict = {}
        for entry, weight in zip(entries, weights):
            destination = entry["destination"]
            key = (destination["host"], destination.get("subset"))
            shares[key] = shares.get(key, Fraction(0)) + Fraction(weight, total)
        return Outcome(index, tuple(sorted((h, s, f) for (h, s), f in shares.items() if f)))
    return Outcome(None, status=404)


# ------------------------------------------------------------------------------------ Kruise lane matches

def kruise_match_holds(match: dict, request: Request) -> bool:
    """A Kruise HttpRouteMatch (the lane): path (PathPrefix default, Exact, RegularExpression), headers and
    queryParams (Exact default, RegularExpression); every condition must hold."""
    def holds(kind: str, expected: str, value: Optional[str]) -> bool:
        if value is None:
            return False
        if kind == "RegularExpression":
            return re2.fullmatch(expected, value) is not None
        if kind in ("PathPrefix", "Prefix"):
            return value.startswith(expected)
        return value == expected

    path = match.get("path")
    if path and not holds(path.get("type", "PathPrefix"), path.get("value", "/"), request.path.split("?", 1)[0]):
        return False
    for header in match.get("headers") or []:
        if not holds(header.get("type", "Exact"), header["value"], request.header(header["name"])):
            return False
    for param in match.get("queryParams") or []:
        if not holds(param.get("type", "Exact"), param["value"], request.query(param["name"])):
            return False
    return True


@dataclass
class LaneExpectation:
    """What a lane for ``service`` should do: requests a lane match takes that the original sent to the
    service go to its canary instead (``canary``: (host, subset) -> (host, subset)); everything else is
    routed exactly as before."""

    service: str
    lane_matches: list
    canary: object  # callable (host, subset) -> (host, subset)
    namespace: str = "default"
    mismatches: list = field(default_factory=list)

    def is_service(self, host: str) -> bool:
        """Istio's resolution: the short name (in the VirtualService's namespace) or the FQDN; name.ns and
        name.ns.svc are literal hosts, no Service."""
        return host in (self.service, f"{self.service}.{self.namespace}.svc.cluster.local")

    def expected(self, original: Outcome, request: Request) -> dict:
        shares = original.shares()
        if original.status != 200 or not any(kruise_match_holds(m, request) for m in self.lane_matches):
            return shares
        result: dict = {}
        for (host, subset), share in shares.items():
            key = self.canary(host, subset) if self.is_service(host) else (host, subset)
            result[key] = result.get(key, Fraction(0)) + share
        return result

    def check(self, original_spec: dict, rendered_spec: dict, requests: list) -> list:
        """Every request whose rendered routing differs from what the lane should do (empty: none)."""
        problems = []
        for request in requests:
            before = route(original_spec, request, self.namespace)
            after = route(rendered_spec, request, self.namespace)
            want = self.expected(before, request)
            if after.status != before.status or after.shares() != want:
                problems.append(f"{request}: original {before}, rendered {after}, expected {want}")
        return problems
