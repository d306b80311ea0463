-- Trusted driver for engine/fulllink/envoy.py: emulates Envoy's HTTP Lua filter request API (envoy.filters.http.lua)
-- closely enough to run coloring scripts, inside graylane's sandbox on LuaJIT (Envoy embeds LuaJIT).
--
-- obj = {code = <inlineCode>, request = {headers = {{name, value}, ...}, protocol = ..., remoteAddress = ...,
--        localAddress = ..., requestedServerName = ..., routeName = ..., ssl = bool, timestamp = ms}}
-- Returns {headers = {{name, value}, ...}, logs = {{level, message}, ...}, clearRouteCache = n,
--          respond = {headers = ..., body = ...} or nil, error = message or nil, hasOnRequest = bool}.
--
-- Semantics follow Envoy's documentation of the stream handle and header map: header names are
-- case-insensitive (stored lowercase); get() joins several values with ","; replace() removes every
-- value and adds the new one (as add() when absent); headers cannot be modified while pairs() iterates;
-- respond() ends the script; a runtime error is logged and the request continues with the changes made
-- so far (as Envoy does).

local type, tostring, tonumber, pairs, ipairs, error, pcall, select = type, tostring, tonumber, pairs, ipairs, error, pcall, select
local setmetatable, rawget, next = setmetatable, rawget, next
local lower, byte, sub, format, concat = string.lower, string.byte, string.sub, string.format, table.concat
local load_code = loadstring

local request = obj.request or {}
local result = {logs = {}, clearRouteCache = 0, hasOnRequest = false}
local STOP = {}          -- unwinds the script after respond(), like Envoy never resuming the coroutine
local responded = false

local function arg_string(value, position, method)
  local t = type(value)
  if t == "string" then return value end
  if t == "number" then return tostring(value) end
  error(format("bad argument #%d to '%s' (string expected, got %s)", position, method, t), 3)
end

local function check_live()
  if responded then error(STOP, 0) end
end

---------------------------------------------------------------------------------------------------
-- Header map
local entries = {}       -- ordered {key, value}, keys lowercase
for _, pair in ipairs(request.headers or {}) do
  entries[#entries + 1] = {lower(tostring(pair[1])), tostring(pair[2])}
end
local iterating = false

local function check_modifiable(method)
  check_live()
  if iterating then
    error("header map can not be modified while iterating", 3)
  end
end

local function check_value(value, method)
  if value:find("[%z\r\n]") then
    error(format("bad argument #2 to '%s' (invalid header value)", method), 3)
  end
end

local HeaderMap = {}
local header_map_methods = {}

function header_map_methods.get(self, key)
  check_live()
  key = lower(arg_string(key, 1, "get"))
  local values = {}
  for _, entry in ipairs(entries) do
    if entry[1] == key then values[#values + 1] = entry[2] end
  end
  if #values == 0 then return nil end
  return concat(values, ",")
end

function header_map_methods.getAtIndex(self, key, index)
  check_live()
  key = lower(arg_string(key, 1, "getAtIndex"))
  index = tonumber(index)
  if index == nil then error("bad argument #2 to 'getAtIndex' (number expected)", 2) end
  local seen = 0
  for _, entry in ipairs(entries) do
    if entry[1] == key then
      if seen == index then return entry[2] end
      seen = seen + 1
    end
  end
  return nil
end

function header_map_methods.getNumValues(self, key)
  check_live()
  key = lower(arg_string(key, 1, "getNumValues"))
  local count = 0
  for _, entry in ipairs(entries) do
    if entry[1] == key then count = count + 1 end
  end
  return count
end

-- The key (lowercased) and value of add/replace, checked as Envoy checks them.
local function header_entry(key, value, method)
  check_modifiable(method)
  key = lower(arg_string(key, 1, method))
  value = arg_string(value, 2, method)
  check_value(value, method)
  return key, value
end

function header_map_methods.add(self, key, value)
  key, value = header_entry(key, value, "add")
  entries[#entries + 1] = {key, value}
end

local function remove_key(key)
  local kept = {}
  for _, entry in ipairs(entries) do
    if entry[1] ~= key then kept[#kept + 1] = entry end
  end
  entries = kept
end

function header_map_methods.remove(self, key)
  check_modifiable("remove")
  remove_key(lower(arg_string(key, 1, "remove")))
end

function header_map_methods.replace(self, key, value)
  key, value = header_entry(key, value, "replace")
  remove_key(key)
  entries[#entries + 1] = {key, value}
end

function header_map_methods.setHttp1ReasonPhrase(self, phrase)
  check_live()
end

local function header_pairs()
  check_live()
  iterating = true
  local index = 0
  return function()
    index = index + 1
    local entry = entries[index]
    if entry == nil then
      iterating = false
      return nil
    end
    return entry[1], entry[2]
  end
end

local headers_object = setmetatable({}, {
  __index = header_map_methods,
  __newindex = function() error("the header map is not a table; use add/replace/remove", 2) end,
  __metatable = false,
})
HeaderMap[headers_object] = header_pairs

---------------------------------------------------------------------------------------------------
-- Other handle objects
local function logger(level)
  return function(self, message)
    check_live()
    result.logs[#result.logs + 1] = {level, tostring(message)}
  end
end

local function object(methods)
  return setmetatable({}, {__index = methods, __metatable = false,
                           __newindex = function() error("attempt to modify an Envoy object", 2) end})
end

local dynamic_metadata = {}
local dynamic_metadata_object = object({
  get = function(self, filter) return dynamic_metadata[filter] end,
  set = function(self, filter, key, value)
    dynamic_metadata[filter] = dynamic_metadata[filter] or {}
    dynamic_metadata[filter][key] = value
  end,
})
HeaderMap[dynamic_metadata_object] = function() return next, dynamic_metadata, nil end

local function constant(value) return function() return value end end
local stream_info = object({
  protocol = constant(request.protocol or "HTTP/1.1"),
  downstreamDirectRemoteAddress = constant(request.remoteAddress or "10.0.0.1:50000"),
  downstreamRemoteAddress = constant(request.remoteAddress or "10.0.0.1:50000"),
  downstreamLocalAddress = constant(request.localAddress or "10.0.0.2:8080"),
  downstreamDirectLocalAddress = constant(request.localAddress or "10.0.0.2:8080"),
  requestedServerName = constant(request.requestedServerName or ""),
  routeName = constant(request.routeName or ""),
  virtualClusterName = constant(""),
  dynamicMetadata = function() return dynamic_metadata_object end,
  downstreamSslConnection = constant(nil),
})

local ssl_object = object({
  peerCertificatePresented = constant(false),
  peerCertificateValidated = constant(false),
  uriSanPeerCertificate = constant({}),
  sha256PeerCertificateDigest = constant(""),
})
local connection = object({
  ssl = function() if request.ssl then return ssl_object end return nil end,
})

local metadata = object({get = constant(nil)})
HeaderMap[metadata] = function() return next, {}, nil end

local BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(text)
  local out = {}
  for i = 1, #text, 3 do
    local a, b, c = byte(text, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = {}
    for j = 3, 0, -1 do
      local k = math.floor(n / 64 ^ j) % 64
      chars[#chars + 1] = sub(BASE64, k + 1, k + 1)
    end
    if not b then chars[3], chars[4] = "=", "=" elseif not c then chars[4] = "=" end
    out[#out + 1] = concat(chars)
  end
  return concat(out)
end

local handle = object({
  headers = function(self) check_live(); return headers_object end,
  body = function(self) check_live(); return nil end,
  bodyChunks = function(self) check_live(); return function() return nil end end,
  trailers = function(self) check_live(); return nil end,
  metadata = function(self) check_live(); return metadata end,
  streamInfo = function(self) check_live(); return stream_info end,
  connection = function(self) check_live(); return connection end,
  connectionStreamInfo = function(self) check_live(); return stream_info end,
  filterContext = function(self) check_live(); return {} end,
  logTrace = logger("trace"), logDebug = logger("debug"), logInfo = logger("info"),
  logWarn = logger("warn"), logErr = logger("error"), logCritical = logger("critical"),
  clearRouteCache = function(self)
    check_live()
    result.clearRouteCache = result.clearRouteCache + 1
  end,
  respond = function(self, reply_headers, body)
    check_live()
    if type(reply_headers) ~= "table" then error("bad argument #1 to 'respond' (table expected)", 2) end
    local copied = {}
    for key, value in pairs(reply_headers) do copied[tostring(key)] = value end
    if copied[":status"] == nil then error(":status header must be set", 2) end
    result.respond = {headers = copied, body = body}
    responded = true
    error(STOP, 0)
  end,
  httpCall = function() error("httpCall is not emulated by graylane", 2) end,
  base64Escape = function(self, text) return base64(arg_string(text, 1, "base64Escape")) end,
  timestamp = function() return request.timestamp or 0 end,
  timestampString = function() return tostring(request.timestamp or 0) end,
  setUpstreamOverrideHost = function() check_live() end,
})

-- Envoy's LuaJIT honours __pairs on its userdata; the emulated objects are tables, so pairs() learns them.
local original_pairs = pairs
_G.pairs = function(t)
  local custom = HeaderMap[t]
  if custom then return custom() end
  return original_pairs(t)
end

---------------------------------------------------------------------------------------------------
-- Load and run the filter code.
local chunk, compile_error = load_code(obj.code, "inlineCode")
if chunk == nil then
  result.syntaxError = tostring(compile_error)
  return result
end

local function message_of(err)
  if err == STOP then return nil end
  return tostring(err)
end

local ok, err = pcall(chunk)
if not ok then
  result.error = message_of(err)
else
  local on_request = rawget(_G, "envoy_on_request")
  if type(on_request) == "function" then
    result.hasOnRequest = true
    iterating = false
    ok, err = pcall(on_request, handle)
    if not ok then result.error = message_of(err) end
  end
end

local out = {}
for index, entry in ipairs(entries) do out[index] = {entry[1], entry[2]} end
result.headers = out
return result
