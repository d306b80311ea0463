-- Trusted host side of the sandbox, loaded once per Lua state by engine/lua/runner.py.
--
-- Guarantees (each has a test in tests/test_sandbox_hostile.py):
-- * Every run starts from the same pristine environment: a fresh globals table, fresh read-only library
--   proxies, nothing shared that a script can write to (the shared library tables are reachable only
--   through protected metatables, json.null is a userdata).
-- * No Python object ever reaches Lua: print() collects into a Lua buffer, errors are Lua strings.
-- * The host never calls a user metamethod: results are read with raw access only, and everything the
--   host does for a run (building obj, running, encoding the result) happens under the time hook.
-- * Output crossing back is valid UTF-8 (invalid bytes become U+FFFD, as Go's encoding/json does).
local type, next, select, tostring, error = type, next, select, tostring, error
local rawget, rawset, rawequal = rawget, rawset, rawequal
local setmetatable, getmetatable, setfenv, loadstring, pcall, xpcall = setmetatable, getmetatable, setfenv, loadstring, pcall, xpcall
local format, find, gsub, byte, sub, rep, char = string.format, string.find, string.gsub, string.byte, string.sub, string.rep, string.char
local concat, sort, tinsert, floor = table.concat, table.sort, table.insert, math.floor
-- LuaJIT's table.new(array, hash) makes a table of its final size at once (the token list says each map's and
-- list's size), instead of growing it by rehashing (1, 2, 4, 8 ...): fewer allocations per run. PUC Lua: {}.
local new_table = function() return {} end
if jit and pcall(require, 'table.new') then new_table = require('table.new') end
local sethook, getinfo, huge = debug.sethook, debug.getinfo, math.huge
-- The wall clock (Python's time.monotonic, set once by runner.py through set_clock): PUC Lua itself only
-- has os.clock, CPU time, which on a busy machine runs far slower than the wall-clock limit promises.
-- It lives in this upvalue only; no script can reach it, and the hook calls it under pcall, so even a
-- Python exception (Ctrl-C in inline mode) becomes the time limit, never a Python object in Lua.
local clock = os.clock
local collectgarbage, newproxy = collectgarbage, newproxy
-- On LuaJIT, hooks (the time limit, coverage) fire only in the interpreter, never inside compiled traces.
-- So nothing a script runs is ever compiled: every function of this file is excluded here, and each script
-- chunk (and whatever it loads) when it is compiled; only the host's own conversion code is compiled (see
-- the end of this file), and it checks the clock itself.
if jit then jit.off(true, true) end

local MAX_DEPTH = 320            -- nesting of a returned value (documents.MAX_DEPTH is the input limit)
local MAX_VALUES = 1000000       -- values in a returned value (documents.MAX_VALUES for input)
local MAX_TEXT = 4000            -- bytes of one error message
local MAX_PRINTED = 64 * 1024    -- bytes of print() output per run

---------------------------------------------------------------------------------------------------
-- Strings handed back to Python must be valid UTF-8.
local REPLACEMENT = '\239\191\189'
local function valid_utf8(s)
  local i = find(s, '[\128-\255]')
  if not i then return s end
  local parts, start, n = nil, 1, #s
  while i and i <= n do
    local c, len = byte(s, i), 0
    if c >= 0xC2 and c <= 0xDF then len = 2
    elseif c >= 0xE0 and c <= 0xEF then len = 3
    elseif c >= 0xF0 and c <= 0xF4 then len = 4 end
    local ok = len > 0
    if ok then
      for j = 1, len - 1 do
        local d = byte(s, i + j)
        if not d or d < 0x80 or d > 0xBF then ok = false; break end
      end
      if ok then
        local d = byte(s, i + 1)
        if (c == 0xE0 and d < 0xA0) or (c == 0xED and d > 0x9F) or (c == 0xF0 and d < 0x90)
          or (c == 0xF4 and d > 0x8F) then ok = false end
      end
    end
    if ok then
      i = find(s, '[\128-\255]', i + len)
    else
      parts = parts or {}
      parts[#parts + 1] = sub(s, start, i - 1)
      parts[#parts + 1] = REPLACEMENT
      start = i + 1
      i = find(s, '[\128-\255]', start)
    end
  end
  if not parts then return s end
  parts[#parts + 1] = sub(s, start)
  return concat(parts)
end

-- An error value as text, without calling any metamethod (a __tostring could loop forever).
local function error_text(value)
  local t = type(value)
  local text
  if t == 'string' then text = value
  elseif t == 'number' then text = format('%.14g', value)
  elseif t == 'nil' then text = 'nil'
  else text = '(error object is a ' .. t .. ' value)' end
  if #text > MAX_TEXT then text = sub(text, 1, MAX_TEXT) .. '...' end
  return valid_utf8(text)
end

---------------------------------------------------------------------------------------------------
-- Python -> Lua: a flat token list made by engine/lua/convert.py. A negative number -n-1 opens a map
-- of n entries (key, value ...), a positive number n+1 opens a list of n items, 0 is null, and 0.5
-- escapes the number that follows. Maps remember their key order, empty lists that they were lists,
-- and both where they held nulls, so whatever a script does not touch comes back exactly as it went in.
-- A script sees what Kruise's runtime shows it (values passed through JSON into gopher-lua): a null map
-- value is an absent key and a null list item is left out (the list is compacted, never a map).
local ORDER, EMPTY_LIST, NULLS, LIST_NULLS
local tok, pos
local function build()
  local x = tok[pos]; pos = pos + 1
  local t
  if x > 0 then
    t = new_table(x - 1, 0)
    local m, holes = 0, nil
    for j = 1, x - 1 do
      local y = tok[pos]; pos = pos + 1
      if type(y) ~= 'number' then m = m + 1; t[m] = y
      elseif y == 0.5 then m = m + 1; t[m] = tok[pos]; pos = pos + 1
      elseif y ~= 0 then pos = pos - 1; m = m + 1; t[m] = build()
      else holes = holes or {}; holes[#holes + 1] = j end
    end
    if m == 0 then EMPTY_LIST[t] = true end
    if holes then
      local copy = {}
      for j = 1, m do copy[j] = t[j] end
      LIST_NULLS[t] = {holes = holes, items = copy, length = x - 1}
    end
  else
    local n = -x - 1
    t = new_table(0, n)
    local keys = n > 1 and new_table(n, 0) or nil
    for j = 1, n do
      local k, y = tok[pos], tok[pos + 1]; pos = pos + 2
      if keys then keys[j] = k end
      if type(y) ~= 'number' then t[k] = y
      elseif y == 0.5 then t[k] = tok[pos]; pos = pos + 1
      elseif y ~= 0 then pos = pos - 1; t[k] = build()
      else
        local nulls = NULLS[t] or {}
        nulls[k] = true; NULLS[t] = nulls
        if not keys then ORDER[t] = {k} end
      end
    end
    if keys then ORDER[t] = keys end
  end
  return t
end

local function from_tokens(tokens)
  ORDER, EMPTY_LIST, NULLS, LIST_NULLS = {}, {}, {}, {}
  tok, pos = tokens, 1
  local root = build()
  tok = nil
  return root
end

---------------------------------------------------------------------------------------------------
-- Lua -> JSON text (parsed by Python's json module), with raw access only. Known maps keep their
-- original key order; keys a script added follow in a fixed order (Istio's documented field order for
-- the fields it knows, then sorted), so the same input always gives the same bytes.
local json_null = newproxy(true)
do
  local meta = getmetatable(json_null)
  meta.__tostring = function() return 'null' end
  meta.__metatable = false
end

-- Istio's field order (the order of its API reference) for keys a script creates.
local FIELD_RANK = {}
for i, name in ipairs({
  'name', 'hosts', 'gateways', 'match', 'route', 'tcp', 'tls', 'http', 'redirect', 'directResponse', 'delegate',
  'rewrite', 'timeout', 'retries', 'fault', 'mirror', 'mirrors', 'mirrorPercentage', 'mirrorPercent',
  'corsPolicy', 'headers', 'destination', 'weight', 'host', 'subset', 'port', 'number', 'labels',
  'trafficPolicy', 'uri', 'scheme', 'method', 'authority', 'queryParams', 'withoutHeaders', 'sourceLabels',
  'sourceNamespace', 'ignoreUriCase', 'exact', 'prefix', 'regex', 'request', 'response', 'set', 'add',
  'remove', 'exportTo'}) do
  FIELD_RANK[name] = i
end
-- Where the same name means another message, the message's own order (the parent key tells which).
local MATCH_RANK = {name = 1, uri = 2, scheme = 3, method = 4, authority = 5, headers = 6, port = 7,
  sourceLabels = 8, gateways = 9, queryParams = 10, ignoreUriCase = 11, withoutHeaders = 12,
  sourceNamespace = 13, statPrefix = 14}
local ROUTE_RANK = {destination = 1, weight = 2, headers = 3}
local FREE_FORM = {}  -- maps of user keys (names of labels, headers to set...): sorted by name only
local RANKS = {match = MATCH_RANK, route = ROUTE_RANK}
for _, name in ipairs({'labels', 'annotations', 'queryParams', 'withoutHeaders', 'sourceLabels',
                       'matchLabels', 'set', 'add', 'data'}) do RANKS[name] = FREE_FORM end

local ESCAPED, KEYS, cached = {}, {}, 0
local function quote(s)
  local q = valid_utf8(s)
  if find(q, '[%c"\\]') then
    q = gsub(q, '[%c"\\]', function(c) return format('\\u%04x', byte(c)) end)
  end
  q = '"' .. q .. '"'
  cached = cached + 1
  if cached > 50000 then ESCAPED, KEYS, cached = {}, {}, 0 end
  ESCAPED[s] = q
  return q
end

local function key_string(k)
  local tk = type(k)
  if tk == 'string' then return k end
  if tk == 'number' then
    if k ~= k or k == huge or k == -huge then error('a map key is not a finite number', 0) end
    if k == floor(k) then return format('%d', k) end
    return format('%.17g', k)
  end
  error('a map key is a ' .. tk .. '; only strings and numbers can be keys', 0)
end

local function key_text(k)
  local q = KEYS[k]
  if q then return q end
  local s = key_string(k)
  q = (ESCAPED[s] or quote(s)) .. ':'
  KEYS[k] = q
  return q
end

local buf, n, depth, values
local encode_value
local check_clock  -- the limits' section below: raises the time limit once the deadline has passed

-- Keys a script added, in a fixed order: known fields first (in Istio's order), then by text.
local function ordered(keys, parent)
  local ranks = RANKS[parent] or FIELD_RANK
  local text, rank = {}, {}
  for i = 1, #keys do
    local k = keys[i]
    local s = key_string(k)
    text[k], rank[k] = s, ranks[s] or 1000
  end
  sort(keys, function(a, b)
    local ra, rb = rank[a], rank[b]
    if ra ~= rb then return ra < rb end
    return text[a] < text[b]
  end)
  return keys
end

local function encode_map(v, order, nulls, parent, get)
  n = n + 1; buf[n] = '{'
  local count, present = 0, 0
  if order then
    for i = 1, #order do
      local k = order[i]
      local x
      if get then x = get(v, k) else x = v[k] end
      if x ~= nil then present = present + 1
      elseif nulls and nulls[k] then x = json_null end
      if x ~= nil then
        if count > 0 then n = n + 1; buf[n] = ',' end
        count = count + 1
        n = n + 1; buf[n] = KEYS[k] or key_text(k); encode_value(x, k)
      end
    end
  end
  local total = 0
  for _ in next, v do total = total + 1 end
  if total > present then  -- keys the script added (or all keys of a map the script made)
    local extra, m = {}, 0
    if order then
      local known = {}
      for i = 1, #order do known[order[i]] = true end
      for k in next, v do if not known[k] then m = m + 1; extra[m] = k end end
    else
      for k in next, v do m = m + 1; extra[m] = k end
    end
    if m > 1 then ordered(extra, parent) end
    for j = 1, m do
      local k = extra[j]
      if count > 0 then n = n + 1; buf[n] = ',' end
      count = count + 1
      n = n + 1; buf[n] = KEYS[k] or key_text(k); encode_value(rawget(v, k), k)  -- few: keys a script added
    end
  end
  n = n + 1; buf[n] = '}'
end

local function encode_list(v, len, parent, get)
  n = n + 1; buf[n] = '['
  local holes = LIST_NULLS and LIST_NULLS[v]
  if holes then  -- the list held nulls: put them back if the script left the list as it was
    local items = holes.items
    local same = #items == len
    for j = 1, len do
      if same and not rawequal(items[j], rawget(v, j)) then same = false end
    end
    if same then
      local hole, h, item = holes.holes, 1, 1
      for j = 1, holes.length do
        if j > 1 then n = n + 1; buf[n] = ',' end
        if hole[h] == j then h = h + 1; n = n + 1; buf[n] = 'null'
        else encode_value(rawget(v, item), parent); item = item + 1 end
      end
      n = n + 1; buf[n] = ']'
      return
    end
  end
  if get then
    for j = 1, len do
      if j > 1 then n = n + 1; buf[n] = ',' end
      encode_value(get(v, j), parent)
    end
  else
    for j = 1, len do
      if j > 1 then n = n + 1; buf[n] = ',' end
      encode_value(v[j], parent)
    end
  end
  n = n + 1; buf[n] = ']'
end

local INTEGERS = {}
for i = -1, 1024 do INTEGERS[i] = format('%d', i) end

encode_value = function(v, parent)
  local t = type(v)
  values = values + 1
  if values > MAX_VALUES then error('the returned value holds more than ' .. MAX_VALUES .. ' values', 0) end
  if values % 4096 == 0 then check_clock() end  -- compiled on LuaJIT, where the hook does not fire
  if t == 'string' then n = n + 1; buf[n] = ESCAPED[v] or quote(v)
  elseif t == 'number' then
    if v ~= v or v == huge or v == -huge then error('a value is not a finite number', 0) end
    n = n + 1
    if v == floor(v) and v > -1e15 and v < 1e15 then buf[n] = INTEGERS[v] or format('%d', v)
    else buf[n] = format('%.17g', v) end
  elseif rawequal(v, json_null) then n = n + 1; buf[n] = 'null'
  elseif t == 'table' then
    depth = depth + 1
    if depth > MAX_DEPTH then
      error('the returned table is nested more than ' .. MAX_DEPTH .. ' levels deep (a cycle?)', 0)
    end
    local len = #v  -- raw: Lua 5.1 and LuaJIT ignore __len on tables
    if len > 0 then
      -- A list holds exactly 1..#v. A table with holes or other keys is a map: what # gives for it differs
      -- between runtimes (LuaJIT: 2 for {[2] = 3, a = 1}), and a list would silently drop the other keys.
      local total = 0
      for _ in next, v do total = total + 1 end
      if total ~= len then len = 0 end
    end
    -- A table with a metatable is read with rawget (its __index is never called); others index directly.
    local get = getmetatable(v) ~= nil and rawget or nil
    if len > 0 or (EMPTY_LIST and EMPTY_LIST[v]) or (LIST_NULLS and LIST_NULLS[v]) then
      encode_list(v, len, parent, get)
    else
      encode_map(v, ORDER and ORDER[v], NULLS and NULLS[v], parent, get)
    end
    depth = depth - 1
  elseif t == 'boolean' then n = n + 1; buf[n] = v and 'true' or 'false'
  elseif t == 'nil' then n = n + 1; buf[n] = 'null'
  else error('a value is a ' .. t .. ', which has no JSON form', 0) end
end

local function to_json(v)
  buf, n, depth, values = {}, 0, 0, 0
  local ok, err = pcall(encode_value, v)
  local text = ok and concat(buf, '', 1, n) or nil
  buf = nil
  if not ok then error(err, 0) end
  return text
end

---------------------------------------------------------------------------------------------------
-- json module for scripts (Kruise's gopher-lua host offers one too).

local function json_decode(s)
  if type(s) ~= 'string' then error('json.decode expects a string', 2) end
  local i = 1
  local value
  local level = 0
  local function skip() i = find(s, '[^ \t\r\n]', i) or #s + 1 end
  local function fail(what) error(format('json.decode: %s at position %d', what, i), 0) end
  local escapes = {['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n', r = '\r', t = '\t'}
  local function utf8(cp)
    if cp < 0x80 then return char(cp)
    elseif cp < 0x800 then return char(0xC0 + floor(cp / 64), 0x80 + cp % 64)
    elseif cp >= 0xD800 and cp <= 0xDFFF then return REPLACEMENT
    elseif cp < 0x10000 then return char(0xE0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
    else return char(0xF0 + floor(cp / 262144), 0x80 + floor(cp / 4096) % 64, 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64) end
  end
  local function str()
    local parts, start = {}, i + 1
    while true do
      local j = find(s, '["\\]', start)
      if not j then fail('unterminated string') end
      parts[#parts + 1] = sub(s, start, j - 1)
      if sub(s, j, j) == '"' then i = j + 1; return concat(parts) end
      local c = sub(s, j + 1, j + 1)
      if c == 'u' then
        local hex = sub(s, j + 2, j + 5)
        if not find(hex, '^%x%x%x%x$') then i = j; fail('bad \\u escape') end
        local cp = tonumber(hex, 16)
        start = j + 6
        if cp >= 0xD800 and cp <= 0xDBFF and sub(s, start, start + 1) == '\\u' then
          local lo = tonumber(sub(s, start + 2, start + 5), 16)
          if lo and lo >= 0xDC00 and lo <= 0xDFFF then
            cp = 0x10000 + (cp - 0xD800) * 1024 + (lo - 0xDC00); start = start + 6
          end
        end
        parts[#parts + 1] = utf8(cp)
      elseif escapes[c] then parts[#parts + 1] = escapes[c]; start = j + 2
      else i = j; fail('bad escape') end
    end
  end
  value = function()
    skip()
    local c = sub(s, i, i)
    if c == '{' or c == '[' then
      level = level + 1
      if level > MAX_DEPTH then fail('nested too deep') end
    end
    if c == '{' then
      local t = {}
      i = i + 1; skip()
      if sub(s, i, i) == '}' then i = i + 1; level = level - 1; return t end
      while true do
        skip()
        if sub(s, i, i) ~= '"' then fail('expected a string key') end
        local k = str(); skip()
        if sub(s, i, i) ~= ':' then fail("expected ':'") end
        i = i + 1
        t[k] = value(); skip()
        local d = sub(s, i, i); i = i + 1
        if d == '}' then level = level - 1; return t elseif d ~= ',' then i = i - 1; fail("expected ',' or '}'") end
      end
    elseif c == '[' then
      local t, m = {}, 0
      i = i + 1; skip()
      if sub(s, i, i) == ']' then i = i + 1; level = level - 1; return t end
      while true do
        m = m + 1; t[m] = value(); skip()
        local d = sub(s, i, i); i = i + 1
        if d == ']' then level = level - 1; return t elseif d ~= ',' then i = i - 1; fail("expected ',' or ']'") end
      end
    elseif c == '"' then return str()
    elseif sub(s, i, i + 3) == 'true' then i = i + 4; return true
    elseif sub(s, i, i + 4) == 'false' then i = i + 5; return false
    elseif sub(s, i, i + 3) == 'null' then i = i + 4; return json_null
    else
      local num = s:match('^-?%d+%.?%d*[eE]?[-+]?%d*', i)
      if not num or num == '' then fail('unexpected character') end
      i = i + #num
      return tonumber(num) or fail('bad number')
    end
  end
  local ok, result = pcall(value)
  if not ok then error(result, 2) end
  skip()
  if i <= #s then error(format('json.decode: trailing characters at position %d', i), 2) end
  return result
end

local function json_encode(v)
  local saved = {buf, n, depth, values}
  local ok, text = pcall(to_json, v)
  buf, n, depth, values = saved[1], saved[2], saved[3], saved[4]
  if not ok then error('json.encode: ' .. error_text(text), 2) end
  return text
end

---------------------------------------------------------------------------------------------------
-- Limits. `killed` is set when a limit was hit; pcall/xpcall inside the script cannot swallow it.
local TIMEOUT, NO_MEMORY = 'time limit exceeded', 'not enough memory'
local killed, stopped_at, deadline, max_memory_bytes

-- The chunk of the running script (its own lines, not those of code it loaded or of this host), and line
-- coverage (graylane test --coverage): the lines of that chunk that ran, when asked for.
local script_source, covered
local HOST_SOURCE = getinfo(1, 'S').source
local HOST_LOCATION = getinfo(1, 'S').short_src .. ':'

-- An error Lua raised inside this host on the script's behalf (a stack overflow noticed in the hook, say)
-- carries the host's location; the script's report must not (it would name a line of this file).
local function without_host_location(message)
  if type(message) == 'string' and sub(message, 1, #HOST_LOCATION) == HOST_LOCATION then
    local rest = message:match('^%d+: (.*)$', #HOST_LOCATION + 1)
    if rest then return rest end
  end
  return message
end

local function where(level)
  local info = getinfo(level, 'Sl')
  if info and info.source == script_source and info.currentline and info.currentline > 0 then
    return info.currentline
  end
  return nil
end

-- `killed` first: should finding the line fail (no stack left), the limit still holds.
local function kill(reason, level)
  killed = killed or reason
  if level then stopped_at = stopped_at or where(level) end
  error(killed, 0)
end

-- Line events come only with coverage on. Outside this host file they run the limit checks too: a loop as
-- short as `while true do end` would otherwise spend every count event inside this hook (where no hook
-- fires) and never be stopped. The host's own lines are left to the count events (they are many, and cheap).
local function hook(event, line)
  if event == 'line' then
    local source = getinfo(2, 'S').source
    if source == script_source then covered[line] = true elseif source == HOST_SOURCE then return end
  end
  if killed then kill(TIMEOUT, 4) end
  local ok, now = pcall(clock)
  if not ok then
    -- At the deepest level a script can reach, the hook's own calls overflow the stack: that is the script's
    -- (catchable) stack overflow, as without the hook; the check runs again at the next event higher up.
    if type(now) == 'string' and find(now, 'stack overflow', 1, true) then error(now, 2) end
    kill(TIMEOUT, 4)
  end
  if now > deadline then kill(TIMEOUT, 4) end
end

check_clock = function()
  if killed then error(killed, 0) end
  local ok, now = pcall(clock)
  if not ok or now > deadline then kill(TIMEOUT) end
end

local function recheck(ok, ...)
  if killed then error(killed, 0) end
  if not ok and (...) == NO_MEMORY then killed = NO_MEMORY; error(killed, 0) end
  return ok, ...
end

-- Single C calls that could run for minutes without the hook firing are bounded before they start.
local function safe_rep(s, count)
  if type(count) == 'number' and (type(s) == 'string' or type(s) == 'number') then
    local size = #tostring(s)
    if size == 0 or count < 1 then return '' end
    if size * count > max_memory_bytes then kill(NO_MEMORY) end
  end
  return rep(s, count)
end

local function safe_insert(t, ...)
  if select('#', ...) == 2 and type(t) == 'table' then
    local position, value = ...
    -- Lua 5.1 shifts every slot between the position and the end one by one (2^31 slots for
    -- insert(t, -2^31, v)); gopher-lua, Kruise's runtime, just sets t[position] for positions below 1.
    if type(position) == 'number' and position < 1 then rawset(t, position, value); return end
  end
  return tinsert(t, ...)
end

---------------------------------------------------------------------------------------------------
-- The sandbox environment.
local safe_string = {}
for _, name in ipairs({'byte', 'char', 'find', 'format', 'gmatch', 'gsub', 'len', 'lower', 'match',
                       'reverse', 'sub', 'upper', 'gfind'}) do safe_string[name] = string[name] end
safe_string.rep = safe_rep
local safe_table = {}
for _, name in ipairs({'concat', 'maxn', 'remove', 'sort', 'getn', 'foreach', 'foreachi'}) do
  safe_table[name] = table[name]
end
safe_table.insert = safe_insert
local safe_math = {}
for k, v in pairs(math) do safe_math[k] = v end
local safe_json = {encode = json_encode, decode = json_decode, null = json_null}

-- Strings share one metatable; its __index becomes the safe string library (no dump, bounded rep),
-- and the metatable is hidden, so ("").dump is nil and no script can reach or change it.
do
  local string_meta = getmetatable('')
  string_meta.__index = safe_string
  string_meta.__metatable = false
end

local function read_only_meta(lib, name)
  return {__index = lib, __newindex = function() error(name .. ' is read-only', 2) end, __metatable = false}
end
local LIBRARIES = {
  string = read_only_meta(safe_string, 'string'), table = read_only_meta(safe_table, 'table'),
  math = read_only_meta(safe_math, 'math'), json = read_only_meta(safe_json, 'json'),
}

local current_env
local function sandbox_loadstring(chunk, name)
  if type(chunk) ~= 'string' then return nil, 'loadstring expects a string' end
  if byte(chunk, 1) == 27 then return nil, 'binary chunks are not allowed' end
  local f, err = loadstring(chunk, name and ('=' .. error_text(name)) or '=(load)')
  if not f then return nil, err end
  if jit then jit.off(f, true) end
  setfenv(f, current_env)
  return f
end

local function sandbox_xpcall(f, handler)
  -- Once a limit is hit the handler is not called: PUC Lua runs error handlers with the hook off.
  return recheck(xpcall(f, function(e)
    if killed then return e end
    return handler(e)
  end))
end

-- Copied into each run's fresh globals table (functions only: nothing here can be changed by a script).
local BASE = {
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, rawequal = rawequal,
  rawget = rawget, rawset = rawset, select = select, setmetatable = setmetatable, getmetatable = getmetatable,
  tonumber = tonumber, tostring = tostring, type = type, unpack = unpack, _VERSION = _VERSION,
  pcall = function(f, ...) return recheck(pcall(f, ...)) end,
  xpcall = sandbox_xpcall,
  loadstring = sandbox_loadstring,
  load = function(reader, name)
    if type(reader) == 'string' then return sandbox_loadstring(reader, name) end
    if type(reader) ~= 'function' then return nil, 'load expects a function or a string' end
    local parts = {}
    while true do
      local piece = reader()
      if piece == nil or piece == '' then break end
      if type(piece) ~= 'string' then return nil, 'reader function must return a string' end
      parts[#parts + 1] = piece
    end
    return sandbox_loadstring(concat(parts), name)
  end,
}

local printed, printed_bytes
local function sandbox_print(...)
  local count = select('#', ...)
  local parts = {}
  for i = 1, count do parts[i] = tostring((select(i, ...))) end
  local line = concat(parts, '\t')
  if printed_bytes >= MAX_PRINTED then return end
  if #line > MAX_PRINTED - printed_bytes then line = sub(line, 1, MAX_PRINTED - printed_bytes) .. '...' end
  printed_bytes = printed_bytes + #line + 1
  printed[#printed + 1] = line
end

local ENV_SIZE = 4  -- obj, print, _G and room for a few of the script's own globals
for _ in next, BASE do ENV_SIZE = ENV_SIZE + 1 end
for _ in next, LIBRARIES do ENV_SIZE = ENV_SIZE + 1 end
local function new_env(obj)
  local env = new_table(0, ENV_SIZE)
  for k, v in next, BASE do env[k] = v end
  for name, meta in next, LIBRARIES do env[name] = setmetatable({}, meta) end
  env.obj, env.print, env._G = obj, sandbox_print, env
  return env
end

---------------------------------------------------------------------------------------------------
-- Running a compiled script under the limits. Returns ok, json_or_reason, line, message, printed (nil when none), frames.
-- On an error, the script's own frames (line, function name; innermost first) for the error report. The
-- message is kept first, so that even a failure inside the handler (no memory left) loses nothing but frames.
-- Only the innermost levels are searched: getinfo(level) walks the stack from the top, so walking all of a
-- stack overflow's thousands of levels would take long (and an error raised by the hook runs its handler
-- with the hook off). Frames and names are plain strings and numbers, bounded in count and length.
local MAX_FRAMES, MAX_LEVELS, MAX_NAME = 20, 200, 200
local error_message, error_frames
local function capture(message)
  error_message, error_frames = message, nil
  if killed or message == NO_MEMORY then return message end
  local frames, level = {}, 2
  while #frames < 2 * MAX_FRAMES and level < MAX_LEVELS do
    local info = getinfo(level, 'Sln')
    if not info then break end
    if info.source == script_source and info.currentline > 0 then
      local name = info.name
      if type(name) == 'string' and #name > MAX_NAME then name = sub(name, 1, MAX_NAME) .. '...' end
      frames[#frames + 1] = info.currentline
      frames[#frames + 1] = info.what == 'main' and 'main chunk' or
        (type(name) == 'string' and format("function '%s'", valid_utf8(name))
         or format('function <line %d>', info.linedefined))
    end
    level = level + 1
  end
  error_frames = frames
  return message
end

local function finish(fn, tokens)
  local obj = from_tokens(tokens)
  local env = new_env(obj)
  current_env = env
  setfenv(fn, env)
  error_message, error_frames = nil, nil
  local ok, result = xpcall(fn, capture)
  current_env = nil
  if not ok and error_message ~= nil then result = error_message end  -- the handler itself failed
  if killed then return false, nil end
  if not ok then
    if result == NO_MEMORY then killed = NO_MEMORY; return false, nil end
    return false, 'error', error_text(without_host_location(result))
  end
  if type(result) ~= 'table' then
    return false, 'output', 'returned ' .. type(result) .. ' instead of a table'
  end
  local encoded, text = pcall(to_json, result)
  if killed then return false, nil end
  if not encoded then
    if text == NO_MEMORY then killed = NO_MEMORY; return false, nil end
    return false, 'output', error_text(text)
  end
  return true, text
end

-- executed: a table that receives the script chunk's executed lines as keys (coverage), or nil. It is
-- filled as the script runs, so the lines are there even when the run fails or lupa cannot take the result.
-- The last result is the error's frames (a flat list: line, name, line, name, ...) or nil.
local function run(fn, tokens, timeout, interval, max_bytes, executed)
  killed, stopped_at, max_memory_bytes = nil, nil, max_bytes
  printed, printed_bytes = {}, 0
  script_source, covered = getinfo(fn, 'S').source, executed
  deadline = clock() + timeout
  sethook(hook, executed and 'l' or '', interval)
  local ok, a, b, c = pcall(finish, fn, tokens)
  sethook()
  local frames = error_frames
  error_message, error_frames, covered = nil, nil, nil  -- nothing of a run is kept for the next one
  ORDER, EMPTY_LIST, NULLS, LIST_NULLS = nil, nil, nil, nil
  local lines = printed
  printed = nil
  for i = 1, #lines do lines[i] = valid_utf8(lines[i]) end
  if #lines == 0 then lines = nil end  -- nothing printed: no table for the caller to walk
  if killed then
    local reason = killed == TIMEOUT and 'timeout' or 'memory'
    killed = nil
    return false, reason, stopped_at, nil, lines, nil
  end
  if not ok then
    if a == NO_MEMORY then return false, 'memory', nil, nil, lines, nil end
    return false, 'error', nil, 'host failure: ' .. error_text(a), lines, nil
  end
  if a == true then return true, b, nil, nil, lines, nil end
  return false, b, nil, c, lines, b == 'error' and frames or nil
end

-- LuaJIT compiles only this: the host's conversion of data in and out (bounded by the input's size, and by
-- the value limits and the clock checks in encode_value on the way out), which scripts cannot change.
if jit then
  for _, f in ipairs({build, from_tokens, valid_utf8, key_string, key_text, encode_map, encode_list,
                      encode_value, to_json}) do
    jit.on(f)
  end
  jit.on(quote, true)
  jit.on(ordered, true)
end

local function set_clock(wall_clock)
  clock = wall_clock
end

return {run = run, set_clock = set_clock, compile = function(source, chunkname)
  if byte(source, 1) == 27 then return nil, 'binary chunks are not allowed' end
  local fn, err = loadstring(source, chunkname)
  if not fn then return nil, error_text(err) end
  if jit then jit.off(fn, true) end
  return fn, nil
end}
