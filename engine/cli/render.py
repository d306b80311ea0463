"""``graylane render`` and ``graylane restore`` (offline, on files)."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Optional

from engine.cli.options import (emit, engine_from_args, filename_option, force_option, namespace_option,
                                object_output_option, output_check, print_warnings, read_inputs, script_options)
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
    force_option(render_parser)
    render_parser.add_argument("--show-input", action="store_true",
                               help="print the obj each script receives (JSON) instead of running the scripts "
                                    "(as graylane script input)")
    render_parser.add_argument("--all-steps", action="store_true",
                               help="render every step (with --output-dir: one folder per step)")
    render_parser.add_argument("--output-dir", metavar="DIR",
                               help="with --all-steps: write DIR/step-<N>/<Kind>.<namespace>.<name>.yaml "
                                    "(step-* folders already in DIR are replaced)")
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
    from engine.routing.render import render
    from engine.routing.argo.render import hash_notes
    if args.step is not None and args.step < 1:
        raise InvalidInputError("--step is 1-based and must be at least 1")
    if args.all_steps != bool(args.output_dir) or (args.all_steps and args.step is not None):
        raise InvalidInputError("--all-steps and --output-dir go together (and without --step)")
    if args.show_input:
        from engine.cli.script import run_input

        return run_input(args)
    documents = read_inputs(args)
    engine = engine_from_args(args)
    if args.all_steps:
        return _write_all_steps(documents, engine, args.output_dir, output_check(args))
    rendered = render(documents, engine, args.step, output_check(args))
    print_warnings(w for item in rendered for w in item.warnings)
    for note in hash_notes(documents, engine):
        print(note, file=sys.stderr)
    emit([item.body for item in rendered], args.output)
    return 0


def _write_all_steps(documents: list[Document], engine, output_dir: str, check) -> int:
    import re
    import shutil
    from pathlib import Path
    from engine.progress import Progress
    from engine.routing.steps import render_all_steps, step_files
    with Progress("rendering steps") as progress:
        files = step_files(render_all_steps(documents, engine, check, progress.advance))
    root = Path(output_dir)
    if root.exists() and not root.is_dir():
        raise InvalidInputError(f"--output-dir {output_dir}: not a directory")
    for old in sorted(root.glob("step-*")) if root.exists() else []:
        if old.is_dir() and re.fullmatch(r"step-\d+", old.name):
            shutil.rmtree(old)
    with Progress("writing objects", len(files)) as progress:
        for relative, text in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            progress.advance(relative)
    steps = {relative.split("/", 1)[0] for relative in files}
    print(f"wrote {len(files)} object(s) in {len(steps)} step folder(s) under {output_dir}", file=sys.stderr)
    return 0


def run_restore(args: argparse.Namespace, documents: Optional[list[Document]] = None) -> int:
    """Offline restore. engine/cli/cluster.py adds --cluster to this command and dispatches here (passing the
    documents it already read) unless the inputs hold only TrafficRoutings/Rollouts."""
    from engine import inputs
    from engine.routing.render import restore
    if documents is None:
        documents = read_inputs(args)
    restored, untouched = restore(documents)
    if not restored:
        raise InvalidInputError("no input object carries rollouts.kruise.io/original-spec-configuration; "
                                "nothing to restore")
    for document in untouched:
        print(f"note: {document.source}: document {document.index}: {document.describe()} has no stored "
              "original; left out", file=sys.stderr)
    emit([item.body for item in restored], args.output)
    return 0
