"""The ``graylane`` command: parses arguments, calls the engine, prints. Nothing else lives here."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from engine.errors import GraylaneError

# Each module adds its subcommands with register(subparsers); a handler returns the exit status.
# Command modules import the wings inside their handlers, so building the parser stays cheap.
COMMAND_MODULES = [
    "engine.cli.render",
    "engine.cli.test",
    "engine.cli.cluster",  # after render: adds the cluster mode to its restore command
    "engine.cli.validate",
    "engine.cli.new",
    "engine.cli.plan",
    "engine.cli.color",
    "engine.cli.chain",
    "engine.cli.simulate",
    "engine.cli.argocd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="graylane",
        description="Kruise-compatible traffic routing for Istio gray releases: render, validate, color, "
                    "simulate and apply.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except GraylaneError as error:
        print(f"error: {error}", file=sys.stderr)
        return getattr(args, "error_exit_code", None) or error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
