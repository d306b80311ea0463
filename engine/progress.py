"""Progress of long work on stderr, only when stderr is a terminal: people see that something is going on;
pipes, logs and tests get nothing. The one line is rewritten in place and cleared at the end.

A command that also logs to the same terminal (the controller) keeps its log lines whole: while a progress line
is shown, each log line first clears it (under the log handler's lock), and the next update draws it again."""
from __future__ import annotations

import contextlib
import logging
import sys
import threading
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
        self._lock = threading.RLock()
        self._handlers: list[tuple[logging.Handler, Optional[logging.Formatter]]] = []

    def __enter__(self) -> "Progress":
        if self.enabled:
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.StreamHandler) and handler.stream is self.stream:
                    self._handlers.append((handler, handler.formatter))
                    handler.setFormatter(_ClearingFormatter(self, handler.formatter or logging.Formatter()))
        self._show("", force=True)
        return self

    def advance(self, item: str = "", count: int = 1) -> None:
        self.done += count
        self._show(item)

    @contextlib.contextmanager
    def _output(self):
        """The log handlers' locks, then ours: a log line and a redraw never interleave."""
        with contextlib.ExitStack() as stack:
            for handler, _ in self._handlers:
                handler.acquire()
                stack.callback(handler.release)
            with self._lock:
                yield

    def _show(self, item: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        shown_lately = self._width and now - self._last < self.interval
        if not force and shown_lately and self.done > 1 and self.done != self.total:
            return  # at most one redraw per interval (the first item, the last and a redraw after a log line)
        self._last = now
        count = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        line = f"{self.what}: {count}" + (f" {item}" if item else "")
        line = line[:120]
        with self._output():
            self.stream.write("\r" + line.ljust(self._width))
            self.stream.flush()
            self._width = len(line)

    def _take_line(self) -> str:
        """(Under the log handler's lock.) What clears the progress line before a log line is written."""
        with self._lock:
            width, self._width = self._width, 0
        return "\r" + " " * width + "\r" if width else ""

    def __exit__(self, *exc_info: object) -> None:
        if not self.enabled:
            return
        with self._output():
            for handler, formatter in self._handlers:
                handler.setFormatter(formatter)
            if self._width:
                self.stream.write(self._take_line())
                self.stream.flush()
        self._handlers = []


class _ClearingFormatter(logging.Formatter):
    """The handler's own formatter, with the progress line cleared in front of each record."""

    def __init__(self, progress: Progress, inner: logging.Formatter):
        super().__init__()
        self.progress, self.inner = progress, inner

    def format(self, record: logging.LogRecord) -> str:
        return self.progress._take_line() + self.inner.format(record)


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
