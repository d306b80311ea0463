"""The ``graylane`` command: parses arguments, calls the engine, prints. Nothing else lives here.

Exit statuses (the README's table): 0 success; 1 an error graylane reports (bad input, a script failure, a
cluster error, validation errors); 2 a usage mistake (unknown command or flag, a flag without its value, a
value outside its choices); 3 a ``simulate --expect`` that does not hold. ``diff`` follows diff(1): 1 means
"something would change" and every error is 2.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from typing import NoReturn, Optional, Sequence

from engine.errors import GraylaneError

USAGE_ERROR = 2

# Each module adds its subcommands with register(subparsers); a handler returns the exit status.
# Command modules import the wings inside their handlers, so building the parser stays cheap; and a command
# line that names its command builds only that command's parser (building all of them costs about as much as
# the rest of a small render's start-up). Each module with the commands it registers (tests check the table).
COMMAND_MODULES = {
    "engine.cli.render": ("render", "restore"),
    "engine.cli.test": ("test",),
    "engine.cli.cluster": ("apply", "status", "controller", "restore"),  # after render: adds to its restore
    "engine.cli.validate": ("validate", "schema"),
    "engine.cli.new": ("new",),
    "engine.cli.plan": ("plan", "diff"),
    "engine.cli.color": ("color",),
    "engine.cli.chain": ("chain",),
    "engine.cli.simulate": ("simulate",),
    "engine.cli.about": ("version", "completion"),
    "engine.cli.script": ("script",),
    "engine.cli.argocd": ("argocd",),
}

_INVALID_CHOICE = re.compile(r"argument (?P<argument>[^:]+): invalid choice: '(?P<value>[^']*)' "
                             r"\(choose from (?P<choices>.*)\)")


class Parser(argparse.ArgumentParser):
    """argparse with graylane's usage errors: one line on stderr, exit status 2, with a suggestion for a
    near-miss command, choice or flag."""

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse's own leaves the width to the formatter, which imports shutil for it (with bz2, lzma and
        # zlib: about 4 ms) on every command's start-up, as add_argument makes a formatter to check metavars.
        return self.formatter_class(prog=self.prog, width=help_width())

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"error: {self.prog}: {self._explain(message)} (see '{self.prog} --help')\n")

    def _explain(self, message: str) -> str:
        from engine.routing.names import did_you_mean

        invalid = _INVALID_CHOICE.fullmatch(message)
        if invalid:
            choices = [c.strip().strip("'") for c in invalid["choices"].split(",")]
            what = "command" if invalid["argument"] in ("COMMAND", "KIND") else f"value for {invalid['argument']}"
            return f"unknown {what} '{invalid['value']}'{did_you_mean(invalid['value'], choices)}"
        if message.startswith("unrecognized arguments: "):
            flags = [word for word in message.split(": ", 1)[1].split() if word.startswith("-")]
            known = [option for action in self._actions for option in action.option_strings]
            hint = did_you_mean(flags[0].split("=", 1)[0], known) if flags else ""
            return message + hint
        return message


def help_width() -> int:
    """The width argparse's formatter picks itself, ``shutil.get_terminal_size().columns - 2`` (COLUMNS, else
    the terminal on stdout, else 80), without importing shutil."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
        columns = columns or 80
    return columns - 2


def build_parser(prog: str = "graylane", command: Optional[str] = None) -> argparse.ArgumentParser:
    """The whole parser, or with ``command`` (a known command's name) one with only that command's parsers."""
    from engine.cli.about import VersionAction

    parser = Parser(
        prog=prog,
        description="Kruise-compatible traffic routing for Istio gray releases: render, validate, color, "
                    "simulate and apply.",
        epilog="exit status: 0 success, 1 error, 2 usage mistake, 3 a simulate --expect does not hold "
               "(diff: 1 differences, 2 any error)")
    parser.add_argument("--version", action=VersionAction, help="print graylane's, Python's and Lua's versions")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = [name for name, commands in COMMAND_MODULES.items() if command in commands] or COMMAND_MODULES
    for module_name in modules:
        importlib.import_module(module_name).register(subparsers)
    return parser


def _unknown_flag_parser(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.ArgumentParser:
    """The subcommand's parser when ``argv`` names one (its flags are the candidates for a suggestion)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for word in argv:
                if word in action.choices:
                    return _unknown_flag_parser(action.choices[word], argv[argv.index(word) + 1:])
    return parser


def main(argv: Optional[Sequence[str]] = None, prog: str = "graylane") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    completing = "_ARGCOMPLETE" in os.environ  # a shell asks for completions (graylane completion SHELL)
    # the first word that is no flag names the command (graylane's own flags take no value)
    parser = build_parser(prog, None if completing else next((w for w in argv if not w.startswith("-")), None))
    if completing:
        import argcomplete

        argcomplete.autocomplete(parser)
    try:
        args, extras = parser.parse_known_args(argv)
        if extras:
            _unknown_flag_parser(parser, argv).error("unrecognized arguments: " + " ".join(extras))
    except SystemExit as exit_:  # --help, --version, usage mistakes
        return exit_.code if isinstance(exit_.code, int) else USAGE_ERROR
    if sys.stdout is None or sys.stdout.closed:  # started with stdout closed (>&-)
        _report("error: standard output is closed")
        return 1
    try:
        status = int(args.handler(args) or 0)
        sys.stdout.flush()  # a full disk (/dev/full) shows here, not as a traceback at exit
        return status
    except GraylaneError as error:
        _report(f"error: {error}")
        for line in error.details():
            _report(line)
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


def kubectl_plugin() -> int:
    """``kubectl graylane ...``: kubectl finds the ``kubectl-graylane`` command on PATH and runs it."""
    return main(prog="kubectl graylane")


if __name__ == "__main__":
    sys.exit(main())
