"""``graylane test``: the script test harness."""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import InvalidInputError

if TYPE_CHECKING:
    from engine.routing.harness import CaseResult


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "test", help="run every trafficRouting.lua's testdata/ cases (Kruise's case format)",
        description="Find every trafficRouting.lua below each DIR (default: the built-in scripts) and run the "
                    "testdata/*.yaml cases beside it. Ends with 'N passed, M failed'.")
    parser.add_argument("dirs", nargs="*", metavar="DIR")
    parser.add_argument("--run", metavar="PATTERN",
                        help="run only the cases whose path below DIR matches this regular expression")
    parser.add_argument("--update", action="store_true",
                        help="rewrite the expected: of failing cases from the current output (shows the diff "
                             "first; passing cases and cases whose script fails are left alone)")
    parser.add_argument("--coverage", action="store_true",
                        help="report per script the lines the cases ran and the ones they never ran")
    parser.add_argument("--timeout", type=float, metavar="SECONDS")
    parser.add_argument("--max-memory", type=int, metavar="MIB")
    parser.set_defaults(handler=run_test)


def run_test(args: argparse.Namespace) -> int:
    from engine import inputs
    from engine.lua.scripts import builtin_root
    from engine.routing.harness import run_tree

    sandbox = inputs.sandbox(args.timeout, args.max_memory)
    roots = [(Path(d), None) for d in args.dirs] or [(Path(str(builtin_root())), "builtin:")]
    try:
        pattern = re.compile(args.run) if args.run is not None else None
    except re.error as exc:
        raise InvalidInputError(f"--run: not a regular expression: {exc}") from None
    passed = failed = updated = 0
    coverage = []
    for root, origin in roots:
        if not root.exists():
            raise InvalidInputError("no such file or directory", source=str(root))
        report = run_tree(sandbox, root, origin, pattern, args.coverage)
        if not report.results and not report.scripts_without_cases and pattern is None:
            raise InvalidInputError("holds no trafficRouting.lua", source=str(root))
        for script in report.scripts_without_cases:
            print(f"FAIL {script}: no test cases (add testdata/*.yaml beside it)")
        for result in report.results:
            if result.passed:
                print(f"ok   {result.case}")
                continue
            print(f"FAIL {result.case}")
            for failure in result.failures:
                print("     " + failure.replace("\n", "\n     "))
            if args.update and result.updatable:
                _update(result)
                print("     updated: expected: now holds the current output")
                updated += 1
        passed += report.passed
        failed += report.failed
        coverage += report.coverage
    failed -= updated
    if pattern is not None and passed + failed + updated == 0:
        raise InvalidInputError(f"--run {args.run!r} matches no case")
    if args.coverage:
        from engine.routing.scriptkit.coverage import report_lines

        print("\n".join(report_lines(coverage)))
    print(f"{passed} passed, {failed} failed" + (f", {updated} updated" if args.update else ""))
    return 0 if failed == 0 and passed + updated > 0 else 1


def _update(result: "CaseResult") -> None:
    """Write the case's expected: from what the script returned (``graylane test --update``)."""
    from engine.routing.scriptkit.snapshot import expected_object, replace_expected

    text = result.case.read_text(encoding="utf-8")
    expected = [expected_object(result.original, output) for output in result.outputs]
    result.case.write_text(replace_expected(text, expected, str(result.case)), encoding="utf-8")
