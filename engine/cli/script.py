"""``graylane script``: the script author's kit (new, input, types, configmap)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.cli.options import filename_option, script_options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "script", help="write your own traffic-routing script: new, input, types, configmap",
        description="Tools for people who write traffic-routing scripts (see the README, 'Writing your own "
                    "script').")
    commands = parser.add_subparsers(dest="script_command", metavar="SUBCOMMAND", required=True)

    new = commands.add_parser(
        "new", help="scaffold <group>/<Kind>/trafficRouting.lua and a first testdata/ case",
        description="Write DIR/<group>/<Kind>/trafficRouting.lua, a commented skeleton of the script contract, "
                    "and testdata/first_case.yaml (Kruise's case format) built from an example object. Existing "
                    "files are never overwritten.")
    new.add_argument("key", metavar="GROUP/KIND", help="e.g. networking.example.io/Route (core group: KIND)")
    new.add_argument("--from", dest="example", metavar="FILE",
                     help="manifest holding an example object of that kind for the first case (else a stub)")
    new.add_argument("--service", metavar="SVC", help="the stable Service of the first case (default: the "
                                                       "object's name)")
    new.add_argument("-d", "--dir", default=".", metavar="DIR", help="script directory (default: .)")
    new.set_defaults(handler=run_new)

    show = commands.add_parser(
        "input", help="print the obj each script receives (JSON), without running the scripts",
        description="For every network object the TrafficRoutings/Rollouts in the inputs reference, print "
                    "the exact obj its script receives, with the object, the routing and the script that would "
                    "run (null when there is none yet). Same as render --show-input.")
    filename_option(show)
    show.add_argument("--step", type=int, metavar="N", help="Rollout step, 1-based (default 1)")
    script_options(show)
    show.set_defaults(handler=run_input)

    types = commands.add_parser(
        "types", help="print Lua Language Server definitions (---@class) for obj and the return value",
        description="Print a Lua Language Server definition file: save it in your script workspace (e.g. "
                    "graylane script types > graylane-types.lua) and the editor completes and checks obj.")
    types.set_defaults(handler=run_types)

    configmap = commands.add_parser(
        "configmap", help="package script directories as the ConfigMap Kruise reads",
        description="Print a ConfigMap holding every script below the DIRs under Kruise's keys "
                    "lua.traffic.routing.<Kind>.<group> (ingress: lua.traffic.routing.ingress.<classType>), by "
                    "default Kruise's kruise-rollout-configuration in kruise-rollout. graylane reads it back "
                    "with --lua-configmap.")
    configmap.add_argument("dirs", nargs="+", metavar="DIR")
    configmap.add_argument("-n", "--namespace", metavar="NS", help="default: kruise-rollout (Kruise's namespace)")
    configmap.add_argument("--name", help="default: kruise-rollout-configuration (the one Kruise reads)")
    configmap.add_argument("--check", action="store_true",
                           help="run each script's testdata/ cases first and refuse when any fails")
    configmap.set_defaults(handler=run_configmap)


def run_new(args: argparse.Namespace) -> int:
    from engine import inputs
    from engine.errors import InvalidInputError
    from engine.lua.sandbox import Script
    from engine.routing.harness import run_case
    from engine.routing.scriptkit import scaffold
    from engine.routing.scriptkit.snapshot import expected_object, replace_expected

    group, kind = scaffold.parse_key(args.key)
    documents = inputs.read_documents([args.example]) if args.example else None
    example = scaffold.example_object(group, kind, documents, args.example)
    script_file = Path(args.dir) / scaffold.script_path(group, kind)
    case_file = script_file.parent / "testdata" / scaffold.FIRST_CASE
    for path in (script_file, case_file):
        if path.exists():
            raise InvalidInputError("already exists; graylane script new never overwrites", source=str(path))
    source = scaffold.skeleton(group, kind)
    case_text = scaffold.first_case(example, args.service)
    case_file.parent.mkdir(parents=True, exist_ok=True)
    script_file.write_text(source, encoding="utf-8")
    case_file.write_text(case_text, encoding="utf-8")
    result = run_case(inputs.sandbox(), Script(f"{group}/{kind}", source, str(script_file)), case_file)
    if not result.updatable:  # the example object cannot go through a render (e.g. it has no spec map)
        script_file.unlink()
        case_file.unlink()
        raise InvalidInputError(f"cannot make a first case from it: {result.failures[0]}",
                                source=args.example or args.key)
    case_file.write_text(replace_expected(case_text, [expected_object(result.original, out) for out in result.outputs],
                                          str(case_file)), encoding="utf-8")
    print(script_file)
    print(case_file)
    return 0


def run_input(args: argparse.Namespace) -> int:
    from engine import inputs
    from engine.cli.options import read_inputs
    from engine.errors import InvalidInputError
    from engine.routing.scriptkit.show_input import script_inputs

    if args.step is not None and args.step < 1:
        raise InvalidInputError("--step is 1-based and must be at least 1")
    documents = read_inputs(args)
    entries = script_inputs(documents, inputs.script_library(args.lua_dir, args.lua_configmap), args.step)
    sys.stdout.write(json.dumps(entries, indent=2, ensure_ascii=False) + "\n")
    return 0


def run_types(args: argparse.Namespace) -> int:
    from importlib import resources

    sys.stdout.write(resources.files("engine.lua").joinpath("types.lua").read_text(encoding="utf-8"))
    return 0


def run_configmap(args: argparse.Namespace) -> int:
    from engine import inputs
    from engine.errors import InvalidInputError
    from engine.routing.harness import run_tree
    from engine.routing.scriptkit.configmap import KRUISE_CONFIGMAP_NAME, KRUISE_NAMESPACE, configmap

    text = configmap(args.dirs, args.name or KRUISE_CONFIGMAP_NAME, args.namespace or KRUISE_NAMESPACE)
    if args.check:
        sandbox = inputs.sandbox()
        failed = []
        for directory in args.dirs:
            report = run_tree(sandbox, directory)
            failed += [f"{script}: no test cases" for script in report.scripts_without_cases]
            failed += [f"{result.case}: {result.failures[0].splitlines()[0]}" for result in report.results
                       if not result.passed]
        if failed:
            for line in failed:
                print(f"FAIL {line}", file=sys.stderr)
            raise InvalidInputError(f"--check: {len(failed)} case(s) fail; no ConfigMap printed "
                                    "(graylane test DIR shows the diffs)")
    sys.stdout.write(text)
    return 0
