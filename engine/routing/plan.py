"""Per-step plans and diffs: what each step of a Rollout (or a TrafficRouting) does to the network objects.

Pure: renders with :func:`engine.routing.render.render` (the real scripts) and describes the result; no I/O.
"""
from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from engine.fields import list_or_empty as as_list
from engine.fields import map_or_empty as as_map
from engine.documents import Document, dump_yaml
from engine.routing.hosts import same_service, service_key
from engine.routing.render import Engine, OutputCheck, Rendered, render
from engine.routing.script_input import ORIGINAL_ANNOTATION, original_of, restore_body
from engine.errors import InvalidInputError
from engine.routing.strategy import (NO_ROUTING, RouteTarget, TrafficStrategy, is_routing_document, plan,
                                    step_count)
from engine.routing.ownership import CANARY_SUBSET

PROTOCOLS = ("http", "tcp", "tls")


@dataclass
class RuleSplit:
    """Where one route rule sends its requests, in percent."""

    object: str           # "VirtualService/vs-mocka"
    rule: str             # "http[0]" or "http[1] primary"
    match: str            # "header my-request-id=canary", "*" for every request
    stable: float
    canary: float
    other: float = 0.0

    def to_dict(self) -> dict:
        return {"object": self.object, "rule": self.rule, "match": self.match, "stable": _number(self.stable),
                "canary": _number(self.canary), "other": _number(self.other)}


@dataclass
class ObjectChange:
    rendered: Rendered
    original: Optional[dict]  # None for an object render creates (a canary Ingress)
    diff: str                 # unified diff, original -> rendered (bookkeeping annotation left out)


@dataclass
class StepPlan:
    routing: Document
    step: Optional[int]       # 1-based; None for a TrafficRouting
    step_count: int
    strategy: TrafficStrategy
    splits: list[RuleSplit] = field(default_factory=list)
    changes: list[ObjectChange] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"step {self.step}/{self.step_count}" if self.step is not None else "rendered"

    def to_dict(self) -> dict:
        return {
            "routing": {"apiVersion": self.routing.api_version, "kind": self.routing.kind,
                        "namespace": self.routing.namespace, "name": self.routing.name,
                        "source": self.routing.source, "document": self.routing.index},
            "step": self.step, "stepCount": self.step_count,
            "strategy": strategy_dict(self.strategy),
            "description": describe_strategy(self.strategy),
            "split": [s.to_dict() for s in self.splits],
            "objects": [c.rendered.body for c in self.changes],
        }


def group_by_routing(plans: list[StepPlan]) -> list[list[StepPlan]]:
    """Consecutive plans of one TrafficRouting or Rollout together (its steps, in order)."""
    groups: list[list[StepPlan]] = []
    for plan in plans:
        if groups and groups[-1][0].routing is plan.routing:
            groups[-1].append(plan)
        else:
            groups.append([plan])
    return groups


def _number(value: float) -> Any:
    return int(value) if float(value).is_integer() else round(value, 2)


def percent(value: float) -> str:
    return f"{_number(value)}%"


# ------------------------------------------------------------------------------------------ describing

def strategy_dict(strategy: TrafficStrategy) -> dict:
    data: dict = {}
    if strategy.weight is not None:
        data["weight"] = strategy.weight
    if strategy.matches:
        data["matches"] = strategy.matches
    if strategy.request_header_modifier:
        data["requestHeaderModifier"] = strategy.request_header_modifier
    return data


def _kruise_condition(kind: str, item: dict) -> str:
    label = {"headers": "header", "queryParams": "query"}[kind]
    operator = "~" if item.get("type") == "RegularExpression" else "="
    return f"{label} {item.get('name')}{operator}{item.get('value')}"


def describe_kruise_match(match: dict) -> str:
    parts = []
    path = as_map(match.get("path"))
    if path:
        value, path_type = path.get("value", "/"), path.get("type", "PathPrefix")
        parts.append(f"path {value}*" if path_type == "PathPrefix" else
                     f"path ~{value}" if path_type == "RegularExpression" else f"path {value}")
    for kind in ("headers", "queryParams"):
        parts.extend(_kruise_condition(kind, as_map(item)) for item in as_list(match.get(kind)))
    return " and ".join(parts) or "*"


def describe_strategy(strategy: TrafficStrategy) -> str:
    if strategy.description:
        return strategy.description
    parts = []
    if strategy.weight is not None:
        # Kruise's rule, which the built-in scripts follow: matches take precedence over the weight.
        ignored = " ignored (matches take precedence)" if strategy.matches else ""
        parts.append(f"traffic {strategy.weight}%{ignored}")
    if strategy.matches:
        parts.append("matches " + " or ".join(f"({describe_kruise_match(m)})" if len(strategy.matches) > 1
                                                else describe_kruise_match(m) for m in strategy.matches))
    modifier = strategy.request_header_modifier or {}
    for key in ("set", "add"):
        parts.extend(f"{key} header {as_map(h).get('name')}={as_map(h).get('value')}"
                     for h in as_list(modifier.get(key)))
    parts.extend(f"remove header {name}" for name in as_list(modifier.get("remove")))
    return ", ".join(parts) or "no traffic change (no weight, no matches)"


def _string_condition(label: str, value: Any) -> str:
    value = as_map(value)
    if "exact" in value:
        return f"{label}={value['exact']}"
    if "prefix" in value:
        return f"{label}={value['prefix']}*"
    if "regex" in value:
        return f"{label}~{value['regex']}"
    return f"{label} present"


def describe_istio_match(match: dict) -> str:
    parts = []
    for key, value in match.items():
        if key in ("name", "statPrefix", "ignoreUriCase"):
            continue
        if key == "uri":
            parts.append(_string_condition("path", value).replace("path=", "path ").replace("path~", "path ~"))
        elif key in ("headers", "queryParams", "withoutHeaders"):
            label = {"headers": "header ", "queryParams": "query ", "withoutHeaders": "no header "}[key]
            parts.extend(_string_condition(label + str(name), condition) for name, condition in as_map(value).items())
        elif key in ("scheme", "method", "authority"):
            parts.append(_string_condition(key, value))
        elif isinstance(value, dict):
            parts.append(f"{key} " + ",".join(f"{k}={v}" for k, v in value.items()))
        elif isinstance(value, list):
            parts.append(f"{key} " + ",".join(map(str, value)))
        else:
            parts.append(f"{key} {value}")
    return " and ".join(parts) or "*"


def describe_rule_match(rule: dict) -> str:
    matches = [m for m in as_list(rule.get("match")) if isinstance(m, dict)]
    if not matches:
        return "*"
    described = [describe_istio_match(m) for m in matches]
    if "*" in described:
        return "*"
    return " or ".join(f"({d})" if len(described) > 1 and " and " in d else d for d in described)


# ---------------------------------------------------------------------------------------- traffic split

def _target_for(rendered: Rendered) -> Optional[RouteTarget]:
    for target in rendered.plan.targets:
        if any(ref.kind == rendered.source.kind and ref.name == rendered.source.name for ref in target.network_refs):
            return target
    return None


def _original_destinations(spec: Any, namespace: Optional[str]) -> set:
    found = set()
    for protocol in PROTOCOLS:
        for rule in as_list(as_map(spec).get(protocol)):
            for entry in as_list(as_map(rule).get("route")):
                destination = as_map(as_map(entry).get("destination"))
                found.add((service_key(str(destination.get("host", "")), namespace), destination.get("subset")))
    return found


def rule_splits(rendered: Rendered) -> list[RuleSplit]:
    """Percent of each route rule's traffic to the stable service, the canary and anything else."""
    source = rendered.source
    target = _target_for(rendered)
    if target is None or source.group != "networking.istio.io" or source.kind != "VirtualService":
        return []
    namespace = source.namespace or rendered.plan.document.namespace
    original, _stored = original_of(source.body)
    known = _original_destinations(original.spec, namespace)
    subset_level = target.canary_service == target.stable_service

    def classify(destination: dict) -> str:
        host = str(destination.get("host", ""))
        if target.subsets is not None:  # Argo's subset-level split names both subsets
            subset = destination.get("subset")
            return "canary" if subset == target.subsets[0] else "stable" if subset == target.subsets[1] else "other"
        if subset_level:
            if not same_service(host, target.stable_service, namespace):
                return "other"
            if destination.get("subset") == CANARY_SUBSET:  # also when the original already lists it
                return "canary"
            key = (service_key(host, namespace), destination.get("subset"))
            return "stable" if key in known else "canary"  # a subset some other script routes the canary to
        if same_service(host, target.canary_service, namespace):
            return "canary"
        return "stable" if same_service(host, target.stable_service, namespace) else "other"

    splits = []
    spec = as_map(rendered.body.get("spec"))
    for protocol in PROTOCOLS:
        for index, rule in enumerate(as_list(spec.get(protocol))):
            rule = as_map(rule)
            route = [as_map(entry) for entry in as_list(rule.get("route"))]
            if not route:
                continue
            weights = [entry.get("weight") if isinstance(entry.get("weight"), (int, float)) else 0 for entry in route]
            total = sum(weights)
            if total <= 0:  # no weights: one destination takes all, several share equally
                weights, total = [1] * len(route), len(route)
            shares = {"stable": 0.0, "canary": 0.0, "other": 0.0}
            for entry, weight in zip(route, weights):
                shares[classify(as_map(entry.get("destination")))] += 100.0 * weight / total
            name = rule.get("name")
            label = f"{protocol}[{index}]" + (f" {name}" if isinstance(name, str) and name else "")
            match = describe_rule_match(rule) if protocol == "http" else ("*" if not rule.get("match") else "L4 match")
            splits.append(RuleSplit(f"{source.kind}/{source.name}", label, match,
                                    round(shares["stable"], 2), round(shares["canary"], 2), round(shares["other"], 2)))
    return splits


# ---------------------------------------------------------------------------------------------- diffs

def without_bookkeeping(body: dict) -> dict:
    """``body`` without the stored-original annotation (and without an annotations map left empty)."""
    result = copy.deepcopy(body)
    annotations = as_map(as_map(result.get("metadata")).get("annotations"))
    if ORIGINAL_ANNOTATION in annotations:
        annotations.pop(ORIGINAL_ANNOTATION)
        if not annotations:
            result["metadata"].pop("annotations", None)
    return result


def unified_diff(before: Optional[dict], after: Optional[dict], from_label: str, to_label: str) -> str:
    """A unified diff of two objects as YAML ("" when equal); None means the object does not exist."""
    old = dump_yaml([before]).splitlines(keepends=True) if before is not None else []
    new = dump_yaml([after]).splitlines(keepends=True) if after is not None else []
    return "".join(difflib.unified_diff(old, new, from_label, to_label))


def is_new_object(rendered: Rendered) -> bool:
    """A canary Ingress render creates: its source is the stable Ingress it was copied from."""
    return as_map(rendered.body.get("metadata")).get("name") != rendered.source.name


def object_id(body: dict) -> str:
    """kubectl diff's file name: ``group.version.Kind.namespace.name`` (``v1.Kind...`` for the core group)."""
    metadata = as_map(body.get("metadata"))
    parts = [str(body.get("apiVersion", "")).replace("/", "."), str(body.get("kind", ""))]
    if metadata.get("namespace"):
        parts.append(str(metadata["namespace"]))
    parts.append(str(metadata.get("name", "")))
    return ".".join(parts)


def kubectl_diff(rendered: list[Rendered]) -> str:
    """What render would change, as ``kubectl diff`` shows it: LIVE (the input) against MERGED (rendered)."""
    chunks = []
    for item in rendered:
        if not item.changed:
            continue
        before = None if is_new_object(item) else item.source.body
        name = object_id(item.body)
        text = unified_diff(before, item.body, f"LIVE/{name}", f"MERGED/{name}")
        if text:
            chunks.append(f"diff -u -N LIVE/{name} MERGED/{name}\n{text}")
    return "".join(chunks)


# ----------------------------------------------------------------------------------------------- plans

def _object_change(rendered: Rendered, label: str) -> ObjectChange:
    if is_new_object(rendered):
        original = None
    else:
        try:
            state, _stored = original_of(rendered.source.body)
        except ValueError as exc:
            raise rendered.source.error(str(exc), f"metadata.annotations[{ORIGINAL_ANNOTATION}]") from None
        original = restore_body(rendered.source.body, state)
    body = as_map(rendered.body.get("metadata"))
    namespace = f"{body.get('namespace')}/" if body.get("namespace") else ""
    name = f"{rendered.body.get('kind')} {namespace}{body.get('name')}"
    diff = unified_diff(original, without_bookkeeping(rendered.body), f"{name} (original)", f"{name} ({label})")
    return ObjectChange(rendered, original, diff)


def plan_steps(documents: list[Document], engine: Engine, check: Optional[OutputCheck] = None,
               only_step: Optional[int] = None, progress: Optional[Callable[[str], None]] = None) -> list[StepPlan]:
    """Every step of every Rollout (one plan per TrafficRouting), rendered on the other input objects.

    ``only_step`` keeps just that step of each Rollout; ``progress`` is told each step planned (for people).
    """
    routings = [d for d in documents if is_routing_document(d)]
    others = [d for d in documents if not is_routing_document(d)]
    if not routings:
        raise InvalidInputError(NO_ROUTING)
    plans: list[StepPlan] = []
    for routing in routings:
        count = step_count(routing)
        steps: list[Optional[int]] = list(range(1, count + 1)) if count else [None]
        if only_step is not None and count:
            steps = [only_step]
        for step in steps:
            routing_plan = plan(routing, step)
            rendered = render([routing, *others], engine, step, check)
            result = StepPlan(routing, step, routing_plan.step_count, routing_plan.strategy)
            for item in rendered:
                result.splits.extend(rule_splits(item))
                result.changes.append(_object_change(item, result.label))
            plans.append(result)
            if progress:
                progress(f"{routing.describe()} {result.label}")
    return plans


# ---------------------------------------------------------------------------------------------- color

RED, GREEN, CYAN, BOLD, RESET = "\033[31m", "\033[32m", "\033[36m", "\033[1m", "\033[0m"


def colorize_diff(text: str) -> str:
    """ANSI colors for a unified diff, as git and kubectl (with colordiff) show it."""
    lines = []
    for line in text.splitlines(keepends=True):
        body, newline = (line[:-1], "\n") if line.endswith("\n") else (line, "")
        if line.startswith(("diff ", "--- ", "+++ ")):
            color = BOLD
        elif line.startswith("@@"):
            color = CYAN
        elif line.startswith("+"):
            color = GREEN
        elif line.startswith("-"):
            color = RED
        else:
            color = ""
        lines.append(f"{color}{body}{RESET}{newline}" if color else line)
    return "".join(lines)
