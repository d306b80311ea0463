"""The ``graylane`` command: parses arguments, calls the engine, prints. Nothing else lives here."""
from __future__ import annotations

import argparse
import importlib
import os
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
    if sys.stdout is None or sys.stdout.closed:  # started with stdout closed (>&-)
        _report("error: standard output is closed")
        return 1
    try:
        status = int(args.handler(args) or 0)
        sys.stdout.flush()  # a full disk (/dev/full) shows here, not as a traceback at exit
        return status
    except GraylaneError as error:
        _report(f"error: {error}")
        return getattr(args, "error_exit_code", None) or error.exit_code
    except KeyboardInterrupt:
        _report("interrupted")
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except OSError as error:  # writing the output failed (ENOSPC, EIO, ...), or a file no reader expected
        if error.filename is not None:
            _report(f"error: {error.filename}: {error.strerror or error}")
        else:
            _silence_stdout()
            _report(f"error: cannot write the output: {error.strerror or error}")
        return 1


def _report(line: str) -> None:
    if sys.stderr is not None:
        try:
            print(line, file=sys.stderr)
        except OSError:
            pass


def _silence_stdout() -> None:
    """Drop what is still buffered, so the interpreter's final flush cannot fail (and print) again."""
    try:
        sys.stdout = open(os.devnull, "w")
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
