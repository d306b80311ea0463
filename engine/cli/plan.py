"""``graylane plan`` (every step: strategy, traffic split, diff) and ``graylane diff`` (kubectl-diff style)."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING
import json
import os
import sys

from engine.cli.options import (engine_from_args, filename_option, force_option, namespace_option, output_check,
                                print_warnings, read_inputs, report_output_option, script_options)
from engine.errors import InvalidInputError

if TYPE_CHECKING:
    from engine.routing.plan import StepPlan


def _color_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="color the diff: auto (default) colors on a terminal unless NO_COLOR is set")


def register(subparsers: argparse._SubParsersAction) -> None:
    plan_parser = subparsers.add_parser(
        "plan", help="show what every step of a Rollout (or a TrafficRouting) does to the traffic",
        description="Render each step of each Rollout (a TrafficRouting has one) on the input network objects and "
                    "show the strategy, the traffic split of every route rule (percent to stable and canary, and "
                    "which matches go to the canary) and a unified diff of each object against its original.")
    filename_option(plan_parser)
    plan_parser.add_argument("--step", type=int, metavar="N", help="only this step of each Rollout (1-based)")
    namespace_option(plan_parser)
    report_output_option(plan_parser, extra=("html",),
                         help="table (default), wide (the OTHER column always), the full objects of every step as "
                              "yaml or json, or html: one self-contained page with a chart of every step")
    _color_option(plan_parser)
    force_option(plan_parser)
    script_options(plan_parser)
    plan_parser.set_defaults(handler=run_plan)

    diff_parser = subparsers.add_parser(
        "diff", help="show what render would change, as kubectl diff does",
        description="Unified diff of the input network objects against what render would make of them. Exit "
                    "status: 0 nothing would change, 1 something would, 2 error.")
    filename_option(diff_parser)
    diff_parser.add_argument("--step", type=int, metavar="N", help="Rollout step, 1-based (default 1)")
    namespace_option(diff_parser)
    _color_option(diff_parser)
    force_option(diff_parser)
    script_options(diff_parser)
    diff_parser.set_defaults(handler=run_diff, error_exit_code=2)


def use_color(choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def _check_step(step) -> None:
    if step is not None and step < 1:
        raise InvalidInputError("--step is 1-based and must be at least 1")


def run_diff(args: argparse.Namespace) -> int:
    from engine.routing.plan import colorize_diff, kubectl_diff
    from engine.routing.render import render
    args.error_exit_code = 2
    _check_step(args.step)
    documents = read_inputs(args)
    rendered = render(documents, engine_from_args(args), args.step, output_check(args))
    print_warnings(w for item in rendered for w in item.warnings)
    text = kubectl_diff(rendered)
    sys.stdout.write(colorize_diff(text) if use_color(args.color) else text)
    return 1 if text else 0


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() + "\n" for row in rows)


def _routing_title(plan: StepPlan) -> str:
    routing = plan.routing
    name = f"{routing.namespace}/{routing.name}" if routing.namespace else routing.name
    steps = f", {plan.step_count} step{'s' if plan.step_count != 1 else ''}" if plan.step is not None else ""
    return f"{routing.kind} {name} ({routing.source}#{routing.index}{steps})"


def format_table(plans: list[StepPlan], color: bool, wide: bool = False) -> str:
    from engine.routing.plan import colorize_diff, describe_strategy, group_by_routing, percent
    out = []
    for group in group_by_routing(plans):
        show_other = wide or any(s.other for p in group for s in p.splits)
        rows = [["STEP", "STRATEGY", "OBJECT", "RULE", "MATCH", "STABLE", "CANARY"] + (["OTHER"] if show_other else [])]
        for plan in group:
            step = f"{plan.step}/{plan.step_count}" if plan.step is not None else "-"
            strategy = describe_strategy(plan.strategy)
            splits = plan.splits or [None]
            for position, split in enumerate(splits):
                first = position == 0
                cells = [step if first else "", strategy if first else ""]
                if split is None:
                    cells += ["-", "-", "-", "-", "-"] + (["-"] if show_other else [])
                else:
                    cells += [split.object, split.rule, split.match, percent(split.stable), percent(split.canary)]
                    if show_other:
                        cells.append(percent(split.other))
                rows.append(cells)
        out.append(_routing_title(group[0]) + "\n\n" + _table(rows))
        for plan in group:
            heading = (f"Step {plan.step}/{plan.step_count}" if plan.step is not None else "Rendered") \
                + f" ({describe_strategy(plan.strategy)}):\n"
            diffs = "".join(change.diff for change in plan.changes)
            if not diffs:
                diffs = "(no changes)\n"
            out.append(heading + (colorize_diff(diffs) if color else diffs))
    return "\n".join(out)


def run_plan(args: argparse.Namespace) -> int:
    from engine.documents import dump_yaml
    from engine.progress import Progress
    from engine.routing.plan import plan_steps
    _check_step(args.step)
    documents = read_inputs(args)
    with Progress("planning steps") as progress:
        plans = plan_steps(documents, engine_from_args(args), output_check(args), args.step, progress.advance)
    print_warnings(w for plan in plans for change in plan.changes for w in change.rendered.warnings)
    if args.output == "json":
        text = json.dumps([p.to_dict() for p in plans], indent=2, ensure_ascii=False) + "\n"
    elif args.output == "yaml":
        text = dump_yaml([p.to_dict() for p in plans])
    elif args.output == "html":
        from engine.routing.plan_picture import plan_html
        text = plan_html(plans)
    else:
        text = format_table(plans, use_color(args.color), wide=args.output == "wide")
    sys.stdout.write(text)
    return 0
