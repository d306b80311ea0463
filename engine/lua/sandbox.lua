-- Trusted host side of the sandbox, loaded once per runtime by engine/lua/sandbox.py.
-- Scripts never see these locals: they run with an environment that only holds the safe base functions,
-- read-only string/table/math/json libraries and `obj`.
local type, pairs, ipairs, next, select, unpack, tostring, error = type, pairs, ipairs, next, select, unpack, tostring, error
local setmetatable, getmetatable, setfenv, loadstring, pcall, xpcall = setmetatable, getmetatable, setfenv, loadstring, pcall, xpcall
local format, find, gsub, byte, sub, concat, sort, floor = string.format, string.find, string.gsub, string.byte, string.sub, table.concat, table.sort, math.floor
local sethook, getinfo, clock, huge = debug.sethook, debug.getinfo, os.clock, math.huge
local collectgarbage = collectgarbage
-- On LuaJIT, hooks only fire in the interpreter: keep the JIT off so the time limit always holds.
if jit then jit.off() end

---------------------------------------------------------------------------------------------------
-- Python -> Lua: a flat token list made by engine/lua/convert.py. A negative number -n-1 opens a map of
-- n entries (key, value ...), a positive number n+1 opens a list of n items, 0 is null, and 0.5
-- escapes the number that follows. Maps remember their key order and empty lists remember that they
-- were lists, so that whatever a script does not touch comes back exactly as it went in.
local ORDER, EMPTY_LIST, NULLS
local tok, pos
local function build()
  local x = tok[pos]; pos = pos + 1
  local t = {}
  if x > 0 then
    for j = 1, x - 1 do
      local y = tok[pos]; pos = pos + 1
      if type(y) ~= 'number' then t[j] = y
      elseif y == 0.5 then t[j] = tok[pos]; pos = pos + 1
      elseif y ~= 0 then pos = pos - 1; t[j] = build() end
    end
    if x == 1 then EMPTY_LIST[t] = true end
  else
    local n = -x - 1
    local keys = n > 1 and {} or nil
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
  ORDER, EMPTY_LIST, NULLS = {}, {}, {}
  tok, pos = tokens, 1
  local root = build()
  tok = nil
  return root
end

---------------------------------------------------------------------------------------------------
-- Lua -> JSON text (parsed by Python's json module). Known maps keep their original key order, keys
-- a script added follow in sorted order; integral numbers are written as integers.
local json_null = setmetatable({}, {__tostring = function() return 'null' end, __metatable = false})
local ESCAPED, KEYS, cached = {}, {}, 0
local function quote(s)
  local q = s
  if find(s, '[%c"\\]') then
    q = gsub(s, '[%c"\\]', function(c) return format('\\u%04x', byte(c)) end)
  end
  q = '"' .. q .. '"'
  cached = cached + 1
  if cached > 50000 then ESCAPED, KEYS, cached = {}, {}, 0 end
  ESCAPED[s] = q
  return q
end

local function key_text(k)
  local q = KEYS[k]
  if q then return q end
  local tk = type(k)
  if tk == 'number' then
    if k ~= k or k == huge or k == -huge then error('a map key is not a finite number', 0) end
    if k == floor(k) then k = format('%d', k) else k = format('%.17g', k) end
  elseif tk ~= 'string' then
    error('a map key is a ' .. tk .. '; only strings and numbers can be keys', 0)
  end
  q = (ESCAPED[k] or quote(k)) .. ':'
  KEYS[k] = q
  return q
end

local buf, n, depth
local encode_value
local function sorted_keys(keys)
  sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

local function encode_map(v, order, nulls)
  n = n + 1; buf[n] = '{'
  local count, present = 0, 0
  if order then
    for i = 1, #order do
      local k = order[i]
      local x = v[k]
      if x == nil and nulls and nulls[k] then x = json_null else present = present + (x ~= nil and 1 or 0) end
      if x ~= nil then
        if count > 0 then n = n + 1; buf[n] = ',' end
        count = count + 1
        n = n + 1; buf[n] = key_text(k); encode_value(x)
      end
    end
    local total = 0
    for _ in pairs(v) do total = total + 1 end
    if total > present then  -- keys the script added: after the original ones, sorted
      local known, extra = {}, {}
      for i = 1, #order do known[order[i]] = true end
      for k in pairs(v) do if not known[k] then extra[#extra + 1] = k end end
      for _, k in ipairs(sorted_keys(extra)) do
        if count > 0 then n = n + 1; buf[n] = ',' end
        count = count + 1
        n = n + 1; buf[n] = key_text(k); encode_value(v[k])
      end
    end
  else
    local k1 = next(v)
    if k1 ~= nil and next(v, k1) == nil then
      n = n + 1; buf[n] = key_text(k1); encode_value(v[k1])
    elseif k1 ~= nil then
      local keys, m = {}, 0
      for k in pairs(v) do m = m + 1; keys[m] = k end
      sorted_keys(keys)
      for j = 1, m do
        if j > 1 then n = n + 1; buf[n] = ',' end
        n = n + 1; buf[n] = key_text(keys[j]); encode_value(v[keys[j]])
      end
    end
  end
  n = n + 1; buf[n] = '}'
end

local INTEGERS = {}
for i = -1, 1024 do INTEGERS[i] = format('%d', i) end

encode_value = function(v)
  local t = type(v)
  if t == 'string' then n = n + 1; buf[n] = ESCAPED[v] or quote(v)
  elseif t == 'number' then
    if v ~= v or v == huge or v == -huge then error('a value is not a finite number', 0) end
    n = n + 1
    if v == floor(v) and v > -1e15 and v < 1e15 then buf[n] = format('%d', v) else buf[n] = format('%.17g', v) end
  elseif v == json_null then n = n + 1; buf[n] = 'null'
  elseif t == 'table' then
    depth = depth + 1
    if depth > 200 then error('the returned table is nested more than 200 levels deep (a cycle?)', 0) end
    local len = #v
    if len > 0 or (EMPTY_LIST and EMPTY_LIST[v]) then
      n = n + 1; buf[n] = '['
      for j = 1, len do
        if j > 1 then n = n + 1; buf[n] = ',' end
        encode_value(v[j])
      end
      n = n + 1; buf[n] = ']'
    else
      encode_map(v, ORDER and ORDER[v], NULLS and NULLS[v])
    end
    depth = depth - 1
  elseif t == 'boolean' then n = n + 1; buf[n] = v and 'true' or 'false'
  elseif t == 'nil' then n = n + 1; buf[n] = 'null'
  else error('a value is a ' .. t .. ', which has no JSON form', 0) end
end

local function to_json(v)
  buf, n, depth = {}, 0, 0
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
  local function skip() i = find(s, '[^ \t\r\n]', i) or #s + 1 end
  local function fail(what) error(format('json.decode: %s at position %d', what, i), 0) end
  local escapes = {['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n', r = '\r', t = '\t'}
  local function utf8(cp)
    if cp < 0x80 then return string.char(cp)
    elseif cp < 0x800 then return string.char(0xC0 + floor(cp / 64), 0x80 + cp % 64)
    elseif cp < 0x10000 then return string.char(0xE0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
    else return string.char(0xF0 + floor(cp / 262144), 0x80 + floor(cp / 4096) % 64, 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64) end
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
    if c == '{' then
      local t = {}
      i = i + 1; skip()
      if sub(s, i, i) == '}' then i = i + 1; return t end
      while true do
        skip()
        if sub(s, i, i) ~= '"' then fail('expected a string key') end
        local k = str(); skip()
        if sub(s, i, i) ~= ':' then fail("expected ':'") end
        i = i + 1
        t[k] = value(); skip()
        local d = sub(s, i, i); i = i + 1
        if d == '}' then return t elseif d ~= ',' then i = i - 1; fail("expected ',' or '}'") end
      end
    elseif c == '[' then
      local t, m = {}, 0
      i = i + 1; skip()
      if sub(s, i, i) == ']' then i = i + 1; return t end
      while true do
        m = m + 1; t[m] = value(); skip()
        local d = sub(s, i, i); i = i + 1
        if d == ']' then return t elseif d ~= ',' then i = i - 1; fail("expected ',' or ']'") end
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
  local ok, text = pcall(to_json, v)
  if not ok then error('json.encode: ' .. text, 2) end
  return text
end

---------------------------------------------------------------------------------------------------
-- The sandbox environment.
local function read_only(lib, name)
  return setmetatable({}, {
    __index = lib,
    __newindex = function() error(name .. ' is read-only', 2) end,
    __metatable = false,
  })
end

local killed          -- set when a limit was hit; pcall inside the script cannot swallow it
local current_env
local function recheck(ok, ...)
  if killed then error(killed, 0) end
  if not ok and (...) == 'not enough memory' then killed = 'not enough memory'; error(killed, 0) end
  return ok, ...
end

local safe_string = {}
for _, name in ipairs({'byte', 'char', 'find', 'format', 'gmatch', 'gsub', 'len', 'lower', 'match', 'rep',
                       'reverse', 'sub', 'upper', 'gfind'}) do safe_string[name] = string[name] end
local safe_table = {}
for _, name in ipairs({'concat', 'insert', 'maxn', 'remove', 'sort', 'getn', 'foreach', 'foreachi'}) do
  safe_table[name] = table[name]
end
local safe_math = {}
for k, v in pairs(math) do safe_math[k] = v end

-- Strings share one metatable whose __index is the real string library; hide it from scripts.
getmetatable('').__metatable = false

local function sandbox_loadstring(chunk, name)
  if type(chunk) ~= 'string' then return nil, 'loadstring expects a string' end
  if byte(chunk, 1) == 27 then return nil, 'binary chunks are not allowed' end
  local f, err = loadstring(chunk, name and ('=' .. tostring(name)) or '=(load)')
  if not f then return nil, err end
  setfenv(f, current_env)
  return f
end

local BASE = {
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, rawequal = rawequal,
  rawget = rawget, rawset = rawset, select = select, setmetatable = setmetatable, getmetatable = getmetatable,
  tonumber = tonumber, tostring = tostring, type = type, unpack = unpack, _VERSION = _VERSION,
  pcall = function(f, ...) return recheck(pcall(f, ...)) end,
  xpcall = function(f, h) return recheck(xpcall(f, h)) end,
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
  string = read_only(safe_string, 'string'),
  table = read_only(safe_table, 'table'),
  math = read_only(safe_math, 'math'),
  json = read_only({encode = json_encode, decode = json_decode, null = json_null}, 'json'),
}
local ENV_META = {__index = BASE}

---------------------------------------------------------------------------------------------------
-- Running a compiled script under the limits.
local TIMEOUT = 'time limit exceeded'

local function where(level)
  local info = getinfo(level, 'Sl')
  if info and info.currentline and info.currentline > 0 then return info.currentline end
  return nil
end

-- memory_kb: checked in the hook where the allocator cannot enforce a limit (64-bit LuaJIT).
local deadline, memory_limit_kb, stopped_at
local script_source    -- the running script's chunk name
local covered          -- line coverage: the script chunk's executed lines, when asked for
local HOST_SOURCE = getinfo(1, 'S').source
local function hook(event, line)
  -- Line events come only with coverage on. Outside this host file they run the limit checks too: a loop
  -- as short as `while true do end` would otherwise use up every count event inside this hook, where no
  -- hook fires, and never be stopped. (In the host, a check could fire after the run, before sethook().)
  if event == 'line' then
    local source = getinfo(2, 'S').source
    if source == script_source then covered[line] = true elseif source == HOST_SOURCE then return end
  end
  if killed or clock() > deadline then
    stopped_at = stopped_at or where(3)
    killed = killed or TIMEOUT
    error(killed, 0)
  end
  if memory_limit_kb and collectgarbage('count') > memory_limit_kb then
    stopped_at = stopped_at or where(3)
    killed = 'not enough memory'
    error(killed, 0)
  end
end

-- On an error, the script's own frames (line, function name; innermost first) for the error report. The
-- message is kept first, so that even a failure inside the handler (no memory left) loses nothing but frames.
-- Only the innermost levels are searched: getinfo(level) walks the stack from the top, so walking all of
-- a stack overflow's 20,000 levels would take seconds (and no hook can stop an error handler).
local MAX_FRAMES, MAX_LEVELS = 20, 200
local error_message, error_frames
local function capture(message)
  error_message, error_frames = message, nil
  if killed or message == 'not enough memory' then return message end
  local frames, level = {}, 2
  while #frames < 2 * MAX_FRAMES and level < MAX_LEVELS do
    local info = getinfo(level, 'Sln')
    if not info then break end
    if info.source == script_source and info.currentline > 0 then
      frames[#frames + 1] = info.currentline
      frames[#frames + 1] = info.what == 'main' and 'main chunk' or
        (info.name and format("function '%s'", info.name) or format('function <line %d>', info.linedefined))
    end
    level = level + 1
  end
  error_frames = frames
  return message
end

local function run(fn, tokens, timeout, interval, printer, memory_kb, lines)
  local obj = from_tokens(tokens)
  -- `printer` is a Python callable: scripts only ever see this Lua closure, never the Python object.
  local env = setmetatable({obj = obj, print = function(...) printer(...) end}, ENV_META)
  env._G = env
  current_env = env
  setfenv(fn, env)
  killed, stopped_at, memory_limit_kb = nil, nil, memory_kb
  deadline = clock() + timeout
  script_source, covered, error_message, error_frames = getinfo(fn, 'S').source, lines, nil, nil
  sethook(hook, lines and 'l' or '', interval)
  local ok, result = xpcall(fn, capture)
  local frames = error_frames
  if not ok and error_message ~= nil then result = error_message end
  error_message, error_frames = nil, nil  -- nothing of a run is kept for the next one
  sethook()
  covered = nil
  current_env = nil
  if killed then
    local reason = killed == TIMEOUT and 'timeout' or 'memory'
    killed = nil
    return false, reason, stopped_at, nil
  end
  if not ok then
    if result == 'not enough memory' then return false, 'memory', nil, nil end
    return false, 'error', nil, tostring(result), frames
  end
  if type(result) ~= 'table' then
    return false, 'output', nil, 'returned ' .. type(result) .. ' instead of a table'
  end
  local encoded_ok, text = pcall(to_json, result)
  ORDER, EMPTY_LIST, NULLS = nil, nil, nil
  if not encoded_ok then return false, 'output', nil, text end
  return true, text, nil, nil
end

return {run = run, compile = function(source, chunkname)
  if byte(source, 1) == 27 then return nil, 'binary chunks are not allowed' end
  local fn, err = loadstring(source, chunkname)
  return fn, err
end}
