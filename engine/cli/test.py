"""``graylane test``: the script test harness."""
from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import InvalidInputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "test", help="run every trafficRouting.lua's testdata/ cases (Kruise's case format)",
        description="Find every trafficRouting.lua below each DIR (default: the built-in scripts) and run the "
                    "testdata/*.yaml cases beside it. Ends with 'N passed, M failed'.")
    parser.add_argument("dirs", nargs="*", metavar="DIR")
    parser.add_argument("--timeout", type=float, metavar="SECONDS")
    parser.add_argument("--max-memory", type=int, metavar="MIB")
    parser.set_defaults(handler=run_test)


def run_test(args: argparse.Namespace) -> int:
    from engine import inputs
    from engine.lua.scripts import builtin_root
    from engine.routing.harness import run_tree
    sandbox = inputs.sandbox(args.timeout, args.max_memory)
    roots = [(Path(d), None) for d in args.dirs] or [(Path(str(builtin_root())), "builtin:")]
    passed = failed = 0
    for root, origin in roots:
        if not root.exists():
            raise InvalidInputError("no such file or directory", source=str(root))
        report = run_tree(sandbox, root, origin)
        if not report.results and not report.scripts_without_cases:
            raise InvalidInputError("holds no trafficRouting.lua", source=str(root))
        for script in report.scripts_without_cases:
            print(f"FAIL {script}: no test cases (add testdata/*.yaml beside it)")
        for result in report.results:
            if result.passed:
                print(f"ok   {result.case}")
            else:
                print(f"FAIL {result.case}")
                for failure in result.failures:
                    print("     " + failure.replace("\n", "\n     "))
        passed += report.passed
        failed += report.failed
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1
