"""Simulator output: a readable trace (text) and the same as JSON-ready data."""
from __future__ import annotations

from fractions import Fraction
from typing import Any, Optional

from engine.fulllink.simulate.trace import Arrival, ColoringStep, Hop, Trace
from engine.fulllink.simulate.trace import percent as _percent

STATUS_TEXT = {0: "no answer", 200: "served", 301: "redirect", 404: "404 no route", 502: "left the mesh",
               503: "503"}


def _labels(labels: dict) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in labels.items()) + "}"


def _short(service: Optional[str]) -> str:
    if not service:
        return "?"
    namespace, _, name = service.partition("/")
    return name if namespace == "default" else service


def _distinguishing(arrival: Arrival, selector_free: bool = True) -> dict:
    """Pod labels worth showing: everything but the labels every pod of the service shares (e.g. app)."""
    if arrival.workload is None:
        return {}
    labels = dict(arrival.workload.labels)
    for key in ("app", "app.kubernetes.io/name"):
        labels.pop(key, None)
    return labels


def text(trace: Trace) -> str:
    lines: list = []
    request = trace.request
    lines.append(f"request: {request.describe()}")
    for name, value in request.headers:
        lines.append(f"  {name}: {value}")
    if trace.propagated:
        lines.append(f"propagated headers: {', '.join(trace.propagated)}")
    if trace.rendered:
        lines.append(f"rendered from TrafficRoutings first: {', '.join(trace.rendered)}")
    lines.append("")
    _hop(trace.root, lines, "")
    lines.append("")
    lines.append("paths:")
    for path in trace.paths():
        steps = []
        for step in path.steps:
            if step.status == 200:
                version = {k: v for k, v in step.labels.items() if k not in ("app", "app.kubernetes.io/name")}
                shown = step.workload.split(" ", 1)[1].split("/", 1)[-1] if step.workload else "?"
                steps.append(f"{_short(step.service)} [{shown}{' ' + _labels(version) if version else ''}]")
            else:
                steps.append(f"{_short(step.service) if step.service else 'gateway'} "
                             f"[{step.status or 'no answer'}: {step.reason}]")
        lines.append(f"  {_percent(path.share):>7}  " + " -> ".join(steps))
    if trace.lanes:
        lines.append("")
        lines.append("lanes:")
        for lane in trace.lanes:
            rules = ", ".join(f"http[{r}]" for r in lane.rules)
            where = f"{_short(lane.service)} (VirtualService {lane.virtual_service} {rules})"
            if not lane.leaks:
                lines.append(f"  ok    {where}: captures no other service's traffic")
            lines.extend(f"  LEAK  {where}: http[{rule}]: {text}" for rule, text in lane.leaks)
    if trace.warnings:
        lines.append("")
        lines.append("warnings:")
        lines.extend(f"  {w}" for w in trace.warnings)
    if trace.expectations:
        lines.append("")
        lines.append("expectations:")
        for expectation in trace.expectations:
            mark = "ok  " if expectation.ok else "FAIL"
            lines.append(f"  {mark} {expectation.text}")
            lines.extend(f"         {detail}" for detail in expectation.details)
    return "\n".join(lines) + "\n"


def _hop(hop: Hop, lines: list, indent: str) -> None:
    share = "" if hop.share == 1 else f"  [{_percent(hop.share)} of requests]"
    if hop.depth == 0 and hop.proxy.startswith("ingress gateway"):
        lines.append(f"{indent}hop {hop.depth + 1}: client -> {hop.proxy}{share}")
    else:
        lines.append(f"{indent}hop {hop.depth + 1}: {hop.caller} calls {hop.request.method} "
                     f"http://{hop.request.authority}{hop.request.path}{share}")
    pad = indent + "  "
    if hop.depth > 0:
        forwarded = ", ".join(f"{k}: {v}" for k, v in hop.request.headers) or "none"
        lines.append(f"{pad}headers   forwarded {forwarded}" +
                     (f"; dropped {', '.join(hop.dropped)} (not propagated)" if hop.dropped else ""))
    for step in hop.coloring:
        _coloring(step, lines, pad)
    for note in hop.notes:
        lines.append(f"{pad}note      {note}")
    for skipped in hop.skipped:
        lines.append(f"{pad}skipped   {skipped}")
    if hop.virtual_service and hop.rule:
        lines.append(f"{pad}route     VirtualService {hop.virtual_service} {hop.rule}: {hop.matched}")
    elif hop.virtual_service:
        lines.append(f"{pad}route     VirtualService {hop.virtual_service}")
    if hop.status is not None:
        lines.append(f"{pad}result    {hop.status or 'no answer'}: {hop.reason}")
    for arrival in hop.arrivals:
        _arrival(arrival, lines, pad)


def _coloring(step: ColoringStep, lines: list, pad: str) -> None:
    if step.changes:
        changes = "; ".join(_change(c) for c in step.changes)
    else:
        changes = "no header changes"
    cleared = ", clearRouteCache()" if step.route_cache_cleared else ""
    lines.append(f"{pad}coloring  {step.envoy_filter}: {changes}{cleared}")
    if step.error:
        lines.append(f"{pad}          script error: {step.error}")
    if step.local_reply:
        status = (step.local_reply.get("headers") or {}).get(":status")
        lines.append(f"{pad}          local reply {status}")
    for note in step.notes:
        lines.append(f"{pad}          note: {note}")


def _change(change: tuple) -> str:
    action, name, old, new = change
    if action == "added":
        return f"{name}: {new} (added)"
    if action == "removed":
        return f"{name} removed (was {old})"
    return f"{name}: {old} -> {new}"


def _arrival(arrival: Arrival, lines: list, pad: str) -> None:
    target = arrival.destination + (f" subset {arrival.subset}" if arrival.subset else "")
    share = _percent(arrival.share)
    if arrival.status == 200 and arrival.workload is not None:
        rule = f", DestinationRule {arrival.destination_rule}" if arrival.destination_rule and arrival.subset else ""
        subset = f" {_labels(arrival.subset_labels)}" if arrival.subset_labels else ""
        lines.append(f"{pad}-> {share:>6} {target}{subset}{rule}: {arrival.workload.describe()} "
                     f"{_labels(_distinguishing(arrival))}")
    else:
        lines.append(f"{pad}-> {share:>6} {target}: {arrival.status or 'no answer'} {arrival.reason}")
    for note in arrival.notes:
        lines.append(f"{pad}           note: {note}")
    for call in arrival.calls:
        _hop(call, lines, pad + "   ")


# --------------------------------------------------------------------------------------------- JSON

def _share(value: Fraction) -> dict:
    return {"percent": float(value * 100), "fraction": f"{value.numerator}/{value.denominator}"}


def to_data(trace: Trace) -> dict:
    return {
        "request": _request(trace.request),
        "entry": trace.entry,
        "propagatedHeaders": trace.propagated,
        "rendered": trace.rendered,
        "hop": _hop_data(trace.root),
        "paths": [{"share": _share(path.share),
                   "steps": [{"service": s.service, "workload": s.workload, "labels": s.labels, "status": s.status,
                              "reason": s.reason} for s in path.steps]} for path in trace.paths()],
        "lanes": [{"virtualService": lane.virtual_service, "service": lane.service, "rules": lane.rules,
                   "leaks": [{"rule": rule, "message": text} for rule, text in lane.leaks]} for lane in trace.lanes],
        "warnings": trace.warnings,
        "expectations": [{"expect": e.text, "kind": e.kind, "service": e.service, "label": e.label, "value": e.value,
                          "ok": e.ok, "details": e.details} for e in trace.expectations],
        "ok": trace.ok,
    }


def _request(request: Any) -> dict:
    return {"method": request.method, "authority": request.authority, "path": request.path,
            "scheme": request.scheme, "headers": [[k, v] for k, v in request.headers]}


def _hop_data(hop: Hop) -> dict:
    return {
        "depth": hop.depth, "caller": hop.caller, "proxy": hop.proxy, "target": hop.target,
        "share": _share(hop.share), "request": _request(hop.request),
        "forwardedHeaders": hop.forwarded, "droppedHeaders": hop.dropped,
        "coloring": [{"envoyFilter": s.envoy_filter,
                      "changes": [{"action": a, "header": n, "old": o, "new": v} for a, n, o, v in s.changes],
                      "logs": [[level, message] for level, message in s.logs],
                      "clearRouteCache": s.route_cache_cleared, "error": s.error, "localReply": s.local_reply,
                      "notes": s.notes} for s in hop.coloring],
        "virtualService": hop.virtual_service, "rule": hop.rule, "matched": hop.matched, "skipped": hop.skipped,
        "status": hop.status, "reason": hop.reason, "notes": hop.notes,
        "destinations": [_arrival_data(a) for a in hop.arrivals],
    }


def _arrival_data(arrival: Arrival) -> dict:
    workload = arrival.workload
    return {
        "share": _share(arrival.share), "totalShare": _share(arrival.total_share),
        "host": arrival.destination, "subset": arrival.subset, "service": arrival.service,
        "destinationRule": arrival.destination_rule, "subsetLabels": arrival.subset_labels,
        "workload": None if workload is None else {"kind": workload.kind, "namespace": workload.namespace,
                                                   "name": workload.name, "labels": workload.labels,
                                                   "replicas": workload.replicas, "synthetic": workload.synthetic},
        "status": arrival.status, "reason": arrival.reason, "notes": arrival.notes,
        "request": _request(arrival.request) if arrival.request else None,
        "calls": [_hop_data(c) for c in arrival.calls],
    }
