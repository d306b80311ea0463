"""``graylane render`` and ``graylane restore`` (offline, on files)."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Optional

from engine.cli.options import (emit, engine_from_args, filename_option, namespace_option, object_output_option,
                                 read_inputs, script_options)
from engine.errors import InvalidInputError

if TYPE_CHECKING:
    from engine.documents import Document


def register(subparsers: argparse._SubParsersAction) -> None:
    render_parser = subparsers.add_parser(
        "render", help="print the VirtualServices/DestinationRules a TrafficRouting or Rollout step produces",
        description="Run the traffic-routing scripts for a TrafficRouting (or one step of a Rollout) on the "
                    "network objects it references, and print the mutated objects, each carrying the original "
                    "in rollouts.kruise.io/original-spec-configuration, ready for kubectl apply -f -.")
    filename_option(render_parser)
    render_parser.add_argument("--step", type=int, metavar="N", help="Rollout step, 1-based (default 1)")
    namespace_option(render_parser)
    object_output_option(render_parser)
    script_options(render_parser)
    render_parser.set_defaults(handler=run_render)

    restore_parser = subparsers.add_parser(
        "restore", help="give back the original objects stored by render/apply (or Kruise)",
        description="Print every object that carries rollouts.kruise.io/original-spec-configuration as it was "
                    "before rendering.")
    filename_option(restore_parser)
    object_output_option(restore_parser)
    restore_parser.set_defaults(handler=run_restore)


def run_render(args: argparse.Namespace) -> int:
    from engine.checks.validate import check_rendered
    from engine.routing.render import render
    if args.step is not None and args.step < 1:
        raise InvalidInputError("--step is 1-based and must be at least 1")
    documents = read_inputs(args)
    rendered = render(documents, engine_from_args(args), args.step, check_rendered)
    emit([item.body for item in rendered], args.output)
    return 0


def run_restore(args: argparse.Namespace, documents: Optional[list[Document]] = None) -> int:
    """Offline restore. engine/cli/cluster.py adds --cluster to this command and dispatches here (passing the
    documents it already read) unless the inputs hold only TrafficRoutings/Rollouts."""
    from engine import inputs
    from engine.routing.render import restore
    if documents is None:
        documents = inputs.read_documents(args.filename)
    restored, untouched = restore(documents)
    if not restored:
        raise InvalidInputError("no input object carries rollouts.kruise.io/original-spec-configuration; "
                                "nothing to restore")
    for document in untouched:
        print(f"note: {document.source}: document {document.index}: {document.describe()} has no stored "
              "original; left out", file=sys.stderr)
    emit([item.body for item in restored], args.output)
    return 0
