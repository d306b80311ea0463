"""``graylane plan -o html``: every step of a release as a chart.

For each Rollout (or TrafficRouting) one grid: a row per route rule (object, rule, match), a column per
step, and in each cell a bar of the rule's traffic split, stable in the base colour and canary in the gray
colour. Header routes show as rules whose whole bar is gray. Pure: plans in, one HTML page out.
"""
from __future__ import annotations

from engine.routing import svg
from engine.routing.plan import StepPlan, describe_strategy, group_by_routing, percent

LABEL_WIDTH, CELL_WIDTH, ROW_HEIGHT, BAR_HEIGHT, HEADER_HEIGHT = 330, 150, 34, 16, 46
MARGIN = 16


def routing_title(plan: StepPlan) -> str:
    routing = plan.routing
    name = f"{routing.namespace}/{routing.name}" if routing.namespace else routing.name
    return f"{routing.kind} {name}"


def _step_label(plan: StepPlan) -> str:
    return f"step {plan.step}/{plan.step_count}" if plan.step is not None else "rendered"


def chart(group: list[StepPlan]) -> str:
    """One routing's steps as an SVG grid of split bars."""
    rules: list[tuple] = []
    for plan in group:
        for split in plan.splits:
            key = (split.object, split.rule, split.match)
            if key not in rules:
                rules.append(key)
    width = MARGIN * 2 + LABEL_WIDTH + CELL_WIDTH * len(group)
    height = HEADER_HEIGHT + ROW_HEIGHT * max(1, len(rules)) + 30
    body = svg.legend(MARGIN, 16, [("stable (base)", svg.BASE_COLOR), ("canary (gray)", svg.GRAY_COLOR),
                                   ("other", svg.OTHER_COLOR)])
    for column, plan in enumerate(group):
        x = MARGIN + LABEL_WIDTH + column * CELL_WIDTH
        body.append(svg.text(x + 4, 36, _step_label(plan), 12, "bold"))
        body.append(svg.text(x + 4, HEADER_HEIGHT + ROW_HEIGHT * max(1, len(rules)) + 16,
                             svg.clip(describe_strategy(plan.strategy), CELL_WIDTH - 8, 10), 10, fill=svg.MUTED))
    if not rules:
        body.append(svg.text(MARGIN, HEADER_HEIGHT + 20, "no VirtualService route rules among the rendered objects",
                             12, fill=svg.MUTED))
    for row, (obj, rule, match) in enumerate(rules):
        y = HEADER_HEIGHT + row * ROW_HEIGHT
        body.append(svg.text(MARGIN, y + 14, svg.clip(f"{obj} {rule}", LABEL_WIDTH - 8, 12), 12))
        body.append(svg.text(MARGIN, y + 28, svg.clip("match " + match if match != "*" else "every request",
                                                      LABEL_WIDTH - 8, 10), 10, fill=svg.MUTED))
        for column, plan in enumerate(group):
            x = MARGIN + LABEL_WIDTH + column * CELL_WIDTH + 4
            split = next((s for s in plan.splits if (s.object, s.rule, s.match) == (obj, rule, match)), None)
            bar_width = CELL_WIDTH - 12
            if split is None:
                body.append(svg.text(x, y + 16, "-", 12, fill=svg.MUTED))
                continue
            body.append(f'<g data-rule="{svg.attr(obj + " " + rule)}" data-step="{svg.attr(_step_label(plan))}" '
                        f'data-stable="{split.stable}" data-canary="{split.canary}">')
            offset = x
            for share, color, lane in ((split.stable, svg.BASE_COLOR, "stable"), (split.canary, svg.GRAY_COLOR, "canary"),
                                       (split.other, svg.OTHER_COLOR, "other")):
                if share > 0:
                    part = bar_width * share / 100
                    body.append(svg.rect(offset, y + 4, part, BAR_HEIGHT, color, extra=f' data-part="{lane}"'))
                    offset += part
            body.append(svg.rect(x, y + 4, bar_width, BAR_HEIGHT, "none", svg.INK))
            body.append(svg.text(x, y + 31, f"{percent(split.stable)} / {percent(split.canary)}"
                                 + (f" / {percent(split.other)}" if split.other else ""), 10, fill=svg.MUTED))
            body.append("</g>")
    return svg.svg(width, height, body, f"traffic split per step of {routing_title(group[0])}")


def plan_html(plans: list[StepPlan]) -> str:
    """The whole page: a chart and a strategy table per routing."""
    sections = ["<h1>graylane plan</h1>"]
    for group in group_by_routing(plans):
        first = group[0]
        sections.append(f"<h2>{svg.attr(routing_title(first))} ({svg.attr(first.routing.source)}"
                        f"#{first.routing.index})</h2>")
        sections.append(chart(group))
        sections.append(svg.table(["step", "strategy", "objects changed"],
                                  [[_step_label(p), describe_strategy(p.strategy),
                                    ", ".join(f"{c.rendered.body.get('kind')}/{c.rendered.body.get('metadata', {}).get('name')}"
                                              for c in p.changes if c.diff) or "none"] for p in group]))
    return svg.page("graylane plan", sections)
