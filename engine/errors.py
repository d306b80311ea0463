"""Error types: every failure a user can cause is one of these, so the CLI can turn it into one line.

The CLI prints ``str(error)`` and exits with ``error.exit_code``; a Python traceback means a bug in graylane.
"""
from __future__ import annotations

import re
from typing import Iterable, Optional, Sequence


class GraylaneError(Exception):
    """Base of all graylane errors."""

    exit_code = 1

    def details(self) -> list[str]:
        """Lines the CLI prints after the one-line message (indented); most errors have none."""
        return []


class InvalidInputError(GraylaneError):
    """A user-supplied file, document or field is wrong; says exactly where."""

    def __init__(self, message: str, source: Optional[str] = None, document: Optional[int] = None,
                 field: Optional[str] = None):
        self.message, self.source, self.document, self.field = message, source, document, field
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.source:
            where.append(self.source)
        if self.document is not None:
            where.append(f"document {self.document}")
        if self.field:
            where.append(self.field)
        return (": ".join(where) + ": " + self.message) if where else self.message


class ScriptNotFoundError(GraylaneError):
    """No traffic-routing script for a resource kind, with every place that was searched."""

    def __init__(self, key: str, searched: Iterable[str]):
        self.key, self.searched = key, list(searched)
        super().__init__(f"no traffic-routing script for {key}; searched: " + "; ".join(self.searched))


class ScriptError(GraylaneError):
    """A Lua script failed, ran out of time or memory, or returned something unusable.

    ``str()`` is one line naming the input object (``subject``, set by the caller that knows it) and the script
    line (controllers and status fields use it); ``details()`` points into the script: the routing that ran
    it, the source line with a caret, and the script's own frames.
    """

    def __init__(self, script: str, message: str, line: Optional[int] = None, reason: str = "error",
                 source: Optional[str] = None, frames: Sequence[tuple[int, str]] = ()):
        self.script, self.message, self.line, self.reason = script, message, line, reason
        self.source, self.frames = source, list(frames)
        self.subject: Optional[str] = None  # the input the script ran on: ``file: document N: Kind ns/name``
        self.routed_by: Optional[str] = None  # the routing (and step) that ran it
        super().__init__(str(self))

    def __str__(self) -> str:
        location = f"{self.script}:{self.line}" if self.line else self.script
        return (f"{self.subject}: " if self.subject else "") + f"script {location}: {self.message}"

    def about(self, subject: str, routed_by: Optional[str] = None) -> "ScriptError":
        """Name the input the script ran on; the innermost caller that knows it says it first."""
        if self.subject is None:
            self.subject, self.routed_by = subject, routed_by
        return self

    def details(self) -> list[str]:
        lines = [f"  routed by {self.routed_by}"] if self.routed_by else []
        source_lines = self.source.splitlines() if self.source else []
        if self.line and 0 < self.line <= len(source_lines):
            text = source_lines[self.line - 1].expandtabs(4).rstrip()
            gutter = f"  {self.line:>5} | "
            lines.append(gutter + text)
            lines.append(" " * (len(gutter) - 2) + "| " + " " * _caret_column(text, self.message) + "^")
        if len(self.frames) > 1 or (self.frames and self.frames[0][0] != self.line):
            lines.append("  traceback (the script's own frames, innermost first):")
            lines.extend(f"    {self.script}:{line}: in {name}" for line, name in self.frames)
        return lines


def _caret_column(text: str, message: str) -> int:
    """Where on the line the error points: for a syntax error the last ``near 'x'`` token, else the first name
    Lua's message quotes (``field 'http'``, ``global 'f'``), else the first character of code."""
    near = re.search(r"near '([^']+)'$", message)  # a syntax error: the token where parsing stopped
    if near and near.group(1) in text:
        return text.rindex(near.group(1))
    for name in re.findall(r"'([^']+)'", message):
        found = re.search(r"(?<![\w.])" + re.escape(name) + r"(?!\w)", text) or re.search(re.escape(name), text)
        if found:
            return found.start()
    return len(text) - len(text.lstrip())


class ClusterError(GraylaneError):
    """The Kubernetes API refused or failed a request."""


class ValidationFailed(GraylaneError):
    """Validation found errors; carries the findings so callers can print them."""

    def __init__(self, message: str, findings: list | None = None):
        self.findings = findings or []
        super().__init__(message)
