"""Runs untrusted traffic-routing scripts: Lua 5.1 semantics, no host access, time and memory limits.

Two lines of defence. Inside Lua (engine/lua/sandbox.lua, engine/lua/runner.py): a fresh environment per
run, a count hook for time, the allocator for memory, raw-only conversion, bounded C calls. Around it
(engine/lua/worker.py): scripts run in a forked worker process with a capped address space, which the
parent SIGKILLs and replaces when a run misses its wall-clock deadline, whatever the script did.

Why LuaJIT 2.1 (lupa.luajit21): Kruise runs these scripts on gopher-lua and Envoy on LuaJIT, both Lua 5.1
semantics, so either dialect fits, and LuaJIT halves the cost of a run. Both limits stay exact: lupa caps
LuaJIT's allocator per run as PUC Lua's, and only the host's own conversion code is compiled; scripts run
in the interpreter, where the count hook fires (README, "The sandbox"). PUC Lua 5.1 (``runtime="lua51"``)
remains for line coverage, whose denominator is read from its bytecode.
"""
from __future__ import annotations

import _thread  # threading.Lock itself, without importing threading (about 1 ms of start-up)
import itertools
import json
import re
import sys
import time
from typing import Any, Callable, Optional, Sequence

from engine.errors import InvalidInputError, ScriptError
from engine.lua.convert import to_tokens
from engine.lua.runner import LuaState, runtime_module
from engine.lua.worker import Worker, WorkerGone
from engine.records import FrozenRecord, Record

DEFAULT_RUNTIME = "luajit"
COVERAGE_RUNTIME = "lua51"
DEFAULT_TIMEOUT = 1.0
DEFAULT_MAX_MEMORY = 64 * 1024 * 1024
MIN_MAX_MEMORY = 1024 * 1024
MAX_TIMEOUT = 3600.0
MAX_MAX_MEMORY = 64 * 1024 ** 3
MAX_PRINTED_LINES = 1000
MAX_FRAMES = 20  # sandbox.lua sends no more

_LOCATION = re.compile(r"^(?P<chunk>[^\n]*?):(?P<line>\d+): (?P<message>.*)$", re.S)
_UNPRINTABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


class Script(FrozenRecord):
    """A script's source and where it came from (shown in every error): ``origin`` is a path, "configmap FILE
    key", or "builtin:<key>"."""

    __slots__ = ("key", "source", "origin")

    def __init__(self, key: str, source: str, origin: str):
        self._freeze(key, source, origin)


class _Compiled(Record):
    __slots__ = ("key", "script")

    def __init__(self, key: int, script: Script):
        self.key, self.script = key, script


class RunResult(Record):
    """What a script returned (as plain Python data) and the lines it printed."""

    __slots__ = ("value", "printed")

    def __init__(self, value: Any, printed: Optional[list[str]] = None):
        self.value, self.printed = value, [] if printed is None else printed


def grace(timeout: float) -> float:
    """How long after the time limit the parent waits for the worker's own error (which names the line)
    before it kills the worker: the hook checks the wall clock every HOOK_INTERVAL instructions, so only a
    single long C call, or a machine too busy to schedule the worker, gets that far."""
    return max(0.5, timeout / 2)


class LuaSandbox:
    """Compiles each script once and runs it many times, each run in a pristine environment.

    Thread-safe (one run at a time). ``isolation="process"`` (the default) runs scripts in a worker
    process; ``"inline"`` runs them in this process with only the Lua-side limits (for benchmarks that
    measure what the worker costs). ``runtime``: "luajit" (the default, and what Envoy embeds) or
    "lua51" (PUC Lua 5.1), with the same limits.
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, max_memory: int = DEFAULT_MAX_MEMORY,
                 runtime: str = DEFAULT_RUNTIME, isolation: str = "process"):
        self.timeout, self.max_memory = check_limits(timeout, max_memory)
        if runtime not in ("lua51", "luajit"):
            raise ValueError("runtime must be lua51 or luajit")
        if isolation not in ("process", "inline"):
            raise ValueError("isolation must be process or inline")
        self.runtime_name, self.isolation = runtime, isolation
        self._lock = _thread.allocate_lock()
        self._state: Optional[LuaState] = LuaState(runtime) if isolation == "inline" else None
        self._worker: Optional[Worker] = Worker(runtime, self.max_memory) if isolation == "process" else None
        self._compiled: dict[tuple[str, str], _Compiled] = {}
        self._keys = itertools.count(1)  # the worker's name for a compiled script (under the lock)
        self._coverage: Optional[LuaSandbox] = None  # PUC Lua 5.1, for runs that record lines

    def compile(self, script: Script) -> _Compiled:
        """Compile (once) and return a handle; a syntax error raises ScriptError."""
        cache_key = (script.origin, script.source)
        compiled = self._compiled.get(cache_key)
        if compiled is None:
            with self._lock:
                key = next(self._keys)
                if self._state is not None:
                    error = self._state.compile(key, script.source, "@" + script.origin)
                else:
                    error = self._call(("compile", key, script.source, "@" + script.origin), script)[1]
            if error is not None:
                raise _script_error(script, error, "syntax")
            compiled = self._compiled[cache_key] = _Compiled(key, script)
        return compiled

    def run(self, script: Script, obj: Any, printer: Optional[Callable[[str], None]] = None,
            lines: Optional[set[int]] = None, meanwhile: Optional[Callable[[], None]] = None) -> RunResult:
        """Run ``script`` with global ``obj``; returns the script's table as plain Python data.

        ``lines``: when given, the line numbers the script's own chunk executed are added to it (also when
        the run fails; not when its worker had to be killed), for ``graylane test --coverage``. Such runs
        are made on PUC Lua 5.1, whose bytecode tells which lines can run (engine/lua/coverage.py): LuaJIT
        reports the lines of a multi-line table constructor differently. ``meanwhile``: the caller's own
        work, done while the worker process runs the script (on another core), else after the run.
        """
        if lines is not None and self.runtime_name != COVERAGE_RUNTIME:
            return self._coverage_sandbox().run(script, obj, printer, lines, meanwhile)
        compiled = self.compile(script)
        tokens = to_tokens(obj)
        coverage = lines is not None
        with self._lock:
            if self._state is not None:
                result = self._state.run(compiled.key, tokens, self.timeout, self.max_memory, coverage)
                if meanwhile is not None:
                    meanwhile()
            else:
                # The source goes only to a worker that lacks the script (a restarted one, or one that
                # dropped it): marshalling and piping 38 KB of built-in script on every run cost ~37 µs.
                request = ("run", compiled.key, tokens, self.timeout, self.max_memory, coverage)
                reply = self._call(request, script, meanwhile)
                if reply[0] == "missing":
                    reply = self._call(request + (script.source, "@" + script.origin), script)
                if reply[0] != "ran":
                    raise _script_error(script, str(reply[1]), "syntax")
                result = reply[1:]
        ok, detail, line, message, printed, executed, frames = result
        if lines is not None and executed:
            lines.update(number for number in executed if type(number) is int and number > 0)
        printed_lines = [printable(text) for text in printed[:MAX_PRINTED_LINES]]
        if printer:
            for text in printed_lines:
                printer(text)
        if ok:
            return RunResult(_parse_result(script, detail), printed_lines)
        if detail == "timeout":
            raise ScriptError(script.origin, f"exceeded the time limit of {self.timeout:g}s", line, "timeout",
                              script.source)
        if detail == "memory":
            raise ScriptError(script.origin, f"exceeded the memory limit of {self.max_memory // (1024 * 1024)} MiB",
                              line, "memory", script.source)
        if detail == "output":
            raise ScriptError(script.origin, f"output: {printable(message or '')}", None, "output")
        raise _script_error(script, message, "error", _checked_frames(frames))

    def _coverage_sandbox(self) -> "LuaSandbox":
        if self._coverage is None:
            self._coverage = LuaSandbox(self.timeout, self.max_memory, COVERAGE_RUNTIME, self.isolation)
        return self._coverage

    def _call(self, request: tuple, script: Script, meanwhile: Optional[Callable[[], None]] = None) -> tuple:
        """One request to the worker; a missed deadline or a dead worker becomes the script's error."""
        assert self._worker is not None
        deadline = time.monotonic() + self.timeout + grace(self.timeout)
        try:
            reply = self._worker.call(request, deadline, meanwhile)
        except WorkerGone as gone:
            if gone.timed_out:
                raise ScriptError(script.origin, f"exceeded the time limit of {self.timeout:g}s "
                                                 "(stopped by killing its worker process)", None, "timeout") from None
            raise ScriptError(script.origin, f"exceeded the memory limit of {self.max_memory // (1024 * 1024)} MiB "
                                             "(its worker process died)", None, "memory") from None
        if reply[0] == "failed":
            raise ScriptError(script.origin, f"the sandbox failed: {reply[1]}", None, "error")
        if reply[0] == "memory":
            raise ScriptError(script.origin, f"exceeded the memory limit of {self.max_memory // (1024 * 1024)} MiB",
                              None, "memory")
        return reply

    def close(self) -> None:
        """Stop the worker process (it also stops when this process exits)."""
        if self._worker is not None:
            self._worker.stop()
        if self._coverage is not None:
            self._coverage.close()


def check_limits(timeout: Any, max_memory: Any) -> tuple[float, int]:
    """Limits from flags or callers: finite, positive, within reason; else InvalidInputError."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (0 < timeout <= MAX_TIMEOUT):
        raise InvalidInputError(f"--timeout must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}, "
                                f"got {timeout!r}")
    if (isinstance(max_memory, bool) or not isinstance(max_memory, int)
            or not (MIN_MAX_MEMORY <= max_memory <= MAX_MAX_MEMORY)):
        raise InvalidInputError(f"--max-memory must be from 1 to {MAX_MAX_MEMORY // 1024 ** 2} MiB, got "
                                f"{max_memory if not isinstance(max_memory, int) else max_memory // 1024 ** 2!r}"
                                f"{' MiB' if isinstance(max_memory, int) else ''}")
    return float(timeout), max_memory


def _parse_result(script: Script, text: Optional[str]) -> Any:
    try:
        return json.loads(text or "null")
    except (ValueError, RecursionError) as exc:
        raise ScriptError(script.origin, f"output: not valid JSON: {exc}", reason="output") from None


def printable(text: str) -> str:
    """Script-controlled text for a terminal: no raw line breaks or escape sequences."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                            else f"\\u{ord(m.group()):04x}", text)


def _script_error(script: Script, message: Optional[str], reason: str,
                  frames: Sequence[tuple[int, str]] = ()) -> ScriptError:
    """The error with its line: from the message's location, else (error(msg, 0), an error in loaded code)
    the innermost frame of the script itself; with the source and frames for the report's caret and traceback."""
    match = _LOCATION.match(message or "")
    if match and match.group("chunk").endswith(script.origin[-40:]):
        return ScriptError(script.origin, printable(match.group("message")), int(match.group("line")), reason,
                           script.source, frames)
    return ScriptError(script.origin, printable(message or "failed without a message"),
                       frames[0][0] if frames else None, reason, script.source, frames)


def _checked_frames(frames: Any) -> list[tuple[int, str]]:
    """The worker's frames as (line, name) pairs of plain ints and printable strings; anything else dropped."""
    checked = []
    for frame in frames[:MAX_FRAMES] if isinstance(frames, (list, tuple)) else ():
        if (isinstance(frame, (list, tuple)) and len(frame) == 2 and type(frame[0]) is int and frame[0] > 0
                and type(frame[1]) is str):
            checked.append((frame[0], printable(frame[1])))
    return checked


def stderr_printer(prefix: str) -> Callable[[str], None]:
    """A print() target for scripts that keeps stdout clean for YAML output."""
    return lambda line: print(f"{prefix}{line}", file=sys.stderr)


def lua_version() -> str:
    """The Lua that runs traffic-routing scripts, as it names itself, and the lupa module embedding it."""
    module = runtime_module(DEFAULT_RUNTIME)
    runtime = module.LuaRuntime(register_eval=False, register_builtins=False)
    return f"{runtime.lua_implementation} ({module.__name__})"
