"""Options and helpers every command shares: input files, script sources, the engine they build, output."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Iterable, Optional

if TYPE_CHECKING:
    from engine.routing.render import Engine, OutputCheck


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
    """Print objects as ``-o`` asks: yaml, json or name."""
    if output == "name":
        sys.stdout.write("".join(object_name(body) + "\n" for body in objects))
        return
    from engine.documents import dump_json, dump_yaml

    sys.stdout.write(dump_json(objects) if output == "json" else dump_yaml(objects))


# ------------------------------------------------------------------------------ conventions (as kubectl's)

OBJECT_OUTPUTS = ("yaml", "json", "name")
REPORT_OUTPUTS = ("table", "wide", "json", "yaml")


def namespace_option(parser: argparse.ArgumentParser,
                     help: str = "namespace of the input objects that name none (as kubectl's -n)",
                     default: Optional[str] = None) -> None:
    """``-n/--namespace``: the default namespace for objects that give none."""
    parser.add_argument("-n", "--namespace", metavar="NS", default=default, help=help)


def object_output_option(parser: argparse.ArgumentParser) -> None:
    """``-o yaml|json|name`` for commands that print Kubernetes objects."""
    parser.add_argument("-o", "--output", choices=OBJECT_OUTPUTS, default="yaml",
                        help="yaml (default), json (several objects: a kind: List), or name: one "
                             "kind.group/name line per object, as kubectl -o name")


def _report_format(value: str) -> str:
    return "table" if value == "text" else value  # "text", the older name of the table format, still works


def report_output_option(parser: argparse.ArgumentParser, extra: tuple = (), help: str = "") -> None:
    """``-o table|wide|json|yaml`` (plus ``extra``, e.g. html) for commands that print a report."""
    choices = REPORT_OUTPUTS + tuple(extra)
    parser.add_argument("-o", "--output", choices=choices, default="table", type=_report_format,
                        help=help or "table (default, for people; also 'text'), wide (more columns), json or yaml")


def dry_run_option(parser: argparse.ArgumentParser) -> None:
    """``--dry-run[=client|server|none]``: alone it means client, as in kubectl."""
    parser.add_argument("--dry-run", nargs="?", const="client", default="none", choices=("none", "client", "server"),
                        help="client (what --dry-run alone means): show what would change, write nothing; server: "
                             "send the writes with dryRun=All, so the API server checks them without persisting")


def read_inputs(args: argparse.Namespace, check_types: bool = True) -> list:
    """The documents of ``-f``, with ``-n`` as the namespace of those that give none, each with the JSON
    types its kind allows unless ``check_types`` is off (validate reports those as findings instead)."""
    from engine import inputs

    documents = inputs.read_documents(args.filename, getattr(args, "namespace", None))
    if check_types:
        from engine.checks.shapes import check_shapes

        check_shapes(documents)
    return documents


def object_name(body: dict) -> str:
    """``kind.group/name`` as ``kubectl -o name`` prints it (``service/x`` for the core group)."""
    api_version = str(body.get("apiVersion", ""))
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    kind = str(body.get("kind", "")).lower()
    name = (body.get("metadata") or {}).get("name", "") if isinstance(body.get("metadata"), dict) else ""
    return f"{kind}.{group}/{name}" if group else f"{kind}/{name}"
def force_option(parser: argparse.ArgumentParser) -> None:
    """--force: render (or apply) a result that would fail requests, with the problems as warnings on stderr."""
    parser.add_argument("--force", action="store_true",
                        help="go on when the result would fail requests (a lane that catches other services' "
                             "requests, a subset no DestinationRule defines or that selects no pods); the problems "
                             "are printed as warnings on stderr")


def output_check(args: argparse.Namespace) -> "OutputCheck":
    """The check every command runs on scripts' output (``--force`` lets requests-would-fail results through)."""
    from functools import partial

    from engine.checks.validate import check_rendered

    return partial(check_rendered, force=bool(getattr(args, "force", False)))


def print_warnings(findings: Iterable) -> None:
    """Findings the output check let through, one line each on stderr (never on stdout), without repeats."""
    from engine.checks.codes import CODES

    lines = (f"warning: {f.source}: document {f.document}: " + (f"{f.path}: " if f.path else "")
             + f"{f.message} [{f.code} {CODES[f.code].name if f.code in CODES else ''}]" for f in findings)
    for line in dict.fromkeys(lines):
        print(line, file=sys.stderr)


COMMAND_LINE = "command line"


def check_generated_objects(items: Iterable[tuple[dict, str]]) -> None:
    """Run graylane's single-object checks on objects a command made (each with what it was made from, see
    :func:`engine.checks.validate.check_generated`): an error stops the command before anything is printed."""
    from engine.checks.validate import check_generated

    for body, origin in items:
        check_generated(body, origin)
