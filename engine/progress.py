"""Progress of long work on stderr, only when stderr is a terminal: people see that something is going on;
pipes, logs and tests get nothing. The one line is rewritten in place and cleared at the end."""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


class Progress:
    """``with Progress("syncing TrafficRoutings", total) as progress: ... progress.advance(name)``."""

    def __init__(self, what: str, total: Optional[int] = None, stream: Optional[TextIO] = None,
                 interval: float = 0.1):
        self.what, self.total, self.done = what, total, 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _is_terminal(self.stream)
        self.interval, self._last, self._width = interval, 0.0, 0

    def __enter__(self) -> "Progress":
        self._show("", force=True)
        return self

    def advance(self, item: str = "", count: int = 1) -> None:
        self.done += count
        self._show(item)

    def _show(self, item: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and self.done > 1 and now - self._last < self.interval and self.done != self.total:
            return  # at most one redraw per interval (the first item and the last are always shown)
        self._last = now
        count = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        line = f"{self.what}: {count}" + (f" {item}" if item else "")
        line = line[:120]
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def __exit__(self, *exc_info: object) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()


def note(message: str, stream: Optional[TextIO] = None) -> None:
    """One line for people (e.g. that a first build takes minutes), printed only on a terminal."""
    stream = stream if stream is not None else sys.stderr
    if _is_terminal(stream):
        print(message, file=stream, flush=True)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
