"""The sandbox: Lua 5.1 semantics, no host access, limits that hold, and a faithful round trip."""
from __future__ import annotations

import pytest

from engine.errors import ScriptError
from engine.lua.sandbox import LuaSandbox, Script


@pytest.fixture(scope="module")
def sandbox() -> LuaSandbox:
    return LuaSandbox()


@pytest.fixture(scope="module")
def patient() -> LuaSandbox:
    """For memory bombs: on a busy machine filling 64 MiB can take longer than the default second."""
    return LuaSandbox(timeout=20)


def run(sandbox: LuaSandbox, source: str, obj=None, name: str = "case.lua"):
    return sandbox.run(Script("test", source, name), {} if obj is None else obj).value


def test_lua51_semantics(sandbox):
    result = run(sandbox, "return {half = tostring(10/2), has_unpack = unpack ~= nil, version = _VERSION,"
                          " getn = table.getn({1, 2})}")
    assert result == {"half": "5", "has_unpack": True, "version": "Lua 5.1", "getn": 2}


@pytest.mark.parametrize("name", ["os", "io", "debug", "package", "require", "dofile", "loadfile", "python",
                                  "getfenv", "setfenv", "ffi", "jit", "module", "newproxy", "collectgarbage",
                                  "coroutine"])
def test_dangerous_globals_are_absent(sandbox, name):
    assert run(sandbox, f"return {{present = {name} ~= nil}}") == {"present": False}


def test_no_python_object_is_reachable(sandbox):
    result = run(sandbox, "local ok, err = pcall(function() return print.__self__ end) "
                          "return {kind = type(print), ok = ok, err = tostring(err)}")
    assert result["kind"] == "function" and result["ok"] is False
    assert "attempt to index" in result["err"]


def test_string_dump_and_binary_chunks_are_refused(sandbox):
    result = run(sandbox, "local f, err = loadstring(string.char(27) .. 'Lua') "
                          "return {dump = string.dump == nil, loaded = f ~= nil, err = err}")
    assert result == {"dump": True, "loaded": False, "err": "binary chunks are not allowed"}
    with pytest.raises(ScriptError, match="binary chunks"):
        sandbox.compile(Script("bin", "\x1bLua", "bin.lua"))


def test_loaded_code_gets_the_sandbox_environment(sandbox):
    assert run(sandbox, "local f = loadstring('return os, obj.x') local a, b = f() "
                        "return {os = a == nil, x = b}", {"x": 7}) == {"os": True, "x": 7}


def test_libraries_and_string_metatable_are_protected(sandbox):
    with pytest.raises(ScriptError, match="string is read-only"):
        run(sandbox, "string.rep = nil return {}")
    assert run(sandbox, "return {mt = getmetatable('')}") == {"mt": False}
    # A script's globals do not leak into the next run.
    run(sandbox, "leaked = 1 tostring = nil return {}")
    assert run(sandbox, "return {leaked = leaked == nil, s = tostring(1)}") == {"leaked": True, "s": "1"}


@pytest.mark.parametrize("source,reason,line", [
    ("local x = 1\nwhile true do x = x + 1 end", "timeout", 2),
    ("local s = 'x'\nwhile true do s = s .. s end", "memory", None),
    ("local t = {}\nfor i = 1, 1e9 do t[i] = string.rep('x', 65536) .. i end", "memory", None),
    ("local function f() return 1 + f() end\nreturn {f()}", "error", 1),
    ("\n\nerror('boom')", "error", 3),
    ("return obj.missing.field", "error", 1),
    ("while true do pcall(function() while true do end end) end", "timeout", 1),
    ("while true do pcall(string.rep, 'x', 2^30) end", "memory", None),
    ("return 42", "output", None),
    ("return {f = function() end}", "output", None),
    ("local = 1", "syntax", 1),
])
def test_failures_name_the_script_and_line(sandbox, patient, source, reason, line):
    if reason == "memory":
        sandbox = patient
    with pytest.raises(ScriptError) as caught:
        run(sandbox, source, name="scripts/bad.lua")
    error = caught.value
    assert error.reason == reason
    assert error.script == "scripts/bad.lua"
    assert error.line == line
    assert str(error).startswith("script scripts/bad.lua")
    # The host stays healthy: the next run works.
    assert run(sandbox, "return {ok = true}") == {"ok": True}


def test_limits_are_configurable():
    small = LuaSandbox(timeout=0.05, max_memory=2 * 1024 * 1024)
    with pytest.raises(ScriptError, match="0.05s"):
        run(small, "while true do end")
    small = LuaSandbox(timeout=20, max_memory=2 * 1024 * 1024)
    with pytest.raises(ScriptError, match="2 MiB"):
        run(small, "local t = {} for i = 1, 1e6 do t[i] = string.rep('y', 10000) .. i end return {}")
    assert run(small, "local t = {} for i = 1, 1000 do t[i] = i end return {n = #t}") == {"n": 1000}


def test_round_trip_is_faithful(sandbox):
    original = {
        "zeta": {"empty_list": [], "empty_map": {}, "weight": 95, "ratio": 0.25, "port": "8080",
                 "flag": False, "nothing": None},
        "alpha": [{"b": 1, "a": 2}, "text", 3],
        "unicode": "grüße ✓ \"quoted\" \\ back\nline",
        "middle": {"c": 1, "a": 2, "b": 3},
    }
    result = run(sandbox, "return obj", original)
    assert result == original
    assert list(result) == list(original)
    assert list(result["middle"]) == ["c", "a", "b"]
    assert type(result["zeta"]["weight"]) is int and type(result["zeta"]["port"]) is str
    assert result["zeta"]["empty_list"] == [] and isinstance(result["zeta"]["empty_map"], dict)


def test_added_keys_follow_original_order_sorted(sandbox):
    result = run(sandbox, "obj.m.z2 = 1 obj.m.a2 = 2 obj.m.b = nil return obj", {"m": {"c": 0, "b": 0, "a": 0}})
    assert list(result["m"]) == ["c", "a", "a2", "z2"]


def test_json_module(sandbox):
    result = run(sandbox, "local t = json.decode('{\"a\": [1, 2.5, \"x\\\\u00e9\"], \"n\": null}') "
                          "return {a = t.a, n = t.n == json.null, text = json.encode({k = {1, 2}})}")
    assert result == {"a": [1, 2.5, "xé"], "n": True, "text": '{"k":[1,2]}'}
    with pytest.raises(ScriptError, match="json.decode"):
        run(sandbox, "return json.decode('{bad')")


def test_scripts_are_compiled_once(sandbox):
    script = Script("once", "return {n = obj.n}", "once.lua")
    first = sandbox.compile(script)
    assert sandbox.compile(script) is first
    assert [sandbox.run(script, {"n": i}).value["n"] for i in range(3)] == [0, 1, 2]


def test_print_goes_to_the_printer_not_stdout(sandbox, capsys):
    lines = []
    result = sandbox.run(Script("p", "print('hello', 1, nil, true) return {}", "p.lua"), {}, lines.append)
    assert result.printed == ["hello\t1\tnil\ttrue"] and lines == result.printed
    assert capsys.readouterr().out == ""


def test_luajit_runtime_for_envoy_code():
    jit = LuaSandbox(runtime="luajit", timeout=2)
    assert run(jit, "return {v = tostring(10/2)}") == {"v": "5"}
    with pytest.raises(ScriptError) as caught:
        run(jit, "while true do end")
    assert caught.value.reason == "timeout"
    with pytest.raises(ScriptError) as caught:
        run(jit, "local t = {} while true do t[#t + 1] = {} end")
    assert caught.value.reason == "memory"
