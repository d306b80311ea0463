"""Error types: every failure a user can cause is one of these, so the CLI can turn it into one line.

The CLI prints ``str(error)`` and exits with ``error.exit_code``; a Python traceback means a bug in graylane.
"""
from __future__ import annotations

from typing import Iterable, Optional


class GraylaneError(Exception):
    """Base of all graylane errors."""

    exit_code = 1


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
    """A Lua script failed, ran out of time or memory, or returned something unusable."""

    def __init__(self, script: str, message: str, line: Optional[int] = None, reason: str = "error",
                 subject: Optional[str] = None):
        self.script, self.message, self.line, self.reason, self.subject = script, message, line, reason, subject
        location = f"{script}:{line}" if line else script
        super().__init__((f"{subject}: " if subject else "") + f"script {location}: {message}")

    def about(self, subject: str) -> "ScriptError":
        """The same error, naming the input the script ran on (``file: document N: Kind ns/name``)."""
        return ScriptError(self.script, self.message, self.line, self.reason, subject)


class ClusterError(GraylaneError):
    """The Kubernetes API refused or failed a request."""


class ValidationFailed(GraylaneError):
    """Validation found errors; carries the findings so callers can print them."""

    def __init__(self, message: str, findings: list | None = None):
        self.findings = findings or []
        super().__init__(message)
