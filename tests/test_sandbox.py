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


# -- Coverage and error reports (graylane test --coverage, the caret and traceback of a script error) --------

@pytest.fixture(scope="module", params=["process", "inline"])
def either(request) -> LuaSandbox:
    """Both isolations: the lines and frames cross the worker's pipe as plain data, or come straight back."""
    box = LuaSandbox(timeout=0.3, isolation=request.param)
    yield box
    box.close()


def covered(box: LuaSandbox, source: str, obj=None) -> tuple[set[int], ScriptError | None]:
    lines: set[int] = set()
    try:
        box.run(Script("cov", source, "cov.lua"), {} if obj is None else obj, lines=lines)
    except ScriptError as error:
        return lines, error
    return lines, None


def test_coverage_lines_are_the_script_chunks_own(either):
    from engine.lua.coverage import executable_lines

    source = "local x = obj.n\nif x > 1 then\n  x = 0\nend\nlocal f = loadstring('local a = 1\\nreturn a')\nreturn {x = f()}\n"
    lines, error = covered(either, source, {"n": 1})
    assert error is None
    assert lines == executable_lines(source, "cov.lua") - {3}  # not the untaken branch, not the loaded chunk's


@pytest.mark.parametrize("source,reason,ran", [
    ("local n = 0\nwhile true do end", "timeout", {1, 2}),
    ("local n = 0\nwhile true do n = n + 1 end", "timeout", {1, 2}),
    ("local ok = pcall(function()\n  while true do end\nend)\nreturn {}", "timeout", {1, 2, 3}),
    ("local n = 1\nerror('stop')\nreturn {}", "error", {1, 2}),
    ("local function f() return 1 + f() end\nreturn {f()}", "error", {1, 2}),
    ("local t = {}\nfor i = 1, 1e9 do t[i] = string.rep('x', 64) .. i end", "memory", {1, 2}),
])
def test_coverage_is_kept_when_the_run_fails_and_the_limits_still_hold(source, reason, ran):
    """The line hook must not weaken the sandbox: a one-instruction loop used to dodge the time limit."""
    box = LuaSandbox(timeout=2, max_memory=(2 if reason == "memory" else 64) * 1024 * 1024)
    lines, error = covered(box, source)
    assert error is not None and error.reason == reason, error
    assert lines == ran
    assert "[string" not in str(error)  # nothing of the host's own chunk
    box.close()


def test_a_stack_overflow_under_coverage_is_the_scripts_error(either):
    lines, error = covered(either, "local function f() return 1 + f() end\nreturn {f()}")
    assert (error.reason, error.line, error.message) == ("error", 1, "stack overflow")
    assert error.frames[0] == (1, "function 'f'") and len(error.frames) == 20  # capped


def test_errors_carry_the_scripts_own_frames_innermost_first(either):
    source = ("local function inner()\n  error('no route', 0)\nend\nlocal function outer()\n  inner()\nend\n"
              "local f = loadstring('local g = ... g()')\nf(outer)\nreturn {}\n")
    _, error = covered(either, source)
    # error(msg, 0) has no location: the line is the innermost frame's; the loaded chunk's frame is left out
    assert (error.line, error.message) == (2, "no route")
    assert error.frames == [(2, "function 'inner'"), (5, "function 'g'"), (8, "main chunk")]
    assert error.source == source
    assert error.details() == [
        "      2 |   error('no route', 0)",
        "        |   ^",
        "  traceback (the script's own frames, innermost first):",
        "    cov.lua:2: in function 'inner'",
        "    cov.lua:5: in function 'g'",
        "    cov.lua:8: in main chunk",
    ]


def test_frame_names_are_bounded_and_printable(either):
    _, error = covered(either, "local t = {}\nt['\\27[2J\\n' .. string.rep('n', 500)] = function() error('x') end\n"
                               "t['\\27[2J\\n' .. string.rep('n', 500)]()\nreturn {}")
    (inner_line, name), (outer_line, _) = error.frames
    assert (inner_line, outer_line) == (2, 3)
    assert "\x1b" not in name and "\n" not in name and len(name) < 300


def test_nothing_of_an_error_report_is_kept_for_the_next_run(either):
    _, first = covered(either, "local function f() error('x', 0) end\nf()")
    assert first.frames == [(1, "function 'f'"), (2, "main chunk")]
    _, second = covered(either, "error(setmetatable({}, {}), 0)")  # a table: no frames of the last run
    assert second.frames == [(1, "main chunk")] and second.line == 1
    lines, error = covered(either, "local ok = pcall(error, 'caught')\nreturn {ok = ok}")
    assert error is None and lines == {1, 2}


def test_a_time_limit_in_loaded_code_names_no_line_of_the_script(either):
    _, error = covered(either, "local f = loadstring('\\n\\n\\nwhile true do end')\nf()\nreturn {}")
    assert error.reason == "timeout" and error.line is None


def test_frames_from_the_worker_are_checked_plain_data():
    from engine.lua.sandbox import _checked_frames

    assert _checked_frames([(3, "main chunk"), [4, "function 'f'"], (0, "x"), ("5", "y"), (6, b"z"), (7,), None,
                            (8, "a\x1b\n")]) == [(3, "main chunk"), (4, "function 'f'"), (8, "a\\x1b\\x0a")]
    assert _checked_frames("not a list") == [] and _checked_frames(None) == []
    assert len(_checked_frames([(1, "f")] * 100)) == 20


def test_the_callers_work_runs_while_the_worker_runs_and_its_failure_costs_only_that_worker(sandbox):
    script = Script("m", "return {v = obj.v}", "m.lua")
    done = []
    assert sandbox.run(script, {"v": 1}, meanwhile=lambda: done.append(True)).value == {"v": 1}
    assert done == [True]
    with pytest.raises(KeyError):
        sandbox.run(script, {"v": 2}, meanwhile=lambda: {}["missing"])
    assert sandbox.run(script, {"v": 3}).value == {"v": 3}  # a fresh worker, in step again


class _Requests:
    """Records what the parent sends to its (real) worker process."""

    def __init__(self, box: LuaSandbox):
        self.sent: list[tuple] = []
        worker, call = box._worker, box._worker.call

        def recording(request, *args, **kwargs):
            self.sent.append(request)
            return call(request, *args, **kwargs)
        worker.call = recording

    def sources(self, script: Script) -> int:
        return sum(1 for request in self.sent if script.source in request)


def test_a_run_sends_the_source_only_to_a_worker_that_lacks_it():
    import os
    import signal

    box = LuaSandbox()
    try:
        script = Script("src", "return {n = obj.n} -- " + "x" * 10000, "src.lua")
        requests = _Requests(box)
        assert box.run(script, {"n": 1}).value == {"n": 1}
        assert box.run(script, {"n": 2}).value == {"n": 2}
        assert [request[0] for request in requests.sent] == ["compile", "run", "run"]
        assert requests.sources(script) == 1  # the compile request only, not every run

        os.kill(box._worker.pid, signal.SIGKILL)  # the worker dies between runs
        with pytest.raises(ScriptError):
            box.run(script, {"n": 3})
        requests.sent.clear()
        assert box.run(script, {"n": 4}).value == {"n": 4}  # a fresh worker recompiles it
        assert [request[0] for request in requests.sent] == ["run", "run"] and requests.sources(script) == 1
        requests.sent.clear()
        assert box.run(script, {"n": 5}).value == {"n": 5}
        assert requests.sources(script) == 0
    finally:
        box.close()


def test_a_worker_that_dropped_a_script_gets_its_source_again():
    from engine.lua.runner import MAX_COMPILED

    box = LuaSandbox()
    try:
        first = Script("first", "return {first = obj.n}", "first.lua")
        assert box.run(first, {"n": 1}).value == {"first": 1}
        for i in range(MAX_COMPILED):  # the worker keeps the newest MAX_COMPILED scripts
            box.compile(Script(f"s{i}", f"return {{i = {i}}}", f"s{i}.lua"))
        requests = _Requests(box)
        assert box.run(first, {"n": 2}).value == {"first": 2}
        assert [request[0] for request in requests.sent] == ["run", "run"] and requests.sources(first) == 1
    finally:
        box.close()

