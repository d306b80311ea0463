"""Pure builders behind ``graylane new``: TrafficRouting CRs and Rollout canary steps from a few flags.

Everything here returns plain dicts (ready for dump_yaml) or raises InvalidInputError naming the flag.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Optional

from engine.regexes import re2_error
from engine.errors import InvalidInputError
from engine.routing.strategy import MAX_MATCHES

ISTIO_V1BETA1 = "networking.istio.io/v1beta1"

#: ``--ref KIND/NAME`` shorthands: the apiVersion a bare kind means.
REF_API_VERSIONS = {
    "VirtualService": ISTIO_V1BETA1,
    "DestinationRule": ISTIO_V1BETA1,
    "Gateway": ISTIO_V1BETA1,
    "EnvoyFilter": "networking.istio.io/v1alpha3",
    "HTTPRoute": "gateway.networking.k8s.io/v1",
}
#: ``--workload KIND/NAME`` shorthands.
WORKLOAD_API_VERSIONS = {
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "CloneSet": "apps.kruise.io/v1alpha1",
    "DaemonSet": "apps.kruise.io/v1alpha1",
}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")
_PERCENT = re.compile(r"^\s*(\d{1,3})\s*%?\s*$")


def object_name(value: str, flag: str) -> str:
    """``value`` if it is a valid Kubernetes object name (a DNS-1123 subdomain), else an error naming ``flag``."""
    if not value or len(value) > 253 or not _NAME.match(value):
        raise InvalidInputError(f"{flag}: {value!r} is not a valid Kubernetes name (lowercase letters, digits, "
                                "'-' and '.')")
    return value


def namespace(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    if not _LABEL.match(value) or len(value) > 63:
        raise InvalidInputError(f"--namespace: {value!r} is not a valid namespace name")
    return value


def object_ref(text: str, flag: str, shorthands: dict[str, str]) -> dict:
    """``Kind/name`` (a known kind) or ``apiVersion/Kind/name`` (``group/version/Kind/name`` or ``v1/Kind/name``)."""
    parts = text.split("/")
    if len(parts) == 2:
        kind, name = parts
        if kind not in shorthands:
            raise InvalidInputError(f"{flag} {text}: unknown kind {kind!r}; use one of {', '.join(shorthands)} or "
                                    "apiVersion/Kind/name (e.g. networking.istio.io/v1/VirtualService/NAME)")
        api_version = shorthands[kind]
    elif len(parts) in (3, 4):
        api_version, kind, name = "/".join(parts[:-2]), parts[-2], parts[-1]
    else:
        raise InvalidInputError(f"{flag} {text}: expected Kind/name or apiVersion/Kind/name")
    if not kind or not kind[0].isupper() or not api_version:
        raise InvalidInputError(f"{flag} {text}: expected Kind/name or apiVersion/Kind/name")
    return {"apiVersion": api_version, "kind": kind, "name": object_name(name, flag)}


def name_value(text: str, flag: str, header: bool = True) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    name = name.strip()
    if not separator or not name or not value:
        raise InvalidInputError(f"{flag} {text!r}: expected NAME=VALUE (both non-empty)")
    if not _HEADER_NAME.match(name) or len(name) > 256:
        raise InvalidInputError(f"{flag} {text!r}: {name!r} is not a valid {'header' if header else 'parameter'} "
                                "name")
    return name, value


@dataclass
class MatchOptions:
    """The match flags of ``graylane new``: conditions are ANDed into one match, or ORed with ``any_of``."""

    headers: list[str] = field(default_factory=list)        # NAME=VALUE, Exact
    header_regexes: list[str] = field(default_factory=list)  # NAME=REGEX, RegularExpression
    queries: list[str] = field(default_factory=list)         # NAME=VALUE, Exact
    query_regexes: list[str] = field(default_factory=list)   # NAME=REGEX
    path_prefixes: list[str] = field(default_factory=list)
    any_of: bool = False                                     # --or: one match per condition


def _conditions(options: MatchOptions) -> list[tuple[str, dict]]:
    conditions: list[tuple[str, dict]] = []
    for flag, items, kind, match_type in (("--header", options.headers, "headers", "Exact"),
                                          ("--header-regex", options.header_regexes, "headers", "RegularExpression"),
                                          ("--query", options.queries, "queryParams", "Exact"),
                                          ("--query-regex", options.query_regexes, "queryParams",
                                           "RegularExpression")):
        for text in items:
            name, value = name_value(text, flag, kind == "headers")
            if kind == "headers":
                name = name.lower()  # header names are case-insensitive; Istio/Envoy match them in lowercase
            if match_type == "RegularExpression":
                reason = re2_error(value)
                if reason:
                    raise InvalidInputError(f"{flag} {text!r}: not valid RE2 (the regex syntax Envoy uses): {reason}")
            conditions.append((kind, {"type": match_type, "name": name, "value": value}))
    for prefix in options.path_prefixes:
        if not prefix.startswith("/"):
            raise InvalidInputError(f"--path-prefix {prefix!r}: must start with /")
        conditions.append(("path", {"type": "PathPrefix", "value": prefix}))
    return conditions


def build_matches(options: MatchOptions) -> list[dict]:
    """Kruise HttpRouteMatches: all conditions in one match (AND), or one match each with ``any_of`` (OR)."""
    conditions = _conditions(options)
    if not conditions:
        if options.any_of:
            raise InvalidInputError("--or needs match conditions (--header, --header-regex, --query, --path-prefix)")
        return []
    if options.any_of:
        matches = [{kind: value} if kind == "path" else {kind: [value]} for kind, value in conditions]
    else:
        if sum(1 for kind, _ in conditions if kind == "path") > 1:
            raise InvalidInputError("one match can hold one --path-prefix; give --or to match any of several paths")
        match: dict = {}
        for kind, value in conditions:
            if kind == "path":
                match["path"] = value
            else:
                match.setdefault(kind, []).append(value)
        matches = [match]
    if len(matches) > MAX_MATCHES:
        raise InvalidInputError(f"{len(matches)} matches; Kruise allows at most {MAX_MATCHES}")
    for match in matches:
        for kind in ("headers", "queryParams"):
            if len(match.get(kind, [])) > MAX_MATCHES:
                raise InvalidInputError(f"{len(match[kind])} {kind} in one match; Kruise allows at most {MAX_MATCHES}")
    return matches


def header_modifier(set_headers: list[str], add_headers: list[str], remove: list[str]) -> Optional[dict]:
    modifier: dict = {}
    for key, flag, items in (("set", "--set-header", set_headers), ("add", "--add-header", add_headers)):
        entries = [dict(zip(("name", "value"), name_value(text, flag))) for text in items]
        if entries:
            modifier[key] = entries
    names = []
    for name in remove:
        if not _HEADER_NAME.match(name):
            raise InvalidInputError(f"--remove-header {name!r}: not a valid header name")
        names.append(name)
    if names:
        modifier["remove"] = names
    for key, value in modifier.items():
        if len(value) > MAX_MATCHES:
            raise InvalidInputError(f"requestHeaderModifier.{key}: at most {MAX_MATCHES} entries, got {len(value)}")
    return modifier or None


def _weight(value: Optional[int], flag: str = "--weight") -> Optional[int]:
    if value is not None and not 0 <= value <= 100:
        raise InvalidInputError(f"{flag} {value}: must be from 0 to 100")
    return value


def _routing_ref(service: str, refs: list[str]) -> dict:
    if not refs:
        raise InvalidInputError("give at least one --ref KIND/NAME (e.g. --ref VirtualService/reviews)")
    return {"service": object_name(service, "--service"),
            "customNetworkRefs": [object_ref(text, "--ref", REF_API_VERSIONS) for text in refs]}


def _metadata(name: str, ns: Optional[str]) -> dict:
    metadata = {"name": object_name(name, "NAME")}
    if namespace(ns):
        metadata["namespace"] = ns
    return metadata


def traffic_routing(name: str, service: str, refs: list[str], matches: list[dict], weight: Optional[int] = None,
                    modifier: Optional[dict] = None, ns: Optional[str] = None) -> dict:
    """A rollouts.kruise.io/v1alpha1 TrafficRouting."""
    metadata, target = _metadata(name, ns), _routing_ref(service, refs)
    if weight is None and not matches:
        raise InvalidInputError("the strategy needs --weight N or a match (--header, --header-regex, --query, "
                                "--path-prefix)")
    if weight is not None and matches:
        raise InvalidInputError("give --weight or a match, not both: matches take precedence over the weight "
                                "(as in Kruise), so the weight would be ignored")
    strategy: dict = {}
    if weight is not None:
        strategy["weight"] = _weight(weight)
    if matches:
        strategy["matches"] = matches
    if modifier:
        strategy["requestHeaderModifier"] = modifier
    return {"apiVersion": "rollouts.kruise.io/v1alpha1", "kind": "TrafficRouting", "metadata": metadata,
            "spec": {"objectRef": [target], "strategy": strategy}}


def parse_percentages(text: str, flag: str, allow_count: bool = False) -> list:
    """``5%,20%,50%`` -> ``["5%", "20%", "50%"]`` (``5`` means 5%); with ``allow_count``, bare numbers stay counts."""
    values = []
    for item in [part.strip() for part in text.split(",")]:
        match = _PERCENT.match(item)
        if not match:
            raise InvalidInputError(f"{flag} {text}: {item!r} is not a percentage like 20%")
        number = int(match.group(1))
        if allow_count and not item.endswith("%"):
            values.append(number)
            continue
        if number > 100:
            raise InvalidInputError(f"{flag} {text}: {item!r} is more than 100%")
        values.append(f"{number}%")
    return values


def canary_strategy(service: str, refs: list[str], steps: str, matches: list[dict],
                    modifier: Optional[dict] = None, replicas: Optional[str] = None,
                    pause_seconds: Optional[int] = None, extra_workload: bool = True,
                    canary_service: bool = True) -> dict:
    """A v1beta1 Rollout ``spec.strategy.canary``: one step per percentage, each pausing (manually, or for
    ``pause_seconds``) before the next, except the last. With matches, the steps route the matching requests
    and carry no traffic (matches take precedence over it in Kruise); the percentages give the replicas."""
    traffic = parse_percentages(steps, "--steps")
    if not traffic:
        raise InvalidInputError("--steps needs at least one percentage")
    counts = parse_percentages(replicas, "--replicas", allow_count=True) if replicas else list(traffic)
    if len(counts) != len(traffic):
        raise InvalidInputError(f"--replicas has {len(counts)} value(s) but --steps has {len(traffic)}")
    if pause_seconds is not None and pause_seconds < 0:
        raise InvalidInputError("--pause must be a number of seconds, at least 0")
    result_steps = []
    for index, (percent, count) in enumerate(zip(traffic, counts)):
        step: dict = {}
        if matches:
            step["matches"] = copy.deepcopy(matches)  # no shared objects: YAML would print anchors
        else:
            step["traffic"] = percent
        if modifier:
            step["requestHeaderModifier"] = copy.deepcopy(modifier)
        step["replicas"] = count
        if index < len(traffic) - 1:
            step["pause"] = {} if pause_seconds is None else {"duration": pause_seconds}
        result_steps.append(step)
    canary: dict = {"steps": result_steps, "trafficRoutings": [_routing_ref(service, refs)]}
    if extra_workload:
        canary["enableExtraWorkloadForCanary"] = True
    if not canary_service:
        canary["disableGenerateCanaryService"] = True
    return canary


def rollout(name: str, workload: str, canary: dict, ns: Optional[str] = None) -> dict:
    """A whole rollouts.kruise.io/v1beta1 Rollout around ``canary``."""
    return {"apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout", "metadata": _metadata(name, ns),
            "spec": {"workloadRef": object_ref(workload, "--workload", WORKLOAD_API_VERSIONS),
                     "strategy": {"canary": canary}}}
