"""The Envoy Lua emulation (engine/fulllink/envoy.py + envoy_emulation.lua) and generated coloring code run in it."""
from __future__ import annotations

import random
import re
from urllib.parse import quote

import pytest

from engine.fulllink.color import ColoringSpec, Condition, Rule, generate_lua, in_percentage
from engine.fulllink.color_regex import re2_compile
from engine.fulllink.envoy import EnvoyLuaEmulator, HttpRequest, parse_request
from engine.errors import InvalidInputError, ScriptError


@pytest.fixture(scope="module")
def envoy():
    return EnvoyLuaEmulator(timeout=1.0)


def request(*headers: str, url: str = "GET http://example.com/") -> HttpRequest:
    return parse_request(url, list(headers))


def run(envoy, body: str, *headers: str, url: str = "GET http://example.com/"):
    return envoy.on_request("function envoy_on_request(h)\n" + body + "\nend\n", request(*headers, url=url))


# ---------------------------------------------------------------------------------------------- header map API

def test_get_joins_several_values_with_comma_and_is_case_insensitive(envoy):
    code = """
      local hs = h:headers()
      h:logInfo(hs:get("X-Multi"))
      h:logInfo(tostring(hs:get("missing")))
      h:logInfo(hs:getNumValues("x-multi") .. " " .. hs:getNumValues("missing"))
      h:logInfo(hs:getAtIndex("x-multi", 0) .. " " .. hs:getAtIndex("X-MULTI", 1) .. " " .. tostring(hs:getAtIndex("x-multi", 2)))
      h:logInfo(hs:get(":path") .. " " .. hs:get(":authority") .. " " .. hs:get(":method"))
    """
    result = run(envoy, code, "x-multi: a", "X-Multi: b", url="GET http://Example.com:8080/p?q=1")
    assert [message for _level, message in result.logs] == ["a,b", "nil", "2 0", "a b nil", "/p?q=1 example.com:8080 GET"]
    assert result.error is None


def test_add_appends_replace_removes_all_then_adds_remove_deletes(envoy):
    result = run(envoy, """
      local hs = h:headers()
      hs:add("x-a", "1"); hs:add("X-A", "2")
      hs:replace("x-b", "new")
      hs:replace("X-C", "only")
      hs:remove("x-d")
    """, "x-b: old1", "x-b: old2", "x-d: gone")
    assert result.request.header("x-a") == "1,2"
    assert result.request.header("x-b") == "new"
    assert [v for k, v in result.request.headers if k == "x-b"] == ["new"]
    assert result.request.header("x-c") == "only"
    assert result.request.header("x-d") is None
    assert ("removed", "x-d", "gone", None) in result.changes()
    assert ("set", "x-b", "old1,old2", "new") in result.changes()


def test_pairs_iterates_in_order_and_modifying_while_iterating_fails(envoy):
    result = run(envoy, """
      local seen = {}
      for k, v in pairs(h:headers()) do seen[#seen + 1] = k .. "=" .. v end
      h:logInfo(table.concat(seen, ";"))
      for k, v in pairs(h:headers()) do h:headers():add("x-new", "1") end
    """, "a: 1", "b: 2")
    assert result.logs[0][1] == ":authority=example.com;:path=/;:method=GET;:scheme=http;a=1;b=2"
    assert "can not be modified while iterating" in result.error
    assert result.request.header("x-new") is None


def test_logs_stream_info_connection_metadata_and_body(envoy):
    result = run(envoy, """
      h:logTrace("t"); h:logDebug("d"); h:logInfo("i"); h:logWarn("w"); h:logErr("e"); h:logCritical("c")
      local info = h:streamInfo()
      h:logInfo(info:protocol() .. " " .. info:downstreamDirectRemoteAddress())
      h:logInfo(tostring(h:connection():ssl()) .. " " .. tostring(h:body()) .. " " .. tostring(h:metadata():get("k")))
      h:logInfo(h:base64Escape("graylane"))
      h:headers():setHttp1ReasonPhrase("ignored")
    """)
    assert [level for level, _ in result.logs[:6]] == ["trace", "debug", "info", "warn", "error", "critical"]
    assert result.logs[6][1] == "HTTP/1.1 10.0.0.1:50000"
    assert result.logs[7][1] == "nil nil nil"
    assert result.logs[8][1] == "Z3JheWxhbmU="


def test_clear_route_cache_is_counted(envoy):
    assert run(envoy, "h:clearRouteCache(); h:clearRouteCache()").route_cache_cleared == 2
    assert run(envoy, "").route_cache_cleared == 0


def test_respond_records_a_local_reply_and_stops_the_script(envoy):
    result = run(envoy, """
      h:headers():add("x-before", "1")
      h:respond({[":status"] = "403"}, "denied")
      h:headers():add("x-after", "1")
    """)
    assert result.local_reply == {"headers": {":status": "403"}, "body": "denied"}
    assert result.request.header("x-before") == "1" and result.request.header("x-after") is None
    assert result.error is None


def test_runtime_error_keeps_earlier_changes_like_envoy(envoy):
    result = run(envoy, 'h:headers():replace("x-lane", "gray")\nlocal x = nil\nx.y = 1')
    assert result.request.header("x-lane") == "gray"
    assert result.error.startswith("inlineCode:4:")  # line 1 is the wrapper's


def test_syntax_error_is_a_script_error_with_the_inline_code_line(envoy):
    with pytest.raises(ScriptError) as caught:
        envoy.on_request("function envoy_on_request(h)\n  if then\nend\n", request(), "EnvoyFilter x inlineCode")
    assert caught.value.line == 2
    assert "does not compile" in str(caught.value) and "EnvoyFilter x inlineCode" in str(caught.value)


def test_endless_loop_hits_the_time_limit():
    envoy = EnvoyLuaEmulator(timeout=0.2)
    with pytest.raises(ScriptError) as caught:
        envoy.on_request("function envoy_on_request(h) while true do end end", request(), "loop")
    assert caught.value.reason == "timeout"


def test_code_without_envoy_on_request_does_nothing(envoy):
    result = envoy.on_request("local x = 1", request("a: 1"))
    assert not result.has_on_request and result.changes() == []


def test_no_host_access_from_filter_code(envoy):
    result = run(envoy, 'h:logInfo(tostring(os) .. tostring(io) .. tostring(require))')
    assert result.logs[0][1] == "nilnilnil"


def test_invalid_header_values_are_refused(envoy):
    result = run(envoy, 'h:headers():add("x", "a\\r\\nb")')
    assert "invalid header value" in result.error


def test_seed_tutorial_filter_uses_add_so_a_client_value_survives(envoy):
    """The tutorial's EnvoyFilter (envoy.lua, headers:add) leaves a client-sent lane value next to the new one."""
    seed = """function envoy_on_request(request_handle)
           local header = "agent"
            headers = request_handle:headers()
             version = headers:get(header)
             if (version ~= nil) then
              if (version == "pc") then
                headers:add("my-request-id","canary")
              else
                headers:add("my-request-id","base")
              end
             else
              headers:add("my-request-id","base")
             end
           end"""
    assert envoy.on_request(seed, request("agent: pc")).request.header("my-request-id") == "canary"
    assert envoy.on_request(seed, request()).request.header("my-request-id") == "base"
    spoofed = envoy.on_request(seed, request("my-request-id: canary"))
    assert spoofed.request.header("my-request-id") == "canary,base"


def test_parse_request_forms_and_errors():
    parsed = parse_request("POST https://Shop.Example.com:8443/a/b?x=1", ["X-Up: v ", "cookie: a=b"])
    assert (parsed.method, parsed.authority, parsed.host, parsed.port, parsed.path, parsed.scheme) == \
        ("POST", "shop.example.com:8443", "shop.example.com", 8443, "/a/b?x=1", "https")
    assert parsed.headers == [("x-up", "v"), ("cookie", "a=b")]
    assert parse_request("example.com").describe() == "GET http://example.com/"
    for bad, message in (("FETCH http://x/", "unknown method"), ("ftp://x/", "is not an http"), ("", "needs a URL")):
        with pytest.raises(InvalidInputError, match=message):
            parse_request(bad)
    for bad in ("no-colon", ":path: /x", "host: x", "bad name: v"):
        with pytest.raises(InvalidInputError):
            parse_request("http://x/", [bad])


# ---------------------------------------------------------------------------------------------- generated code

def reference_lane(spec: ColoringSpec, req: HttpRequest):
    """What the coloring should do, computed in Python: the lane header value after the gateway."""
    existing = req.header(spec.header)
    if spec.existing == "trust" and existing is not None:
        return existing
    for rule in spec.rules:
        if all(_holds(c, req, spec.salt) for c in rule.conditions):
            return rule.lane
    return spec.default


def _value(condition: Condition, req: HttpRequest):
    if condition.source == "header":
        return req.header(condition.name)
    if condition.source == "cookie":
        raw = req.header("cookie")
        for pair in re.split(r"[;,]", raw or ""):
            key, sep, value = pair.partition("=")
            if sep and key.strip() == condition.name:
                value = value.strip()
                return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
        return None
    from urllib.parse import unquote_plus
    query = req.path.split("?", 1)[1].split("#", 1)[0] if "?" in req.path else None
    for pair in (query or "").split("&"):
        if pair:
            key, _, value = pair.partition("=")
            if unquote_plus(key) == condition.name:
                return unquote_plus(value)
    return None


def _holds(condition: Condition, req: HttpRequest, salt: str) -> bool:
    value = _value(condition, req)
    if condition.operator == "percentage":
        return in_percentage(value, condition.percent, salt)
    if value is None:
        return False
    if condition.operator == "present":
        return True
    if condition.operator == "exact":
        return value == condition.value
    if condition.operator == "prefix":
        return value.startswith(condition.value)
    return re2_compile(condition.value).fullmatch(value) is not None


TRICKY = ['pc', 'a"b', "back\\slash", "new\nline", "]]", "]]..os.exit()..[[", "tab\tx", "ünï", "", "%s", "'"]

SPEC = ColoringSpec("my-request-id", (
    Rule((Condition("header", "agent", "exact", "pc"),), "canary"),
    Rule((Condition("header", "x-tricky", "exact", 'a"b]]\\\n'),), "tricky"),
    Rule((Condition("header", "user-agent", "prefix", "Mozilla/5.0 (iPhone"),), "canary"),
    Rule((Condition("header", "x-group", "regex", "(?i)beta|staff-[0-9]+"),), "canary"),
    Rule((Condition("header", "x-debug", "present"),), "debug"),
    Rule((Condition("cookie", "lane", "exact", "gray"),), "canary"),
    Rule((Condition("query", "lane", "regex", "gr[ae]y"),), "canary"),
    Rule((Condition("header", "x-region", "exact", "eu"),
          Condition("header", "x-user-id", "percentage", percent=50)), "eu-half"),
    Rule((Condition("header", "x-user-id", "percentage", percent=12.5),), "canary"),
), default="base", salt="tests")


def random_request(rng: random.Random) -> HttpRequest:
    headers = []
    pool = [
        ("agent", ["pc", "PC", "mac", "pc ", ""]),
        ("x-tricky", ['a"b]]\\\n'.replace("\n", "n"), 'a"b]]\\', "x"]),
        ("user-agent", ["Mozilla/5.0 (iPhone; CPU)", "Mozilla/5.0 (X11)", "curl/8"]),
        ("x-group", ["beta", "BETA", "staff-12", "staff-", "beta2"]),
        ("x-debug", ["", "1"]),
        ("cookie", ["lane=gray", "a=1; lane=gray", 'lane="gray"', "lane=grey", "xlane=gray", "a=1, lane=gray"]),
        ("x-region", ["eu", "us"]),
        ("x-user-id", [f"user-{rng.randrange(100000)}" for _ in range(3)]),
        ("my-request-id", ["canary", "base", "debug"]),
    ]
    for name, values in pool:
        if rng.random() < 0.3:
            headers.append((name, rng.choice(values)))
    query = rng.choice(["", "?lane=gray", "?lane=grey", "?x=1&lane=gr%61y", "?lane", "?a=b&lane=blue#x"])
    return HttpRequest("GET", "example.com", "/shop" + query, "http", headers)


def test_generated_coloring_matches_the_reference_on_many_requests(envoy):
    code = generate_lua(SPEC)
    rng = random.Random(4)
    lanes = set()
    for _ in range(600):
        req = random_request(rng)
        result = envoy.on_request(code, req)
        assert result.error is None
        expected = reference_lane(SPEC, req)
        assert result.request.header("my-request-id") == expected, req
        lanes.add(expected)
        changed = any(name == "my-request-id" for _a, name, _o, _n in result.changes())
        assert bool(result.route_cache_cleared) == changed
        # nothing but the lane header changes
        assert all(name == "my-request-id" for _a, name, _o, _n in result.changes())
    assert {"canary", "base", "debug", "eu-half"} <= lanes


@pytest.mark.parametrize("value", TRICKY)
def test_tricky_values_cannot_break_out_of_strings(envoy, value):
    spec = ColoringSpec("x-lane", (Rule((Condition("header", "x-v", "exact", value),), "gray"),
                                   Rule((Condition("cookie", "c", "prefix", value or "z"),), "gray"),
                                   Rule((Condition("query", value or "q", "exact", value),), "gray")),
                        default=None, salt=value)
    code = generate_lua(spec)
    assert all(0x20 <= ord(c) < 0x7F or c == "\n" for c in code)
    exact = HttpRequest("GET", "x", "/", "http", [("x-v", value)])
    assert envoy.on_request(code, exact).request.header("x-lane") == "gray"
    assert envoy.on_request(code, HttpRequest("GET", "x", "/", "http", [("x-v", value + "!")])) \
        .request.header("x-lane") is None
    if value:
        path = "/?" + quote(value, safe="") + "=" + quote(value, safe="")
        assert envoy.on_request(code, HttpRequest("GET", "x", path, "http", [])).request.header("x-lane") == "gray"


def test_overwrite_is_the_default_and_trust_keeps_the_client_value(envoy):
    rules = (Rule((Condition("header", "agent", "exact", "pc"),), "canary"),)
    overwrite = generate_lua(ColoringSpec("my-request-id", rules, "base"))
    trust = generate_lua(ColoringSpec("my-request-id", rules, "base", existing="trust"))
    no_default = generate_lua(ColoringSpec("my-request-id", rules, None))
    spoofed = request("my-request-id: canary")
    assert envoy.on_request(overwrite, spoofed).request.header("my-request-id") == "base"
    assert envoy.on_request(trust, spoofed).request.header("my-request-id") == "canary"
    assert envoy.on_request(trust, spoofed).route_cache_cleared == 0
    assert envoy.on_request(trust, request()).request.header("my-request-id") == "base"
    removed = envoy.on_request(no_default, spoofed)
    assert removed.request.header("my-request-id") is None and removed.route_cache_cleared == 1
    assert envoy.on_request(no_default, request("agent: pc")).request.header("my-request-id") == "canary"
    double = envoy.on_request(overwrite, request("agent: pc", "my-request-id: base", "my-request-id: canary"))
    assert [v for k, v in double.request.headers if k == "my-request-id"] == ["canary"]
    unchanged = envoy.on_request(overwrite, request("my-request-id: base"))
    assert unchanged.changes() == [] and unchanged.route_cache_cleared == 0


def test_percentage_is_stable_per_user_and_close_to_the_share(envoy):
    spec = ColoringSpec("x-lane", (Rule((Condition("header", "x-user-id", "percentage", percent=10),), "gray"),),
                        None, salt="release-7")
    code = generate_lua(spec)
    chosen = [envoy.on_request(code, request(f"x-user-id: {i}")).request.header("x-lane") == "gray"
              for i in range(1000)]
    assert 70 <= sum(chosen) <= 130
    again = [envoy.on_request(code, request(f"x-user-id: {i}")).request.header("x-lane") == "gray"
             for i in range(1000)]
    assert chosen == again
    assert chosen == [in_percentage(str(i), 10, "release-7") for i in range(1000)]
    assert envoy.on_request(code, request()).request.header("x-lane") is None
