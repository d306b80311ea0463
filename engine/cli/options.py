"""Options and helpers every command shares: input files, script sources, the engine they build, output."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.routing.render import Engine


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
    argo = parser.add_argument_group("Argo Rollouts")
    argo.add_argument("--canary-hash", metavar="HASH",
                      help="rollouts-pod-template-hash of the canary ReplicaSet (subset-level DestinationRules; "
                           "default: the Rollout's status or its ReplicaSets among the inputs)")
    argo.add_argument("--stable-hash", metavar="HASH", help="rollouts-pod-template-hash of the stable ReplicaSet")


def engine_from_args(args: argparse.Namespace) -> "Engine":
    from engine import inputs
    from engine.lua.sandbox import stderr_printer
    from engine.routing.render import Engine

    hashes = {"canary": getattr(args, "canary_hash", None), "stable": getattr(args, "stable_hash", None)}
    return Engine(inputs.script_library(args.lua_dir, args.lua_configmap),
                  inputs.sandbox(args.timeout, args.max_memory),
                  stderr_printer("script: ") if args.verbose else None,
                  {key: value for key, value in hashes.items() if value})


def emit(objects: list[dict], output: str) -> None:
    from engine.documents import dump_json, dump_yaml

    sys.stdout.write(dump_json(objects) if output == "json" else dump_yaml(objects))
