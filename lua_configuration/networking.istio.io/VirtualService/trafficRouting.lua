-- graylane built-in traffic routing for Istio VirtualService (Kruise custom-network-provider contract).
--
-- Matches: one http rule per match is inserted at the top of spec.http, in the order given (all
--   conditions of a match must hold; separate matches are alternatives). It routes to the canary
--   service (host-level split) or, when canaryService == stableService, to the stable host's subset
--   "canary" (subset-level split). It copies rewrite/timeout/retries/corsPolicy/headers from the stable
--   route so canary requests are served the same way, and applies requestHeaderModifier.
-- Weight: every http/tcp/tls rule without `match` that routes to the stable service gets its
--   destination weights scaled to stableWeight (largest-remainder rounding, so weights sum to exactly
--   100) and a canary destination with canaryWeight.
-- Matches take precedence over weight, as in Kruise (TrafficRoutingStrategy.Matches): a step with both
--   only inserts the match rules and leaves the weights alone. Rules with matches that this script did
--   not create are left alone.

local spec = obj.data.spec
local stable = obj.stableService
local canary = obj.canaryService
local canaryWeight = obj.canaryWeight
local stableWeight = obj.stableWeight
local modifier = obj.requestHeaderModifier
local subsetLevel = (canary == stable)
local CANARY_SUBSET = "canary"
local COPIED_RULE_FIELDS = {"rewrite", "timeout", "retries", "corsPolicy"}

local function deepcopy(value)
  if type(value) ~= "table" then return value end
  local copy = {}
  for k, v in pairs(value) do copy[k] = deepcopy(v) end
  return copy
end

-- "reviews", "reviews.bookinfo", "reviews.bookinfo.svc.cluster.local" all name service reviews;
-- a namespace only has to agree when both sides give one.
local sameServiceCache = {}
local function sameServiceUncached(host, service)
  local hostName, hostRest = host:match("^([^.]+)%.?(.*)$")
  local serviceName, serviceRest = service:match("^([^.]+)%.?(.*)$")
  if hostName == nil or hostName ~= serviceName then return false end
  local hostNamespace, serviceNamespace = hostRest:match("^([^.]+)"), serviceRest:match("^([^.]+)")
  return hostNamespace == nil or serviceNamespace == nil or hostNamespace == serviceNamespace
end

local function sameService(host, service)
  if type(host) ~= "string" or type(service) ~= "string" then return false end
  local byService = sameServiceCache[service]
  if byService == nil then byService = {}; sameServiceCache[service] = byService end
  local same = byService[host]
  if same == nil then same = sameServiceUncached(host, service); byService[host] = same end
  return same
end

-- The canary host written in the same form as the stable host it stands beside.
local function canaryHostFor(stableHost)
  if subsetLevel then return stableHost end
  if canary:find(".", 1, true) then return canary end
  local suffix = stableHost:match("^[^.]+(%..*)$")
  return suffix and (canary .. suffix) or canary
end

local function isCanary(destination)
  if type(destination) ~= "table" then return false end
  if subsetLevel then
    return sameService(destination.host, stable) and destination.subset == CANARY_SUBSET
  end
  return sameService(destination.host, canary)
end

local function isStable(destination)
  return type(destination) == "table" and not isCanary(destination) and sameService(destination.host, stable)
end

local function routesToStable(rule)
  if type(rule) ~= "table" or type(rule.route) ~= "table" then return false end
  for _, route in ipairs(rule.route) do
    if isStable(route.destination) then return true end
  end
  return false
end

-- Integer weights proportional to `weights`, summing to exactly `target`.
local function largestRemainder(weights, target)
  local total = 0
  for _, w in ipairs(weights) do total = total + w end
  if total <= 0 then
    for k = 1, #weights do weights[k] = 1 end
    total = #weights
  end
  local result, remainders, sum = {}, {}, 0
  for k, w in ipairs(weights) do
    local exact = w * target / total
    result[k] = math.floor(exact)
    sum = sum + result[k]
    remainders[k] = {index = k, rest = exact - result[k]}
  end
  table.sort(remainders, function(a, b)
    if a.rest ~= b.rest then return a.rest > b.rest end
    return a.index < b.index
  end)
  for j = 1, target - sum do
    local k = remainders[j].index
    result[k] = result[k] + 1
  end
  return result
end

local function applyModifier(headers)
  if not modifier then return headers end
  headers = headers or {}
  local request = headers.request or {}
  if modifier.set and #modifier.set > 0 then
    request.set = request.set or {}
    for _, h in ipairs(modifier.set) do request.set[h.name] = h.value end
  end
  if modifier.add and #modifier.add > 0 then
    request.add = request.add or {}
    for _, h in ipairs(modifier.add) do request.add[h.name] = h.value end
  end
  if modifier.remove and #modifier.remove > 0 then
    request.remove = request.remove or {}
    for _, name in ipairs(modifier.remove) do table.insert(request.remove, name) end
  end
  headers.request = request
  return headers
end

local function splitRule(rule)
  if type(rule) ~= "table" or rule.match ~= nil or not routesToStable(rule) then return end
  local route = rule.route
  local canaryIndex, template
  local others, weights, explicit = {}, {}, false
  for i, entry in ipairs(route) do
    if canaryIndex == nil and isCanary(entry.destination) then
      canaryIndex = i
    else
      others[#others + 1] = i
      if entry.weight ~= nil then explicit = true end
      if template == nil and isStable(entry.destination) then template = entry end
    end
  end
  for k, i in ipairs(others) do
    weights[k] = explicit and (tonumber(route[i].weight) or 0) or 1
  end
  local scaled = largestRemainder(weights, stableWeight)
  for k, i in ipairs(others) do route[i].weight = scaled[k] end
  if canaryIndex then
    route[canaryIndex].weight = canaryWeight
    return
  end
  local destination = {host = canaryHostFor(template.destination.host)}
  if subsetLevel then destination.subset = CANARY_SUBSET end
  if template.destination.port then destination.port = deepcopy(template.destination.port) end
  local entry = {destination = destination, weight = canaryWeight}
  local headers = applyModifier(deepcopy(template.headers))
  if headers then entry.headers = headers end
  table.insert(route, entry)
end

local function stringMatch(matchType, value)
  if matchType == "RegularExpression" then return {regex = value} end
  if matchType == "PathPrefix" or matchType == "Prefix" then return {prefix = value} end
  return {exact = value}
end

local function istioMatch(match)
  local result = {}
  if match.path then result.uri = stringMatch(match.path.type or "PathPrefix", match.path.value or "/") end
  if match.headers and #match.headers > 0 then
    result.headers = {}
    for _, header in ipairs(match.headers) do
      result.headers[string.lower(header.name)] = stringMatch(header.type, header.value)
    end
  end
  if match.queryParams and #match.queryParams > 0 then
    result.queryParams = {}
    for _, param in ipairs(match.queryParams) do
      result.queryParams[param.name] = stringMatch(param.type, param.value)
    end
  end
  return result
end

-- The rule (and destination) canary match rules copy: the first stable route without a match,
-- else the first rule that routes to the stable service at all.
local function stableTemplate(rules)
  local fallback
  for _, rule in ipairs(rules) do
    if routesToStable(rule) then
      if rule.match == nil then return rule end
      fallback = fallback or rule
    end
  end
  return fallback
end

local function insertMatchRules(matches)
  if spec.http == nil then error("matches need http routes, but the VirtualService has no spec.http") end
  local templateRule = stableTemplate(spec.http)
  if templateRule == nil then
    error("no http route of this VirtualService sends traffic to service " .. stable)
  end
  local templateDestination
  for _, entry in ipairs(templateRule.route) do
    if isStable(entry.destination) then templateDestination = entry.destination break end
  end
  local inserted = {}
  for i, match in ipairs(matches) do
    local destination = {host = canaryHostFor(templateDestination.host)}
    if subsetLevel then destination.subset = CANARY_SUBSET end
    if templateDestination.port then destination.port = deepcopy(templateDestination.port) end
    local rule = {match = {istioMatch(match)}, route = {{destination = destination}}}
    for _, field in ipairs(COPIED_RULE_FIELDS) do
      if templateRule[field] ~= nil then rule[field] = deepcopy(templateRule[field]) end
    end
    local headers = applyModifier(deepcopy(templateRule.headers))
    if headers then rule.headers = headers end
    inserted[i] = rule
  end
  for i = #inserted, 1, -1 do table.insert(spec.http, 1, inserted[i]) end
end

local hasMatches = obj.matches ~= nil and #obj.matches > 0

if canaryWeight ~= -1 and not hasMatches then
  for _, protocol in ipairs({"http", "tcp", "tls"}) do
    if type(spec[protocol]) == "table" then
      for _, rule in ipairs(spec[protocol]) do splitRule(rule) end
    end
  end
end

if hasMatches then
  insertMatchRules(obj.matches)
end

return {spec = spec, labels = obj.data.labels, annotations = obj.data.annotations}
