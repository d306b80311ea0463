"""One Lua state with graylane's host (sandbox.lua) loaded: compiles scripts and runs them under the limits.

This is the in-Lua half of the sandbox. It runs inside the worker process (engine/lua/worker.py), which is
the last line of defence around it; the limits here (a count hook for time, the allocator for memory) are
the first line and give the precise error (with the script's line) in every case they can catch.
"""
from __future__ import annotations

import importlib
import os
import re
import time
from types import ModuleType
from typing import Any, Optional

HOOK_INTERVAL = 10000  # instructions between time checks (about 0.1 ms of Lua; each check reads the clock)
# The lupa module of each runtime, imported when a state of it is made: a command loads only the one it runs
# (about 2 ms of start-up each).
RUNTIMES = {"lua51": "lupa.lua51", "luajit": "lupa.luajit21"}
# Compiled functions kept per state; a state that runs more distinct scripts drops the oldest.
MAX_COMPILED = 512
_SURROGATES = re.compile("[\ud800-\udfff]")

# (ok, json text or failure reason, line, message, printed lines, executed lines or None, error frames)
RawResult = tuple[bool, Optional[str], Optional[int], Optional[str], list[str], Optional[list[int]],
                  list[tuple[int, str]]]


_HOST_SOURCE: list[str] = []


def host_source() -> str:
    """sandbox.lua, read once (before any fork, so the worker needs no file or import machinery)."""
    if not _HOST_SOURCE:
        # next to this module (plain open: importlib.resources costs start-up about 8 ms of imports)
        with open(os.path.join(os.path.dirname(__file__), "sandbox.lua"), encoding="utf-8") as file:
            _HOST_SOURCE.append(file.read())
    return _HOST_SOURCE[0]


def runtime_module(runtime: str) -> ModuleType:
    """The lupa module of ``runtime`` (a key of RUNTIMES)."""
    return importlib.import_module(RUNTIMES[runtime])


def _no_attributes(obj: Any, name: str, is_setting: bool) -> str:
    """Defence in depth: should a Python object ever reach Lua, none of its attributes can be read."""
    raise AttributeError("Python objects are not accessible from scripts")


class LuaState:
    """A Lua runtime (PUC Lua 5.1 or LuaJIT) with the host loaded and nothing Python-side reachable."""

    def __init__(self, runtime: str = "lua51", prelude: Optional[str] = None):
        self.runtime_name = runtime
        self.lua = runtime_module(runtime)
        self.runtime = self.lua.LuaRuntime(register_eval=False, register_builtins=False,
                                           unpack_returned_tuples=True, attribute_filter=_no_attributes,
                                           max_memory=0)
        _check_memory_cap(self.runtime, self.lua)
        host = self.runtime.execute(prelude or host_source())
        self._run, self._compile = host["run"], host["compile"]
        host["set_clock"](time.monotonic)
        lua_globals = self.runtime.globals()
        for name in ("python", "package", "require", "io", "os", "debug", "dofile", "loadfile", "module"):
            lua_globals[name] = None
        self._collect = self.runtime.eval("function() collectgarbage() end")
        self._compiled: dict[Any, Any] = {}

    def compile(self, key: Any, source: str, chunkname: str) -> Optional[str]:
        """Compile once per key; returns the syntax error message, or None."""
        if key in self._compiled:
            return None
        function, error = self._compile(source, chunkname)
        if function is None:
            return str(error)
        if len(self._compiled) >= MAX_COMPILED:
            self._compiled.pop(next(iter(self._compiled)))
        self._compiled[key] = function
        return None

    def knows(self, key: Any) -> bool:
        return key in self._compiled

    def run(self, key: Any, tokens: list, timeout: float, max_memory: int, coverage: bool = False) -> RawResult:
        """Run a compiled script on a token list (engine/lua/convert.py) with fresh globals.

        ``coverage``: also return the line numbers the script's own chunk executed (also when it fails).
        """
        runtime = self.runtime
        try:
            table = runtime.table_from(tokens)
        except (UnicodeEncodeError, OverflowError):  # rare values: the slow path
            table = runtime.table_from([_portable(t) for t in tokens])
        runtime.set_max_memory(runtime.get_memory_used() + max_memory, total=True)
        executed = runtime.table() if coverage else None  # filled by the line hook as the script runs
        try:
            ok, detail, line, message, printed, frames = self._run(
                self._compiled[key], table, timeout, HOOK_INTERVAL, max_memory, executed)
            printed = list(printed.values()) if printed is not None else []
            frames = _frames(frames)
        except (self.lua.LuaError, MemoryError):  # the allocator refused lupa itself
            ok, detail, line, message, printed, frames = False, "memory", None, None, [], []
        finally:
            runtime.set_max_memory(0)
        del table
        lines = sorted(int(number) for number in executed.keys()) if executed is not None else None
        if not ok:
            self._collect()
        return ok, detail, line, message, printed, lines, frames


def _check_memory_cap(runtime: Any, module: Any) -> None:
    """The per-run memory limit relies on lupa capping the state's allocator; some lupa builds cannot for
    LuaJIT (they fall back to LuaJIT's own allocator). Refuse to run rather than run without the limit."""
    runtime.set_max_memory(runtime.get_memory_used() + 256 * 1024, total=True)
    try:
        runtime.execute("local s = string.rep('x', 1048576)")
    except (module.LuaMemoryError, module.LuaError, MemoryError):
        return
    finally:
        runtime.set_max_memory(0)
    raise RuntimeError(f"{module.__name__} cannot cap the Lua allocator: install lupa>=2.8")


def _frames(flat: Any) -> list[tuple[int, str]]:
    """The host's flat list line, name, line, name, ... -> [(line, name), ...] (plain ints and strings)."""
    if flat is None:
        return []
    values = list(flat.values())
    return [(int(values[i]), str(values[i + 1])) for i in range(0, len(values) - 1, 2)]


def _portable(token: Any) -> Any:
    """What Kruise's runtime would see (values through Go's encoding/json into gopher-lua): lone
    surrogates become U+FFFD, integers beyond 64 bits become floats."""
    if type(token) is str:
        return _SURROGATES.sub("\ufffd", token.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))
    if type(token) is int and not -2 ** 63 <= token < 2 ** 63:
        return float(token) if abs(token) < 2 ** 1023 else float("inf")
    return token
