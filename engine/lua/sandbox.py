"""Runs untrusted traffic-routing scripts: Lua 5.1 semantics, no host access, time and memory limits.

Why PUC Lua 5.1 (lupa.lua51) and not LuaJIT: Kruise runs these scripts on gopher-lua and Envoy on LuaJIT,
both Lua 5.1 semantics, so either dialect fits. LuaJIT converts faster (see README, "Benchmarks"), but on
64-bit LuaJIT lupa's ``max_memory`` is not enforced and count hooks do not fire inside compiled traces,
so neither the memory nor the time limit could be guaranteed. PUC Lua 5.1 enforces both exactly.
"""
from __future__ import annotations

import json
import re
import sys
import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable, Optional

import lupa.lua51 as lua51
import lupa.luajit21 as luajit21

from engine.lua.convert import to_tokens
from engine.errors import ScriptError

DEFAULT_TIMEOUT = 1.0
DEFAULT_MAX_MEMORY = 64 * 1024 * 1024
HOOK_INTERVAL = 1000  # instructions between time checks

_LOCATION = re.compile(r"^(?P<chunk>[^\n]*?):(?P<line>\d+): (?P<message>.*)$", re.S)


@dataclass(frozen=True)
class Script:
    """A script's source and where it came from (shown in every error)."""

    key: str
    source: str
    origin: str  # a path, "configmap FILE key", or "builtin:<key>"


@dataclass
class _Compiled:
    function: Any
    script: Script


@dataclass
class RunResult:
    value: Any
    printed: list[str] = field(default_factory=list)


class LuaSandbox:
    """One Lua state; compiles each script once and runs it many times. Thread-safe (one run at a time).

    ``runtime="luajit"`` is for code written for Envoy (which embeds LuaJIT): its memory limit is checked
    every HOOK_INTERVAL instructions instead of by the allocator, so it is approximate.
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, max_memory: int = DEFAULT_MAX_MEMORY,
                 runtime: str = "lua51"):
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_memory < 1024 * 1024:
            raise ValueError("max_memory must be at least 1 MiB")
        self.timeout = timeout
        self.max_memory = max_memory
        if runtime not in ("lua51", "luajit"):
            raise ValueError("runtime must be lua51 or luajit")
        self.runtime_name = runtime
        self._lua = lua51 if runtime == "lua51" else luajit21
        self._lock = threading.Lock()
        self._runtime = self._lua.LuaRuntime(register_eval=False, register_builtins=False,
                                             unpack_returned_tuples=True, attribute_filter=_no_attributes,
                                             max_memory=0 if runtime == "lua51" else None)
        prelude = resources.files("engine.lua").joinpath("sandbox.lua").read_text(encoding="utf-8")
        host = self._runtime.execute(prelude)
        self._run, self._compile = host["run"], host["compile"]
        # Nothing Python-side stays reachable from Lua globals once the host module is loaded.
        lua_globals = self._runtime.globals()
        for name in ("python", "package", "require", "io", "os", "debug", "dofile", "loadfile", "module"):
            lua_globals[name] = None
        self._compiled: dict[tuple[str, str], _Compiled] = {}
        self._printed: list[str] = []
        self._printer: Optional[Callable[[str], None]] = None
        self._lua_print = self._print  # one Python callable handed to Lua, not one per run

    def compile(self, script: Script) -> _Compiled:
        cache_key = (script.origin, script.source)
        compiled = self._compiled.get(cache_key)
        if compiled is None:
            with self._lock:
                function, error = self._compile(script.source, "@" + script.origin)
            if function is None:
                raise _script_error(script, str(error), "syntax")
            compiled = self._compiled[cache_key] = _Compiled(function, script)
        return compiled

    def run(self, script: Script, obj: Any, printer: Optional[Callable[[str], None]] = None) -> RunResult:
        """Run ``script`` with global ``obj``; returns the script's table as plain Python data."""
        compiled = self.compile(script)
        tokens = to_tokens(obj)
        exact_memory = self.runtime_name == "lua51"
        with self._lock:
            printed = self._printed = []
            self._printer = printer
            runtime = self._runtime
            if exact_memory:
                runtime.set_max_memory(runtime.get_memory_used() + self.max_memory, total=True)
            memory_kb = None if exact_memory else (
                runtime.eval("collectgarbage('count')") + self.max_memory / 1024)
            try:
                ok, detail, line, message = self._run(compiled.function, runtime.table_from(tokens),
                                                       self.timeout, HOOK_INTERVAL, self._lua_print, memory_kb)
            except self._lua.LuaError as exc:  # raised by lupa itself, e.g. memory error while converting
                ok, detail, line, message = False, "memory", None, str(exc)
            except MemoryError as exc:
                ok, detail, line, message = False, "memory", None, str(exc)
            finally:
                if exact_memory:
                    runtime.set_max_memory(0)
            if not ok:
                runtime.execute("collectgarbage()")
        if ok:
            try:
                return RunResult(json.loads(detail), printed)
            except ValueError as exc:  # invalid UTF-8 or similar from the script's strings
                raise ScriptError(script.origin, f"returned text that is not valid UTF-8 JSON: {exc}",
                                  reason="output") from None
        if detail == "timeout":
            raise ScriptError(script.origin, f"exceeded the time limit of {self.timeout:g}s", line, "timeout")
        if detail == "memory":
            raise ScriptError(script.origin, f"exceeded the memory limit of {self.max_memory // (1024 * 1024)} MiB",
                              line, "memory")
        if detail == "output":
            raise ScriptError(script.origin, f"output: {message}", None, "output")
        raise _script_error(script, message, "error")

    def _print(self, *args: Any) -> None:
        """print() inside a script: collected for the caller, never written to stdout."""
        line = "\t".join(_lua_tostring(a) for a in args)
        self._printed.append(line)
        if self._printer:
            self._printer(line)


def _no_attributes(obj: Any, name: str, is_setting: bool) -> str:
    """Defence in depth: should a Python object ever reach Lua, none of its attributes can be read."""
    raise AttributeError("Python objects are not accessible from scripts")


def _script_error(script: Script, message: str, reason: str) -> ScriptError:
    match = _LOCATION.match(message or "")
    if match and match.group("chunk").endswith(script.origin[-40:]):
        return ScriptError(script.origin, match.group("message"), int(match.group("line")), reason)
    return ScriptError(script.origin, message or "failed without a message", None, reason)


def _lua_tostring(value: Any) -> str:
    if value is None:
        return "nil"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if lua51.lua_type(value) == "table" or luajit21.lua_type(value) == "table":
        return f"table: 0x{id(value):x}"
    return str(value)


def stderr_printer(prefix: str) -> Callable[[str], None]:
    """A print() target for scripts that keeps stdout clean for YAML output."""
    return lambda line: print(f"{prefix}{line}", file=sys.stderr)


def lua_version() -> str:
    """The Lua that runs traffic-routing scripts, as it names itself, and the lupa module embedding it."""
    runtime = lua51.LuaRuntime(register_eval=False, register_builtins=False)
    return f"{runtime.eval('_VERSION')} ({lua51.__name__})"
