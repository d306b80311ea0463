"""Coloring: Lua string escaping, rule parsing, the regex compiler, the EnvoyFilter, and `graylane color`."""
from __future__ import annotations

import json
import random

import pytest
import yaml
from helpers import SAMPLES, run_graylane

from engine.fulllink.color import (
    LUA_FILTER_NAME,
    LUA_TYPE_URL,
    ColoringSpec,
    Condition,
    GatewayTarget,
    Rule,
    envoy_filter,
    generate_lua,
    lane_bucket,
    lua_string,
    parse_coloring,
    parse_rule_flag,
)
from engine.fulllink.color_regex import (
    LUA_MATCHER,
    RegexError,
    compile_regex,
    lua_program,
    re2_compile,
    run_program,
)
from engine.errors import InvalidInputError
from engine.lua.sandbox import LuaSandbox, Script


def fail(message, where):
    return InvalidInputError(message, field=where)


@pytest.fixture(scope="module")
def lua():
    sandbox = LuaSandbox(runtime="luajit")

    def evaluate(source: str):
        return sandbox.run(Script("t", source, "test"), {}).value
    return evaluate


# ---------------------------------------------------------------------------------------------- escaping

HOSTILE = ['"', "\\", "\n", "\r\n", "]]", "]=]", '"]] .. os.exit() .. [["', "\\\"", "\0nul", "\x7f\x01",
           "ünïcødé ✓", "end; os.exit()", "--[[", "\\065", "a\\", "tab\there", "%d %s"]


def test_lua_string_is_printable_ascii_and_round_trips(lua):
    for value in HOSTILE + ["".join(chr(c) for c in range(256))]:
        literal = lua_string(value)
        assert "\n" not in literal and all(0x20 <= ord(c) < 0x7F for c in literal)
        back = lua(f"return {{v = {literal}}}")["v"]
        assert back == value, (value, literal)


def test_every_user_value_in_generated_code_is_escaped(lua):
    rules = tuple(Rule((Condition("header", "x-h", "exact", v),), "canary") for v in HOSTILE) + tuple(
        Rule((Condition("query", v, "prefix", v),), "canary") for v in HOSTILE)
    spec = ColoringSpec("x-lane", rules, default="b\"]]", salt="s\n]]")
    code = generate_lua(spec)
    assert all(0x20 <= ord(c) < 0x7F or c == "\n" for c in code)
    # the code compiles and defines exactly envoy_on_request as a global
    assert lua(code + "\nreturn {t = type(envoy_on_request)}") == {"t": "function"}
    for value in HOSTILE:
        assert lua_string(value) in code


# ---------------------------------------------------------------------------------------------- rule syntax

@pytest.mark.parametrize("text,expected", [
    ("header:agent=pc", Condition("header", "agent", "exact", "pc")),
    ("header:Agent^=Mozilla", Condition("header", "agent", "prefix", "Mozilla")),
    ("header:x-group~=beta|staff", Condition("header", "x-group", "regex", "beta|staff")),
    ("header:x-debug", Condition("header", "x-debug", "present")),
    ("cookie:lane=gray", Condition("cookie", "lane", "exact", "gray")),
    ("query:lane=a=b", Condition("query", "lane", "exact", "a=b")),
    ("header::authority=shop.example.com", Condition("header", ":authority", "exact", "shop.example.com")),
    ("percent:12.5:header:x-user-id", Condition("header", "x-user-id", "percentage", percent=12.5)),
    ("percent:10%:cookie:uid", Condition("cookie", "uid", "percentage", percent=10.0)),
])
def test_rule_flags(text, expected):
    rule = parse_rule_flag(text, "canary", fail)
    assert rule.conditions == (expected,) and rule.lane == "canary"


def test_rule_flag_conjunction_and_lane():
    rule = parse_rule_flag("header:agent=pc && percent:50:header:x-user-id=>gray", "canary", fail)
    assert [c.operator for c in rule.conditions] == ["exact", "percentage"] and rule.lane == "gray"


@pytest.mark.parametrize("text,message", [
    ("agent=pc", "expected header:NAME=VALUE"),
    ("header:bad name=x", "not a valid HTTP header name"),
    ("header:x~=(a", "not a valid RE2"),
    ("header:x~=[[:alpha:]]", "POSIX classes"),
    ("percent:101:header:x", "from 0 to 100"),
    ("percent:1.234:header:x", "two decimals"),
    ("header:x=1=>", "non-empty"),
    ("header:x=1=>bad\tlane", "not a valid header value"),
    ("cookie:a;b=1", "not a valid cookie name"),
])
def test_rule_flag_errors(text, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_rule_flag(text, "canary", fail)


def test_parse_coloring_section():
    spec = parse_coloring({"rules": [{"header": "agent", "exact": "pc"},
                                     {"all": [{"cookie": "beta", "present": True},
                                              {"percentage": 20, "hashOn": {"query": "uid"}}], "value": "beta"}],
                           "default": None, "existingHeader": "trust"}, "spec.coloring", "x-lane", "gray", fail,
                          default_salt="my-release")
    assert spec.default is None and spec.existing == "trust" and spec.salt == "my-release"
    assert spec.rules[0].lane == "gray" and spec.rules[1].lane == "beta"
    assert parse_coloring(None, "c", "x-lane", "gray", fail).default == "base"
    for data, where in (({"rules": [{"header": "a"}]}, "spec.coloring.rules[0]"),
                        ({"rules": [{"header": "a", "exact": 1}]}, "spec.coloring.rules[0].exact"),
                        ({"rules": [{"header": "a", "exact": "1", "prefix": "1"}]}, "spec.coloring.rules[0]"),
                        ({"rules": [{"percentage": 5}]}, "spec.coloring.rules[0].hashOn"),
                        ({"rules": [{"header": "a", "present": False}]}, "spec.coloring.rules[0].present"),
                        ({"existingHeader": "keep"}, "spec.coloring.existingHeader"),
                        ({"default": "two\nlines"}, "spec.coloring.default"),
                        ({"color": 1}, "spec.coloring")):
        with pytest.raises(InvalidInputError) as caught:
            parse_coloring(data, "spec.coloring", "x-lane", "gray", fail)
        assert caught.value.field == where, (data, caught.value)


# ---------------------------------------------------------------------------------------------- regexes

REGEXES = ["pc", "^(pc|mac)$", ".*iPhone.*", "user-[0-9]+", "(?i)PC|Mac", "a{2,4}", "a{2,}b?", r"\d+\.\d*",
           "[^a-c]x", "x*", "(a|ab)(c|bcd)(d*)", r"\bfoo\b.*", "é.", "[éa]+", ".", "(?s).", "a|b|", "", r"\w+@\w+",
           r"[\s,]*", "(?:ab)+$", "^$", r"\S+", "[a-z-]+", r"(?m)^x$", "...", "(?i)[a-c]z"]
TEXTS = ["pc", "mac", "PC", "Mozilla iPhone x", "user-12", "user-", "aa", "aaaa", "aaaaa", "aab", "aaaab", "12.5",
         "", "dx", "ax", "xxxx", "abcd", "foo bar", "foobar", "éa", "é", "\n", "ab", "a", "b", "x@y", " , ",
         "abab", "x\ny", "a-b", "Bz", "xé", "€", "日本"]


def test_regex_program_agrees_with_re2():
    for pattern in REGEXES:
        program = compile_regex(pattern)
        expression = re2_compile(pattern)
        for value in TEXTS:
            assert run_program(program, value) == (expression.fullmatch(value) is not None), (pattern, value)


def test_lua_matcher_agrees_with_re2_on_random_inputs(lua):
    rng = random.Random(7)
    alphabet = "abcx-@. \né"
    samples = TEXTS + ["".join(rng.choice(alphabet) for _ in range(rng.randrange(8))) for _ in range(60)]
    programs = "{" + ",".join(lua_program(p) for p in REGEXES) + "}"
    values = "{" + ",".join(lua_string(v) for v in samples) + "}"
    result = lua(LUA_MATCHER + f"""
local programs, values = {programs}, {values}
local out = {{}}
for i, p in ipairs(programs) do
  local row = {{}}
  for j, v in ipairs(values) do row[j] = re_full_match(p, v) end
  out[i] = row
end
return {{out = out}}""")["out"]
    for i, pattern in enumerate(REGEXES):
        for j, value in enumerate(samples):
            assert result[i][j] == (re2_compile(pattern).fullmatch(value) is not None), (pattern, value)


def test_regex_matching_is_linear_not_backtracking(lua):
    program = lua_program("(a*)*b")
    started = lua(LUA_MATCHER + f'return {{v = re_full_match({program}, string.rep("a", 3000))}}')
    assert started == {"v": False}


@pytest.mark.parametrize("pattern,message", [
    ("(a", "not a valid RE2"), (r"(a)\1", "not a valid RE2"), ("a(?=b)", "not a valid RE2"),
    ("[[:alpha:]]", "POSIX"), (r"\pL", "does not support"), ("[α-ω]", "beyond ASCII"), ("(?i)é", "non-ASCII"),
    (".{400}", "too large"), ("[^é]", "non-ASCII characters in a negated class"),
])
def test_unsupported_regexes_are_refused_clearly(pattern, message):
    with pytest.raises(RegexError, match=message):
        compile_regex(pattern)


# ---------------------------------------------------------------------------------------------- EnvoyFilter

def test_envoy_filter_uses_current_names_and_targets_the_gateway():
    spec = ColoringSpec("my-request-id", (Rule((Condition("header", "agent", "exact", "pc"),), "canary"),))
    body = envoy_filter(spec, GatewayTarget("coloring", "istio-system", {"istio": "ingressgateway"}))
    assert body["apiVersion"] == "networking.istio.io/v1alpha3" and body["kind"] == "EnvoyFilter"
    assert body["metadata"]["namespace"] == "istio-system"
    assert body["spec"]["workloadSelector"] == {"labels": {"istio": "ingressgateway"}}
    (patch,) = body["spec"]["configPatches"]
    assert patch["applyTo"] == "HTTP_FILTER"
    assert patch["match"] == {"context": "GATEWAY", "listener": {"filterChain": {"filter": {
        "name": "envoy.filters.network.http_connection_manager",
        "subFilter": {"name": "envoy.filters.http.router"}}}}}
    assert patch["patch"]["operation"] == "INSERT_BEFORE"
    value = patch["patch"]["value"]
    assert value["name"] == LUA_FILTER_NAME == "envoy.filters.http.lua"
    assert value["typed_config"]["@type"] == LUA_TYPE_URL
    assert "function envoy_on_request(request_handle)" in value["typed_config"]["inlineCode"]
    assert "clearRouteCache()" in value["typed_config"]["inlineCode"]
    assert "envoy.lua" not in json.dumps(body) and ".v2." not in json.dumps(body)
    assert "workloadSelector" not in envoy_filter(spec, GatewayTarget("c", "istio-system", {}))["spec"]


def test_generated_filters_pass_the_envoyfilter_schema():
    from engine.checks.schemas import validator_for
    spec = ColoringSpec("x", (Rule((Condition("header", "a", "regex", "b+"),), "gray"),))
    assert list(validator_for("envoyfilter").iter_errors(envoy_filter(spec, GatewayTarget("n")))) == []


def test_lane_bucket_is_deterministic_and_salted():
    assert lane_bucket("user-1", "a") == lane_bucket("user-1", "a")
    assert 0 <= lane_bucket("user-1", "a") < 10000
    assert [lane_bucket(f"u{i}", "a") for i in range(50)] != [lane_bucket(f"u{i}", "b") for i in range(50)]


# ---------------------------------------------------------------------------------------------- CLI

def test_color_cli_from_flags():
    result = run_graylane("color", "--lane-header", "My-Request-Id", "--rule", "header:agent=pc",
                          "--rule", "cookie:lane=gray=>gray", "--default", "base", "--selector", "app=gw",
                          "-n", "gateways")
    assert result.returncode == 0, result.stderr
    (body,) = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert body["metadata"] == {"name": "my-request-id-coloring", "namespace": "gateways",
                                "labels": {"app.kubernetes.io/managed-by": "graylane"},
                                "annotations": {"graylane.io/lane-header": "my-request-id"}}
    assert body["spec"]["workloadSelector"] == {"labels": {"app": "gw"}}
    code = body["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["inlineCode"]
    assert 'if headers:get("agent") == "pc" then return "canary", 1 end' in code
    assert 'if cookie_value(headers, "lane") == "gray" then return "gray", 2 end' in code


def test_color_cli_lua_and_json_and_spec():
    lua_only = run_graylane("color", "--lane-header", "x-lane", "--rule", "header:x~=a|b", "--lua", "--no-default",
                            "--trust-existing")
    assert lua_only.returncode == 0 and lua_only.stdout.startswith("-- Traffic coloring")
    assert "local DEFAULT_LANE = nil" in lua_only.stdout and "keeping the lane header" in lua_only.stdout
    as_json = run_graylane("color", "--lane-header", "x-lane", "-o", "json")
    assert json.loads(as_json.stdout)["kind"] == "EnvoyFilter"
    from_spec = run_graylane("color", "-f", str(SAMPLES / "fulllink" / "fulllink.yaml"))
    assert from_spec.returncode == 0, from_spec.stderr
    assert from_spec.stdout in (SAMPLES / "fulllink" / "envoyfilter.yaml").read_text()


@pytest.mark.parametrize("args,message", [
    ([], "--lane-header is required"),
    (["--lane-header", "x", "--rule", "nope"], "expected header:NAME=VALUE"),
    (["--lane-header", "x", "--default", "a", "--no-default"], "exclude each other"),
    (["--lane-header", "bad header"], "not a valid HTTP header name"),
    (["-f", str(SAMPLES / "fulllink" / "mocka.yaml")], "no FullLinkGray"),
    (["-f", str(SAMPLES / "fulllink" / "fulllink.yaml"), "--rule", "header:a"], "drop --rule"),
    (["--lane-header", "x", "--selector", "novalue"], "KEY=VALUE"),
])
def test_color_cli_errors_are_one_line_with_nothing_on_stdout(args, message):
    result = run_graylane("color", *args)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
