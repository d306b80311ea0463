"""The last line of defence: scripts run in a forked worker process that is killed when it overruns.

The Lua-side limits (engine/lua/runner.py) stop almost everything with a precise error, but a single C
call (a backtracking string pattern, say) never returns to the hook, and a bug nobody has thought of yet
could do the same. So the parent never waits longer than the wall-clock deadline of a run: it then
SIGKILLs the worker and starts a fresh one on the next run. The worker's address space is capped with
RLIMIT_AS, so no path inside it can take more memory than that, and it dies with its parent.

Protocol: length-prefixed ``marshal`` frames over two pipes, one request and one reply at a time. The
parent only sends plain data (strings, numbers, lists) and only reads plain data back. A run names its
script by key; the worker compiles a script it lacks (it was restarted, or dropped it) from the source the
parent sends again after a ``("missing",)`` reply, so the source crosses the pipe once, not on every run.
"""
from __future__ import annotations

import ctypes
import fcntl
import marshal
import os
import resource
import select
import signal
import struct
import sys
import time
from typing import Any, Callable, Optional

from engine.lua.runner import LuaState, host_source, runtime_module

_HEADER = struct.Struct("!I")
FIRST_READ = 1 << 16
PIPE_SIZE = 1 << 20
_PR_SET_PDEATHSIG = 1
# Room above the Lua limit for the worker's own Python work (decoding requests, encoding replies).
ADDRESS_SPACE_HEADROOM = 256 * 1024 * 1024


class WorkerGone(Exception):
    """The worker died, or was killed because it overran its deadline."""

    def __init__(self, timed_out: bool):
        self.timed_out = timed_out
        super().__init__("timed out" if timed_out else "worker process died")


def _write_frame(fd: int, payload: bytes) -> None:
    data = memoryview(_HEADER.pack(len(payload)) + payload)
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _widen(fd: int) -> None:
    """A pipe buffer that holds a large object's frame (the tokens of 1,000 http rules are 120 KB, the
    default buffer 64 KB), so the writer does not wait for the reader between chunks (Linux; best effort)."""
    try:
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    except OSError:
        pass


def _read_exact(fd: int, size: int, deadline: Optional[float], up_to: int = 0) -> bytes:
    """At least ``size`` bytes, and at most ``up_to`` when that is larger."""
    chunks, got, limit = [], 0, max(size, up_to)
    while got < size:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(limit - got, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int, deadline: Optional[float] = None) -> bytes:
    """One frame. The first read takes the header and, for most frames, the whole payload: one request and
    one reply at a time, so nothing beyond this frame can be in the pipe."""
    first = _read_exact(fd, _HEADER.size, deadline, up_to=FIRST_READ)
    (size,) = _HEADER.unpack_from(first)
    payload = first[_HEADER.size:]
    if len(payload) < size:
        payload += _read_exact(fd, size - len(payload), deadline)
    return payload


class Worker:
    """A forked process holding one LuaState. ``call`` sends a request and waits until a deadline."""

    def __init__(self, runtime: str, max_memory: int):
        self.runtime, self.max_memory = runtime, max_memory
        self.pid: Optional[int] = None
        self.generation = 0  # bumped on every (re)start: the new process has compiled nothing yet

    def _start(self) -> None:
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        for fd in (request_write, reply_write):
            _widen(fd)
        prelude = host_source()
        runtime_module(self.runtime)  # imported before the fork too: the worker imports nothing
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            os.close(request_write)
            os.close(reply_read)
            _serve(request_read, reply_write, self.runtime, self.max_memory, prelude)
        os.close(request_read)
        os.close(reply_write)
        self.pid, self._to_worker, self._from_worker = pid, request_write, reply_read
        self.generation += 1

    def call(self, request: tuple, deadline: Optional[float],
             meanwhile: Optional[Callable[[], None]] = None) -> Any:
        """Send a request; its reply, or WorkerGone when the worker died or missed the deadline.

        ``meanwhile``: the caller's own work, done while the worker runs (the deadline counts it too)."""
        if self.pid is None:
            self._start()
        self._guarded(lambda: _write_frame(self._to_worker, marshal.dumps(request)))
        if meanwhile is not None:
            try:
                meanwhile()
            except BaseException:  # the reply will not be read: this worker is out of step
                self.stop()
                raise
        return self._guarded(lambda: marshal.loads(_read_frame(self._from_worker, deadline)))

    def _guarded(self, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except TimeoutError:
            self.stop()
            raise WorkerGone(timed_out=True) from None
        except (EOFError, OSError, ValueError, struct.error):
            self.stop()
            raise WorkerGone(timed_out=False) from None
        except BaseException:  # KeyboardInterrupt while waiting: the run is abandoned, so is the worker
            self.stop()
            raise

    def stop(self) -> None:
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        for fd in (self._to_worker, self._from_worker):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass

    def __del__(self) -> None:
        try:
            self.stop()
        except Exception:  # interpreter shutdown
            pass


def _serve(request_fd: int, reply_fd: int, runtime: str, max_memory: int, prelude: str) -> None:
    """The worker's main loop. Exits (never returns) when the parent closes the pipe or dies."""
    try:
        _isolate(request_fd, reply_fd)
        state = LuaState(runtime, prelude)
        _limit_address_space(max_memory)
        while True:
            try:
                request = marshal.loads(_read_frame(request_fd))
            except EOFError:
                break
            try:
                reply = _handle(state, request)
            except MemoryError:
                reply = ("memory",)
            except Exception as exc:  # a bug in graylane's host: reported, the worker goes on
                reply = ("failed", f"{type(exc).__name__}: {exc}")
            _write_frame(reply_fd, marshal.dumps(reply))
    except BaseException:
        pass
    os._exit(0)


def _handle(state: LuaState, request: tuple) -> tuple:
    op = request[0]
    if op == "compile":
        _, key, source, chunkname = request
        return ("compiled", state.compile(key, source, chunkname))
    if op == "run":  # ("run", key, tokens, timeout, max_memory, coverage[, source, chunkname])
        _, key, tokens, timeout, max_memory, coverage, *script = request
        if not state.knows(key):
            if not script:  # a restarted worker, or one that dropped the script: the parent resends it
                return ("missing",)
            error = state.compile(key, *script)
            if error is not None:
                return ("compiled", error)
        return ("ran", *state.run(key, tokens, timeout, max_memory, coverage))
    return ("unknown",)


def _isolate(request_fd: int, reply_fd: int) -> None:
    """Ctrl-C is the parent's to handle; the worker keeps no other file open and dies with its parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    keep = {0, 1, 2, request_fd, reply_fd}
    for name in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else []:
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    sys.stdout = sys.stderr = open(os.devnull, "w")


def _limit_address_space(max_memory: int) -> None:
    """Cap the whole worker at what it uses now plus the Lua limit and some headroom."""
    try:
        with open("/proc/self/statm") as handle:
            used = int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return
    limit = used + 2 * max_memory + ADDRESS_SPACE_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
