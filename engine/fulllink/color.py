"""Traffic coloring: the Lua an ingress gateway runs to put requests into a lane, and its EnvoyFilter.

Pure: a :class:`ColoringSpec` in, Lua source / an EnvoyFilter dict out. Rules are checked in order and the
first match sets the lane header; otherwise the default applies (or the header is removed when there is
no default). By default a lane header sent by the client is overwritten, so outside callers cannot pick
the gray lane; ``existing="trust"`` keeps it instead.

Every user value reaches the Lua source only through :func:`lua_string` (a double-quoted literal in
which every byte outside printable ASCII, quotes and backslashes is a ``\\ddd`` escape), and regexes only
as tables of numbers (see :mod:`engine.fulllink.color_regex`), so no input can break out of a string.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from engine.fulllink.defaults import (DEFAULT_BASE_VALUE, DEFAULT_LANE_VALUE, DEFAULT_NAMESPACE,  # noqa: F401
                                     DEFAULT_SALT, DEFAULT_SELECTOR)
from engine.fulllink.color_regex import LUA_MATCHER, RegexError, lua_program

LUA_FILTER_NAME = "envoy.filters.http.lua"
LUA_TYPE_URL = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"
HCM_FILTER = "envoy.filters.network.http_connection_manager"
ROUTER_FILTER = "envoy.filters.http.router"
LANE_HEADER_ANNOTATION = "graylane.io/lane-header"
MANAGED_BY = {"app.kubernetes.io/managed-by": "graylane"}

SOURCES = ("header", "cookie", "query")
OPERATORS = ("exact", "prefix", "regex", "present")
EXISTING_MODES = ("overwrite", "trust")
HASH_MODULUS = 2147483647
BUCKETS = 10000  # percentages have two decimals

_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_PSEUDO = (":authority", ":path", ":method", ":scheme")


@dataclass(frozen=True)
class Condition:
    """One test on the request. ``operator`` is exact/prefix/regex/present, or "percentage"."""

    source: str  # header, cookie or query (for a percentage: where the hashed value comes from)
    name: str
    operator: str
    value: Optional[str] = None  # what exact/prefix/regex compare with
    percent: Optional[float] = None

    def describe(self) -> str:
        where = f"{self.source} {self.name}"
        if self.operator == "percentage":
            return f"{_percent_text(self.percent)}% of values of {where}"
        if self.operator == "present":
            return f"{where} present"
        return f"{where} {self.operator} {self.value!r}"


@dataclass(frozen=True)
class Rule:
    conditions: tuple  # of Condition, all must hold
    lane: str

    def describe(self) -> str:
        return " and ".join(c.describe() for c in self.conditions) + f" -> {self.lane}"


@dataclass(frozen=True)
class ColoringSpec:
    header: str
    rules: tuple = ()
    default: Optional[str] = DEFAULT_BASE_VALUE  # None: no default, the header is removed
    existing: str = "overwrite"
    salt: str = DEFAULT_SALT


@dataclass(frozen=True)
class GatewayTarget:
    """Where the EnvoyFilter goes: its name, namespace and the gateway pods it selects."""

    name: str
    namespace: str = DEFAULT_NAMESPACE
    selector: dict = field(default_factory=lambda: dict(DEFAULT_SELECTOR))


Fail = Callable[[str, str], Exception]  # (message, field) -> an exception to raise


def _percent_text(percent: Optional[float]) -> str:
    return f"{percent:g}" if percent is not None else "?"


# --------------------------------------------------------------------------------------------- validation

def check_header_name(name: Any, where: str, fail: Fail, allow_pseudo: bool = True) -> str:
    if not isinstance(name, str) or not name:
        raise fail("must be a non-empty header name", where)
    lowered = name.lower()
    if allow_pseudo and lowered in _PSEUDO:
        return lowered
    if not _TOKEN.match(name):
        raise fail(f"{name!r} is not a valid HTTP header name", where)
    return lowered


def check_lane_value(value: Any, where: str, fail: Fail) -> str:
    if not isinstance(value, str) or not value:
        raise fail("must be a non-empty string (a header value)", where)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value) or value != value.strip():
        raise fail(f"{value!r} is not a valid header value (no control characters or surrounding spaces)", where)
    return value


def check_spec(spec: ColoringSpec, fail: Fail) -> ColoringSpec:
    """Raise ``fail(...)`` for anything the generated Lua could not carry."""
    check_header_name(spec.header, "header", fail, allow_pseudo=False)
    if spec.existing not in EXISTING_MODES:
        raise fail(f"must be one of {', '.join(EXISTING_MODES)}, got {spec.existing!r}", "existingHeader")
    if spec.default is not None:
        check_lane_value(spec.default, "default", fail)
    for index, rule in enumerate(spec.rules):
        check_lane_value(rule.lane, f"rules[{index}].value", fail)
        if not rule.conditions:
            raise fail("a rule needs at least one condition", f"rules[{index}]")
        for condition in rule.conditions:
            if condition.operator == "regex":
                try:
                    lua_program(condition.value or "")
                except RegexError as exc:
                    raise fail(str(exc), f"rules[{index}].regex") from None
    return spec


# --------------------------------------------------------------------------------------------- parsing

def parse_condition(data: Any, where: str, fail: Fail) -> Condition:
    """``{header|cookie|query: NAME, exact|prefix|regex: VALUE | present: true}`` or
    ``{percentage: N, hashOn: {header|cookie|query: NAME}}``."""
    if not isinstance(data, dict):
        raise fail("must be a map", where)
    if "percentage" in data:
        unknown = set(data) - {"percentage", "hashOn", "value"}
        if unknown:
            raise fail(f"unknown field(s) {', '.join(sorted(unknown))}", where)
        percent = data["percentage"]
        if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 <= percent <= 100 \
                or round(percent * 100) != percent * 100:
            raise fail(f"must be a number from 0 to 100 with at most two decimals, got {percent!r}",
                       f"{where}.percentage")
        hash_on = data.get("hashOn")
        if not isinstance(hash_on, dict) or len(hash_on) != 1 or next(iter(hash_on)) not in SOURCES:
            raise fail("must name the value to hash: {header: NAME}, {cookie: NAME} or {query: NAME}",
                       f"{where}.hashOn")
        source, name = next(iter(hash_on.items()))
        name = _source_name(source, name, f"{where}.hashOn.{source}", fail)
        return Condition(source, name, "percentage", percent=float(percent))
    sources = [key for key in SOURCES if key in data]
    if len(sources) != 1:
        raise fail("needs exactly one of header, cookie, query or percentage", where)
    source = sources[0]
    operators = [key for key in OPERATORS if key in data]
    unknown = set(data) - {source, *OPERATORS, "value"}
    if unknown:
        raise fail(f"unknown field(s) {', '.join(sorted(unknown))}", where)
    if len(operators) != 1:
        raise fail("needs exactly one of exact, prefix, regex or present", where)
    operator = operators[0]
    name = _source_name(source, data[source], f"{where}.{source}", fail)
    if operator == "present":
        if data["present"] is not True:
            raise fail("must be true (leave the rule out otherwise)", f"{where}.present")
        return Condition(source, name, "present")
    value = data[operator]
    if not isinstance(value, str):
        raise fail("must be a string (quote numbers in YAML)", f"{where}.{operator}")
    if operator == "regex":
        try:
            lua_program(value)
        except RegexError as exc:
            raise fail(str(exc), f"{where}.regex") from None
    return Condition(source, name, operator, value)


def _source_name(source: str, name: Any, where: str, fail: Fail) -> str:
    if source == "header":
        return check_header_name(name, where, fail)
    if not isinstance(name, str) or not name:
        raise fail(f"must be a non-empty {source} name", where)
    if source == "cookie" and not _TOKEN.match(name):
        raise fail(f"{name!r} is not a valid cookie name", where)
    return name


def parse_rule(data: Any, where: str, lane_value: str, fail: Fail) -> Rule:
    if not isinstance(data, dict):
        raise fail("must be a map", where)
    lane = check_lane_value(data.get("value", lane_value), f"{where}.value", fail)
    if "all" in data:
        unknown = set(data) - {"all", "value"}
        if unknown:
            raise fail(f"unknown field(s) {', '.join(sorted(unknown))} next to all", where)
        items = data["all"]
        if not isinstance(items, list) or not items:
            raise fail("must be a non-empty list of conditions", f"{where}.all")
        conditions = tuple(parse_condition(item, f"{where}.all[{i}]", fail) for i, item in enumerate(items))
        return Rule(conditions, lane)
    return Rule((parse_condition(data, where, fail),), lane)


def parse_coloring(data: Any, where: str, header: str, lane_value: str, fail: Fail,
                   default_salt: str = DEFAULT_SALT) -> ColoringSpec:
    """A FullLinkGray ``spec.coloring`` section (``data`` may be None: no rules, default only)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise fail("must be a map", where)
    unknown = set(data) - {"rules", "default", "existingHeader", "salt"}
    if unknown:
        raise fail(f"unknown field(s) {', '.join(sorted(unknown))}", where)
    rules_data = data.get("rules") or []
    if not isinstance(rules_data, list):
        raise fail("must be a list", f"{where}.rules")
    rules = tuple(parse_rule(item, f"{where}.rules[{i}]", lane_value, fail) for i, item in enumerate(rules_data))
    default = data["default"] if "default" in data else DEFAULT_BASE_VALUE
    if default is not None:
        check_lane_value(default, f"{where}.default", fail)
    existing = data.get("existingHeader", "overwrite")
    if existing not in EXISTING_MODES:
        raise fail(f"must be one of {', '.join(EXISTING_MODES)}, got {existing!r}", f"{where}.existingHeader")
    salt = data.get("salt", default_salt)
    if not isinstance(salt, str):
        raise fail("must be a string", f"{where}.salt")
    return ColoringSpec(header, rules, default, existing, salt)


_FLAG_CONDITION = re.compile(r"^(?P<source>header|cookie|query):(?P<name>[^=^~]+?)(?:(?P<op>\^=|~=|=)(?P<value>.*))?$",
                             re.S)
_FLAG_PERCENT = re.compile(r"^(?:percent|percentage):(?P<percent>[0-9.]+)%?:(?P<source>header|cookie|query):"
                           r"(?P<name>.+)$", re.S)


def parse_rule_flag(text: str, lane_value: str, fail: Fail) -> Rule:
    """The ``--rule`` syntax: conditions joined by ``&&``, optionally ``=>LANE`` at the end.

    ``header:agent=pc`` (exact), ``header:agent^=pc`` (prefix), ``header:agent~=REGEX``, ``header:agent``
    (present); the same with ``cookie:`` and ``query:``; ``percent:10:header:x-user-id`` (a stable 10% of
    the values of that header).
    """
    where = f"--rule {text!r}"
    body, lane = text, lane_value
    if "=>" in text:
        body, lane = text.rsplit("=>", 1)
        lane = lane.strip()
    conditions = []
    for part in body.split("&&"):
        part = part.strip()
        percent = _FLAG_PERCENT.match(part)
        if percent:
            try:
                value: Any = float(percent.group("percent"))
            except ValueError:
                raise fail(f"{percent.group('percent')!r} is not a number", where) from None
            if value.is_integer():
                value = int(value)
            conditions.append(parse_condition({"percentage": value,
                                               "hashOn": {percent.group("source"): percent.group("name")}},
                                              where, fail))
            continue
        match = _FLAG_CONDITION.match(part)
        if not match:
            raise fail("expected header:NAME=VALUE, header:NAME^=PREFIX, header:NAME~=REGEX, header:NAME, the same "
                       "with cookie: or query:, or percent:N:header:NAME; join conditions with && and end with "
                       "=>LANE to set another lane value", where)
        operator = {"=": "exact", "^=": "prefix", "~=": "regex", None: "present"}[match.group("op")]
        data: dict = {match.group("source"): match.group("name")}
        data[operator] = True if operator == "present" else match.group("value")
        conditions.append(parse_condition(data, where, fail))
    return Rule(tuple(conditions), check_lane_value(lane, f"{where} lane", fail))


# --------------------------------------------------------------------------------------------- Lua

def lua_string(value: str) -> str:
    """``value`` as a Lua double-quoted string literal that is plain printable ASCII."""
    out = ['"']
    for byte in value.encode("utf-8"):
        if byte == 0x22:
            out.append('\\"')
        elif byte == 0x5C:
            out.append("\\\\")
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    out.append('"')
    return "".join(out)


def lane_bucket(value: str, salt: str) -> int:
    """The bucket (0..9999) the generated Lua puts a hashed value in: the same in Python and in Lua."""
    digest = 0
    for byte in f"{salt}:{value}".encode("utf-8"):
        digest = (digest * 131 + byte) % HASH_MODULUS
    return (digest * 48271) % HASH_MODULUS % BUCKETS


def in_percentage(value: Optional[str], percent: float, salt: str) -> bool:
    return value is not None and lane_bucket(value, salt) < round(percent * 100)


_HELPERS = {
    "prefix": """\
local function has_prefix(value, prefix)
  return value ~= nil and string.sub(value, 1, #prefix) == prefix
end
""",
    "cookie": """\
-- The value of a cookie (Cookie headers joined by "," count too; surrounding quotes are dropped).
local function cookie_value(headers, name)
  local raw = headers:get("cookie")
  if raw == nil then return nil end
  for pair in string.gmatch(raw, "[^;,]+") do
    local key, value = string.match(pair, "^%s*([^=]-)%s*=%s*(.-)%s*$")
    if key == name then
      if #value >= 2 and string.sub(value, 1, 1) == '"' and string.sub(value, -1) == '"' then
        value = string.sub(value, 2, -2)
      end
      return value
    end
  end
  return nil
end
""",
    "query": """\
local function url_decode(text)
  text = string.gsub(text, "+", " ")
  text = string.gsub(text, "%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end)
  return text
end

-- The first value of a query parameter of :path, URL-decoded ("" when it has no "=").
local function query_value(headers, name)
  local path = headers:get(":path")
  if path == nil then return nil end
  local query = string.match(path, "^[^?#]*%?([^#]*)")
  if query == nil then return nil end
  for pair in string.gmatch(query, "[^&]+") do
    local key, value = string.match(pair, "^([^=]*)=?(.*)$")
    if url_decode(key) == name then return url_decode(value) end
  end
  return nil
end
""",
    "percentage": """\
-- A stable bucket 0..9999 for a value, so one user always lands in the same lane.
local function in_percentage(value, threshold)
  if value == nil then return false end
  local text = SALT .. ":" .. value
  local digest = 0
  for i = 1, #text do
    digest = (digest * 131 + string.byte(text, i)) % 2147483647
  end
  -- One multiplicative mixing step spreads similar values (user1, user2, ...) over the buckets.
  return (digest * 48271) % 2147483647 % 10000 < threshold
end
""",
}


def _value_expression(condition: Condition) -> str:
    name = lua_string(condition.name)
    if condition.source == "cookie":
        return f"cookie_value(headers, {name})"
    if condition.source == "query":
        return f"query_value(headers, {name})"
    return f"headers:get({name})"


def _condition_expression(condition: Condition, regexes: list) -> str:
    value = _value_expression(condition)
    if condition.operator == "percentage":
        return f"in_percentage({value}, {round((condition.percent or 0) * 100)})"
    if condition.operator == "present":
        return f"{value} ~= nil"
    if condition.operator == "exact":
        return f"{value} == {lua_string(condition.value or '')}"
    if condition.operator == "prefix":
        return f"has_prefix({value}, {lua_string(condition.value or '')})"
    regexes.append(lua_program(condition.value or ""))
    return f"re_full_match(REGEX[{len(regexes)}], {value})"


def _comment(condition: Condition) -> str:
    where = f"{condition.source} {lua_string(condition.name)}"
    if condition.operator == "percentage":
        return f"{_percent_text(condition.percent)}% of {where}"
    if condition.operator == "present":
        return f"{where} present"
    return f"{where} {condition.operator} {lua_string(condition.value or '')}"


def generate_lua(spec: ColoringSpec) -> str:
    """The ``inlineCode`` of the coloring filter."""
    needed: set = set()
    regexes: list = []
    rule_blocks = []
    for index, rule in enumerate(spec.rules, 1):
        expressions = []
        for condition in rule.conditions:
            needed.add(condition.source)
            if condition.operator in ("prefix", "percentage"):
                needed.add(condition.operator)
            expressions.append(_condition_expression(condition, regexes))
        comment = " and ".join(_comment(c) for c in rule.conditions)
        test = " and ".join(f"({e})" if len(expressions) > 1 else e for e in expressions)
        rule_blocks.append(f"  -- rule {index}: {comment}\n"
                           f"  if {test} then return {lua_string(rule.lane)}, {index} end\n")
    lines = [
        "-- Traffic coloring for full-link gray releases, generated by graylane: do not edit, regenerate.",
        "-- Sets the lane header from the first rule that matches, else the default. Envoy runs this in LuaJIT.",
        f"local LANE_HEADER = {lua_string(spec.header)}",
        f"local DEFAULT_LANE = {lua_string(spec.default) if spec.default is not None else 'nil'}",
    ]
    if "percentage" in needed:
        lines.append(f"local SALT = {lua_string(spec.salt)}")
    code = "\n".join(lines) + "\n"
    for helper in ("prefix", "cookie", "query", "percentage"):
        if helper in needed:
            code += "\n" + _HELPERS[helper]
    if regexes:
        code += "\n" + LUA_MATCHER + "\nlocal REGEX = {\n" + "".join(f"  {program},\n" for program in regexes) + "}\n"
    code += "\nlocal function choose_lane(headers)\n" + "".join(rule_blocks) + "  return DEFAULT_LANE, nil\nend\n"
    code += "\nfunction envoy_on_request(request_handle)\n"
    code += "  local headers = request_handle:headers()\n"
    code += "  local existing = headers:get(LANE_HEADER)\n"
    if spec.existing == "trust":
        code += ("  if existing ~= nil then\n"
                 "    request_handle:logDebug(\"graylane: keeping the lane header sent by the client\")\n"
                 "    return\n"
                 "  end\n")
    code += """\
  local lane, rule = choose_lane(headers)
  if lane == existing then return end
  if lane == nil then
    headers:remove(LANE_HEADER)
  else
    headers:replace(LANE_HEADER, lane)
  end
  request_handle:logDebug("graylane: lane " .. tostring(lane) .. " by " .. (rule and ("rule " .. rule) or "default"))
  -- The headers changed: make Envoy pick the route again (Envoy 1.27+; older Envoy lacks the method).
  if request_handle.clearRouteCache ~= nil then
    request_handle:clearRouteCache()
  end
end
"""
    return code


def envoy_filter(spec: ColoringSpec, target: GatewayTarget, labels: Optional[dict] = None) -> dict:
    """The EnvoyFilter that inserts the coloring Lua before the router of the selected gateways."""
    metadata: dict = {"name": target.name, "namespace": target.namespace,
                      "labels": {**MANAGED_BY, **(labels or {})},
                      "annotations": {LANE_HEADER_ANNOTATION: spec.header}}
    body: dict = {"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter", "metadata": metadata,
                  "spec": {}}
    if target.selector:
        body["spec"]["workloadSelector"] = {"labels": dict(target.selector)}
    body["spec"]["configPatches"] = [{
        "applyTo": "HTTP_FILTER",
        "match": {
            "context": "GATEWAY",
            "listener": {"filterChain": {"filter": {"name": HCM_FILTER, "subFilter": {"name": ROUTER_FILTER}}}},
        },
        "patch": {
            "operation": "INSERT_BEFORE",
            "value": {
                "name": LUA_FILTER_NAME,
                "typed_config": {"@type": LUA_TYPE_URL, "inlineCode": generate_lua(spec)},
            },
        },
    }]
    return body
