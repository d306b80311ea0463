"""``graylane simulate -o html``: the call chain of a simulated request as a picture.

One node per place the request reaches (the client, the ingress gateway, each service with the pods that
served it), one edge per call, labelled with the VirtualService rule that decided and the share of the
requests. The served version is drawn in the lane colours: base, gray, or an error when no pod answered.
Pure: a :class:`Trace` in, one HTML page out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from engine.routing import svg
from engine.fulllink.simulate.report import text as trace_text
from engine.fulllink.simulate.trace import Arrival, Hop, Trace, percent
from engine.routing.ownership import CANARY_SUBSET

NODE_WIDTH, NODE_HEIGHT, COLUMN_GAP, ROW_GAP, BAND = 240, 74, 190, 30, 12
MARGIN_X, MARGIN_TOP = 16, 44


@dataclass
class Node:
    column: int
    title: str
    lines: list
    lane: str                      # base, gray, error, or "" for the client and the gateway
    row: float = 0.0
    children: list = field(default_factory=list)   # of (Node, edge label lines)

    @property
    def x(self) -> float:
        return MARGIN_X + self.column * (NODE_WIDTH + COLUMN_GAP)

    @property
    def y(self) -> float:
        return MARGIN_TOP + self.row * (NODE_HEIGHT + ROW_GAP)


def gray_selectors(documents: list) -> list[dict]:
    """The pod labels of every DestinationRule subset named ``canary``: pods they select are the gray version
    (the subset Kruise's TrafficRoutings route to)."""
    selectors = []
    for document in documents:
        if document.kind != "DestinationRule" or document.group != "networking.istio.io":
            continue
        spec = document.body.get("spec") if isinstance(document.body.get("spec"), dict) else {}
        for subset in spec.get("subsets") or []:
            if isinstance(subset, dict) and subset.get("name") == CANARY_SUBSET and isinstance(subset.get("labels"), dict):
                labels = {str(k): str(v) for k, v in subset["labels"].items()}
                if labels and labels not in selectors:
                    selectors.append(labels)
    return selectors


def lane_of(arrival: Arrival, selectors: list[dict]) -> str:
    """base, gray or error: which version served these requests."""
    if arrival.status != 200 or arrival.workload is None:
        return "error"
    labels = arrival.workload.labels
    if arrival.subset == CANARY_SUBSET or arrival.workload.synthetic or (arrival.service or "").endswith("-canary"):
        return "gray"
    if any(all(labels.get(k) == v for k, v in selector.items()) for selector in selectors):
        return "gray"
    return "base"


def _labels(labels: dict) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in labels.items() if k not in ("app", "app.kubernetes.io/name")) + "}"


def _service_name(service: Optional[str]) -> str:
    if not service:
        return "?"
    namespace, _, name = service.partition("/")
    return name if namespace == "default" else f"{name}.{namespace}"


def _arrival_node(arrival: Arrival, column: int, selectors: list[dict]) -> Node:
    lane = lane_of(arrival, selectors)
    title = _service_name(arrival.service or arrival.destination)
    if arrival.subset:
        title += f" (subset {arrival.subset})"
    if lane == "error":
        lines = [f"{arrival.status or 'no answer'}: {arrival.reason}"]
    else:
        lines = [arrival.workload.describe(), _labels(arrival.workload.labels)]
    if arrival.destination_rule:
        lines.append(f"DestinationRule {arrival.destination_rule}")
    return Node(column, title, lines, lane)


def _edge_label(hop: Hop, share: str) -> list[str]:
    decided = f"VS {hop.virtual_service} {hop.rule or ''}".strip() if hop.virtual_service \
        else "no VirtualService: the whole Service"
    return [decided, f"{share}, {hop.matched}" if hop.matched else share]


def _attach(parent: Node, hop: Hop, selectors: list[dict]) -> None:
    column = parent.column + 1
    if not hop.arrivals:
        node = Node(column, _service_name(hop.target) if hop.target else "no route",
                    [f"{hop.status or 'no answer'}: {hop.reason or ''}"], "error")
        parent.children.append((node, _edge_label(hop, percent(hop.share))))
        return
    for arrival in hop.arrivals:
        node = _arrival_node(arrival, column, selectors)
        parent.children.append((node, _edge_label(hop, percent(arrival.share))))
        for call in arrival.calls:
            _attach(node, call, selectors)


def build_graph(trace: Trace, selectors: list[dict]) -> Node:
    """The tree of nodes, client first."""
    root = trace.root
    client = Node(0, "client", [trace.request.describe()] + [f"{k}: {v}" for k, v in trace.request.headers][:3], "")
    if root.proxy.startswith("ingress gateway"):
        gateway_name = root.proxy.removeprefix("ingress gateway").strip(" (").split(";")[0]
        changes = [f"{name}: {new} ({action})" if new is not None else f"{name} ({action})"
                   for c in root.coloring for action, name, _old, new in c.changes]
        filters = [c.envoy_filter for c in root.coloring]
        gateway = Node(1, "ingress gateway", [gateway_name, "; ".join(changes) or "no coloring", *filters], "")
        client.children.append((gateway, ["", ""]))
        _attach(gateway, root, selectors)
    else:
        _attach(client, root, selectors)
    _place(client, [0])
    return client


def _place(node: Node, next_row: list) -> None:
    """Leaves take the next free row; a parent sits at the middle of its children."""
    if not node.children:
        node.row = next_row[0]
        next_row[0] += 1
        return
    for child, _label in node.children:
        _place(child, next_row)
    rows = [child.row for child, _label in node.children]
    node.row = (min(rows) + max(rows)) / 2


def _walk(node: Node) -> list[Node]:
    found = [node]
    for child, _label in node.children:
        found.extend(_walk(child))
    return found


def _draw_node(node: Node) -> list[str]:
    color = svg.LANE_COLORS.get(node.lane, svg.INK)
    lane = f' data-lane="{node.lane or "none"}" data-node="{svg.attr(node.title)}"'
    parts = [f"<g{lane}>", svg.rect(node.x, node.y, NODE_WIDTH, NODE_HEIGHT, "#ffffff", color, rx=4,
                                    extra=' stroke-width="2"')]
    if node.lane:
        parts.append(svg.rect(node.x, node.y, BAND, NODE_HEIGHT, color, rx=0,
                              extra=f' class="lane-band" data-band="{node.lane}"'))
    left = node.x + BAND + 8
    parts.append(svg.text(left, node.y + 18, svg.clip(node.title, NODE_WIDTH - BAND - 16, 13), 13, "bold"))
    for index, line in enumerate(node.lines[:3]):
        parts.append(svg.text(left, node.y + 35 + index * 15, svg.clip(line, NODE_WIDTH - BAND - 16, 11), 11,
                              fill=svg.INK if index == 0 else svg.MUTED))
    parts.append("</g>")
    return parts


def _draw_edge(parent: Node, child: Node, label: list[str]) -> list[str]:
    x1, y1 = parent.x + NODE_WIDTH, parent.y + NODE_HEIGHT / 2
    x2, y2 = child.x, child.y + NODE_HEIGHT / 2
    middle = (x1 + x2) / 2
    color = svg.LANE_COLORS.get(child.lane, svg.INK)
    parts = [f'<path d="M{svg.number(x1)},{svg.number(y1)} C{svg.number(middle)},{svg.number(y1)} '
             f'{svg.number(middle)},{svg.number(y2)} {svg.number(x2 - 6)},{svg.number(y2)}" fill="none" '
             f'stroke="{color}" stroke-width="2" marker-end="url(#arrow)"/>']
    for index, line in enumerate(label):
        if line:
            parts.append(svg.text(x1 + 8, y2 - 8 + index * 22, svg.clip(line, COLUMN_GAP - 16, 10), 10, fill=svg.MUTED))
    return parts


def lane_svg(trace: Trace, selectors: list[dict]) -> str:
    """The call chain as an SVG picture."""
    client = build_graph(trace, selectors)
    nodes = _walk(client)
    columns = max(n.column for n in nodes) + 1
    rows = max(n.row for n in nodes) + 1
    width = MARGIN_X * 2 + columns * NODE_WIDTH + (columns - 1) * COLUMN_GAP
    height = MARGIN_TOP + rows * (NODE_HEIGHT + ROW_GAP) + 8
    body = ['<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{svg.INK}"/></marker></defs>']
    body += svg.legend(MARGIN_X, 20, [("base version", svg.BASE_COLOR), ("gray version", svg.GRAY_COLOR),
                                      ("no pod answered", svg.ERROR_COLOR)])
    for node in nodes:
        for child, label in node.children:
            body += _draw_edge(node, child, label)
    for node in nodes:
        body += _draw_node(node)
    return svg.svg(width, height, body, f"where {trace.request.describe()} goes")


def _hop_rows(hop: Hop, rows: list, selectors: list[dict]) -> None:
    for arrival in hop.arrivals:
        served = arrival.workload.describe() if arrival.workload and arrival.status == 200 \
            else f"{arrival.status or 'no answer'}: {arrival.reason}"
        rows.append([str(hop.depth + 1), hop.caller, _service_name(arrival.service or arrival.destination),
                     f"{hop.virtual_service or '-'} {hop.rule or ''}".strip(), hop.matched or "-",
                     percent(arrival.total_share), served, lane_of(arrival, selectors)])
        for call in arrival.calls:
            _hop_rows(call, rows, selectors)
    if not hop.arrivals:
        rows.append([str(hop.depth + 1), hop.caller, _service_name(hop.target) if hop.target else "-",
                     hop.virtual_service or "-", hop.matched or "-", percent(hop.share),
                     f"{hop.status or 'no answer'}: {hop.reason or ''}", "error"])


def simulate_html(trace: Trace, selectors: list[dict]) -> str:
    """The whole page: picture, one row per hop, expectations, and the text trace."""
    rows: list = []
    _hop_rows(trace.root, rows, selectors)
    sections = [f"<h1>Where {svg.attr(trace.request.describe())} goes</h1>", lane_svg(trace, selectors),
                "<h2>Hops</h2>",
                svg.table(["hop", "from", "to", "decided by", "match", "share of all requests", "served by", "lane"],
                          rows)]
    if trace.expectations:
        items = "".join(f'<li class="{"ok" if e.ok else "fail"}">{"ok" if e.ok else "FAIL"} {svg.attr(e.text)}'
                        + "".join(f"<br>{svg.attr(d)}" for d in e.details) + "</li>" for e in trace.expectations)
        sections += ["<h2>Expectations</h2>", f"<ul>{items}</ul>"]
    sections += ["<h2>Trace</h2>", f"<pre>{svg.attr(trace_text(trace))}</pre>"]
    return svg.page(f"graylane simulate: {trace.request.describe()}", sections)
