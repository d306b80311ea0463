"""The ``graylane`` command: parses arguments, calls the engine, prints. Nothing else lives here."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from .errors import GraylaneError

# Each module adds its subcommands with register(subparsers); a handler returns the exit status.
COMMAND_MODULES = [
    "engine.cmd_render",
    "engine.cmd_test",
    "engine.cmd_cluster",  # after cmd_render: adds the cluster mode to its restore command
    "engine.cmd_validate",
    "engine.cmd_new",
    "engine.cmd_plan",
    "engine.cmd_color",
    "engine.cmd_chain",
    "engine.cmd_simulate",
]


def filename_option(parser: argparse.ArgumentParser, required: bool = True,
                    help: str = "file, directory or - (stdin); repeatable") -> None:
    """The -f/--filename input option every file-reading command shares (as kubectl's)."""
    parser.add_argument("-f", "--filename", action="append", required=required, default=None if required else [],
                        metavar="FILE", help=help)


def script_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that runs traffic-routing scripts."""
    group = parser.add_argument_group("scripts")
    group.add_argument("--lua-dir", action="append", default=[], metavar="DIR",
                       help="directory of <group>/<Kind>/trafficRouting.lua scripts; wins over the built-ins "
                            "(repeatable; also $GRAYLANE_LUA_PATH)")
    group.add_argument("--lua-configmap", metavar="FILE",
                       help="ConfigMap manifest with Kruise keys lua.traffic.routing.<Kind>.<group>")
    group.add_argument("--timeout", type=float, metavar="SECONDS", help="time limit per script run (default 1)")
    group.add_argument("--max-memory", type=int, metavar="MIB", help="memory limit per script run (default 64)")
    group.add_argument("-v", "--verbose", action="store_true", help="show what scripts print() on stderr")


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
