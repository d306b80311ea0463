-- graylane built-in traffic routing for Istio VirtualService (Kruise custom-network-provider contract).
--
-- Matches (lanes): lane rules are inserted directly before every http rule that routes to the stable
--   service (up to the first rule that takes every request), one per combination of that rule's own
--   matches and the strategy's matches, each the two ANDed: a lane rule catches only requests the rule
--   after it would have sent to the stable service, never another service's (Kruise puts the bare lane
--   match on top of spec.http, where it catches every path of the VirtualService). Combinations no
--   request can satisfy get no rule (said with -v); one Istio cannot express is an error. A lane rule
--   routes the stable service's share of its rule to the canary service (host-level split) or, when
--   canaryService == stableService, to the stable host's subset "canary" (subset-level split), keeps
--   other services' shares, does to requests what its rule does (rewrite, timeout, retries, corsPolicy,
--   headers, fault, mirror) and applies requestHeaderModifier.
-- Weight: every http/tcp/tls rule without `match` that routes to the stable service gets its
--   destination weights scaled to stableWeight (largest-remainder rounding, so weights sum to exactly
--   100) and a canary destination with canaryWeight.
-- Matches take precedence over weight, as in Kruise (TrafficRoutingStrategy.Matches): a step with both
--   only inserts the lane rules and leaves the weights alone. Rules with matches that this script did
--   not create are left alone.

-- ======================================================================================================
-- Argo Rollouts (argoproj.io/v1alpha1 Rollout, canary.trafficRouting.istio): dispatched on obj.argo.
-- One call is one reconcile of Argo's Istio controller at one step, on the object as the previous step
-- left it: setHeaderRoute, then setMirrorRoute, then setWeight (Argo's order). Argo's rules are kept:
-- which routes are patched (named routes, or the single/first unnamed one; tcpRoutes/tlsRoutes by port
-- and sniHosts, else the first), destinations matched by the first label of their host or by subset,
-- other weighted destinations dropped, managed routes on top in managedRoutes order. Fix: Argo drops
-- destinations by shifting indexes, which can duplicate the canary; here each one is dropped exactly.
if obj.argo then  -- the Argo functions are made only for an Argo Rollout (fewer closures per Kruise run)
local function argoFail(message) error(message, 0) end

local function argoName(rule)
  return type(rule) == "table" and type(rule.name) == "string" and rule.name or ""
end

-- Argo's getHost: the host up to its first dot ("" when it starts with a dot).
local function argoHost(destination)
  local host = type(destination) == "table" and destination.host
  if type(host) ~= "string" then return "" end
  local dot = host:find(".", 1, true)
  if dot == nil then return host end
  return host:sub(1, dot - 1)
end

local function argoSubset(destination)
  return type(destination) == "table" and type(destination.subset) == "string" and destination.subset or ""
end

local function argoContains(list, value)
  for _, item in ipairs(list or {}) do if item == value then return true end end
  return false
end

-- Indexes of the http rules setWeight patches (Argo's getHttpRouteIndexesToPatch).
local function argoHttpIndexes(names, rules)
  if #names == 0 then
    if #rules == 1 then return {1} end
    for i, rule in ipairs(rules) do
      if argoName(rule) == "" then return {i} end
    end
  end
  local indexes = {}
  for _, name in ipairs(names) do
    local found
    for i, rule in ipairs(rules) do
      if argoName(rule) == name then found = i break end
    end
    if not found then argoFail("HTTP Route '" .. name .. "' is not found in the defined Virtual Service.") end
    indexes[#indexes + 1] = found
  end
  return indexes
end

-- The single port of a tcp/tls rule's matches (0 when none), nil when it names several.
local function argoRulePort(rule)
  local port, count = nil, 0
  local seen = {}
  for _, match in ipairs(type(rule.match) == "table" and rule.match or {}) do
    local p = tonumber(match.port) or 0
    if not seen[p] then seen[p] = true; count = count + 1; port = p end
  end
  if count > 1 then return nil end
  return port or 0
end

local function argoSameHosts(wanted, rule)
  local have, count = {}, 0
  for _, match in ipairs(type(rule.match) == "table" and rule.match or {}) do
    for _, host in ipairs(type(match.sniHosts) == "table" and match.sniHosts or {}) do
      if not have[host] then have[host] = true; count = count + 1 end
    end
  end
  if #wanted ~= count then return false end
  local left = {}
  for _, host in ipairs(wanted) do left[host] = true end
  for host in pairs(have) do if not left[host] then return false end end
  return true
end

-- Indexes of the tcp/tls rules setWeight patches: by port (and sniHosts), else the first rule.
local function argoL4Indexes(protocol, selectors, rules)
  if #selectors == 0 then return {1} end
  local indexes = {}
  for _, selector in ipairs(selectors) do
    local found = false
    for i, rule in ipairs(rules) do
      local port = argoRulePort(rule)
      if port ~= nil and port == (tonumber(selector.port) or 0)
          and (protocol == "tcp" or argoSameHosts(selector.sniHosts or {}, rule)) then
        indexes[#indexes + 1] = i
        found = true
      end
    end
    if not found then
      argoFail("No matching " .. string.upper(protocol) .. " routes found in the defined Virtual Service.")
    end
  end
  return indexes
end

-- Argo's validateVirtualServiceRouteDestinations: the route must hold both the stable and the canary.
local function argoValidateDestinations(argo, entries)
  local dr = argo.destinationRule
  local hasStable, hasCanary = false, false
  for _, entry in ipairs(entries) do
    local destination = type(entry) == "table" and entry.destination
    if dr then
      local subset = argoSubset(destination)
      if (dr.stableSubsetName or "") ~= "" and subset == dr.stableSubsetName then hasStable = true end
      if (dr.canarySubsetName or "") ~= "" and subset == dr.canarySubsetName then hasCanary = true end
    else
      local host = argoHost(destination)
      if (argo.stableService or "") ~= "" and host == argo.stableService then hasStable = true end
      if (argo.canaryService or "") ~= "" and host == argo.canaryService then hasCanary = true end
    end
  end
  if dr then
    if not hasCanary then argoFail("Canary DestinationRule subset '" .. (dr.canarySubsetName or "") .. "' not found in route") end
    if not hasStable then argoFail("Stable DestinationRule subset '" .. (dr.stableSubsetName or "") .. "' not found in route") end
  else
    if not hasCanary then argoFail("Canary Service '" .. (argo.canaryService or "") .. "' not found in route") end
    if not hasStable then argoFail("Stable Service '" .. (argo.stableService or "") .. "' not found in route") end
  end
end

local function argoManagedNames(argo)
  local names = {}
  for _, route in ipairs(argo.managedRoutes or {}) do names[#names + 1] = route end
  return names
end

local function argoUnmanagedCount(argo, rules)
  local managed, count = argoManagedNames(argo), 0
  for _, rule in ipairs(rules) do
    if not argoContains(managed, argoName(rule)) then count = count + 1 end
  end
  return count
end

local function argoRoutes(rule)
  return type(rule) == "table" and type(rule.route) == "table" and rule.route or {}
end

-- Argo's processRoutes: canary gets the weight, stable the rest, other weighted destinations go.
local function argoSetRouteWeights(argo, rule, weight)
  local dr = argo.destinationRule or {}
  local additional = dr.additionalSubsetNames or {}
  local stableWeight = 100 - weight
  for _, entry in ipairs(argoRoutes(rule)) do
    if argoSubset(entry.destination) ~= "" and argoContains(additional, argoSubset(entry.destination)) then
      stableWeight = stableWeight - (tonumber(entry.weight) or 0)
    end
  end
  if stableWeight < 0 then stableWeight = 0 end
  local kept = {}
  for _, entry in ipairs(argoRoutes(rule)) do
    local host, subset = argoHost(entry.destination), argoSubset(entry.destination)
    local current = tonumber(entry.weight) or 0
    local keep = true
    if host ~= "" then
      if host == argo.canaryService or (subset ~= "" and subset == dr.canarySubsetName) then
        if current ~= weight then entry.weight = weight end
      elseif host == argo.stableService or (subset ~= "" and subset == dr.stableSubsetName) then
        if current ~= stableWeight then entry.weight = stableWeight end
      elseif not argoContains(additional, subset) or subset == "" then
        keep = (current == 0)
      end
    end
    if keep then kept[#kept + 1] = entry end
  end
  if #kept ~= #argoRoutes(rule) then rule.route = kept end
end

local function argoOrderRoutes(argo, s)
  if argo.managedRoutes == nil or type(s.http) ~= "table" then return end
  local managed = argoManagedNames(argo)
  local ordered = {}
  for _, name in ipairs(managed) do
    for _, rule in ipairs(s.http) do
      if argoName(rule) == name then ordered[#ordered + 1] = rule end
    end
  end
  for _, rule in ipairs(s.http) do
    if not argoContains(managed, argoName(rule)) then ordered[#ordered + 1] = rule end
  end
  s.http = ordered
end

local function argoSetWeight(argo, s)
  local vs = argo.virtualService
  local weight = argo.weight
  local modified = false
  local function patch(rule)
    local before = json.encode(rule.route)
    argoSetRouteWeights(argo, rule, weight)
    if json.encode(rule.route) ~= before then modified = true end
  end
  if type(s.http) == "table" then
    local names = vs.routes or {}
    for _, i in ipairs(argoHttpIndexes(names, s.http)) do argoValidateDestinations(argo, argoRoutes(s.http[i])) end
    if #names == 0 and argoUnmanagedCount(argo, s.http) > 1 then
      argoFail("spec.http[] should be set in VirtualService and it must have exactly one route when omitting "
        .. "spec.strategy.canary.trafficRouting.istio.virtualService.routes")
    end
  end
  for _, protocol in ipairs({"tls", "tcp"}) do
    if type(s[protocol]) == "table" then
      local selectors = (protocol == "tls" and vs.tlsRoutes or vs.tcpRoutes) or {}
      for _, i in ipairs(argoL4Indexes(protocol, selectors, s[protocol])) do
        if s[protocol][i] == nil then argoFail("spec." .. protocol .. " has no route " .. i - 1) end
        argoValidateDestinations(argo, argoRoutes(s[protocol][i]))
      end
      if #selectors == 0 and #s[protocol] > 1 then
        argoFail("spec." .. protocol .. "[] should be set in VirtualService and it must have exactly one route "
          .. "when omitting spec.strategy.canary.trafficRouting.istio.virtualService." .. protocol .. "Routes")
      end
    end
  end
  if type(s.http) == "table" then
    local names = {}
    for _, name in ipairs(vs.routes or {}) do names[#names + 1] = name end
    if argo.managedRoutes ~= nil then  -- managed mirror routes follow the weights too
      for _, rule in ipairs(s.http) do
        if rule.mirror ~= nil and argoContains(argo.managedRoutes, argoName(rule)) then
          names[#names + 1] = argoName(rule)
        end
      end
    end
    local ok, indexes = pcall(argoHttpIndexes, names, s.http)
    for _, i in ipairs(ok and indexes or {}) do patch(s.http[i]) end
  end
  for _, protocol in ipairs({"tls", "tcp"}) do
    if type(s[protocol]) == "table" then
      local selectors = (protocol == "tls" and vs.tlsRoutes or vs.tcpRoutes) or {}
      for _, i in ipairs(argoL4Indexes(protocol, selectors, s[protocol])) do patch(s[protocol][i]) end
    end
  end
  if modified then argoOrderRoutes(argo, s) end
end

local function argoRemoveRoute(s, name)
  if type(s.http) ~= "table" then argoFail("spec.http not found") end
  local kept = {}
  for _, rule in ipairs(s.http) do
    if argoName(rule) ~= name then kept[#kept + 1] = rule end
  end
  s.http = kept
end

-- The destinations of the route setWeight patches, or nil (Argo's getVirtualServiceSetWeightRoute).
local function argoWeightRoute(argo, s)
  local ok, indexes = pcall(argoHttpIndexes, argo.virtualService.routes or {}, s.http)
  if not ok then return nil, indexes end
  if #indexes == 0 then return nil end
  return argoRoutes(s.http[indexes[1]])
end

local function argoPort(entries)
  local first = entries and entries[1]
  local port = first and type(first.destination) == "table" and first.destination.port
  if type(port) == "table" and tonumber(port.number) and tonumber(port.number) > 0 then
    return {number = tonumber(port.number)}
  end
  return nil
end

local function argoCanaryDestination(argo, port)
  local destination = {host = argo.canaryHost}
  if port then destination.port = port end
  local subset = argo.destinationRule and argo.destinationRule.canarySubsetName or ""
  if subset ~= "" then destination.subset = subset end
  return destination
end

local function argoStringMatch(value)
  local result = {}
  for _, key in ipairs({"exact", "prefix", "regex"}) do
    if type(value) == "table" and value[key] ~= nil and value[key] ~= "" then result[key] = value[key] end
  end
  return result
end

local function argoSetHeaderRoute(argo, s, headerRoute)
  argoRemoveRoute(s, headerRoute.name or "")
  if headerRoute.match == nil then return end
  local matches = {}
  for _, m in ipairs(headerRoute.match) do
    if type(m.headerValue) ~= "table" then argoFail("setHeaderRoute " .. (headerRoute.name or "") .. ": headerValue is required") end
    matches[#matches + 1] = {headers = {[m.headerName or ""] = argoStringMatch(m.headerValue)}}
  end
  local entries = argoWeightRoute(argo, s)
  local destination = argoCanaryDestination(argo, argoPort(entries))
  table.insert(s.http, {name = headerRoute.name, match = matches, route = {{destination = destination, weight = 100}}})
end

-- A copy of a route destination with only the fields Argo's typed copy keeps.
local function argoTypedEntry(entry)
  local destination, copy = type(entry.destination) == "table" and entry.destination or {}, {}
  local typed = {}
  if type(destination.host) == "string" and destination.host ~= "" then typed.host = destination.host end
  if argoSubset(destination) ~= "" then typed.subset = destination.subset end
  if type(destination.port) == "table" then
    typed.port = {}
    if (tonumber(destination.port.number) or 0) ~= 0 then typed.port.number = tonumber(destination.port.number) end
  end
  copy.destination = typed
  if (tonumber(entry.weight) or 0) ~= 0 then copy.weight = tonumber(entry.weight) end
  return copy
end

local function argoSetMirrorRoute(argo, s, mirrorRoute)
  argoRemoveRoute(s, mirrorRoute.name or "")
  if mirrorRoute.match == nil then return end
  local entries, err = argoWeightRoute(argo, s)
  if err then argoFail(err) end
  if entries == nil or #entries == 0 then
    argoFail("setMirrorRoute " .. (mirrorRoute.name or "") .. ": no route for setWeight to copy the weights from")
  end
  local matches = {}
  for _, m in ipairs(mirrorRoute.match) do
    local match = {}
    if m.method ~= nil then match.method = argoStringMatch(m.method) end
    if m.path ~= nil then match.uri = argoStringMatch(m.path) end
    if type(m.headers) == "table" and next(m.headers) ~= nil then
      match.headers = {}
      for name, value in pairs(m.headers) do match.headers[name] = argoStringMatch(value) end
    end
    matches[#matches + 1] = match
  end
  local route = {}
  for i, entry in ipairs(entries) do route[i] = argoTypedEntry(entry) end
  local mirror = argoCanaryDestination(argo, nil)
  local first = entries[1].destination
  if type(first) == "table" and type(first.port) == "table" then
    mirror.port = {}
    if (tonumber(first.port.number) or 0) ~= 0 then mirror.port.number = tonumber(first.port.number) end
  end
  local percentage = mirrorRoute.percentage
  if percentage == nil then percentage = 100 end
  table.insert(s.http, 1, {name = mirrorRoute.name, match = matches, route = route, mirror = mirror,
                           mirrorPercentage = {value = percentage}})
end

local function argoRender(argo, data)
  local s = data.spec
  if argo.setHeaderRoute then
    argoSetHeaderRoute(argo, s, argo.setHeaderRoute)
    argoOrderRoutes(argo, s)
  end
  if argo.setMirrorRoute then
    argoSetMirrorRoute(argo, s, argo.setMirrorRoute)
    argoOrderRoutes(argo, s)
  end
  argoSetWeight(argo, s)
  return {spec = s, labels = data.labels, annotations = data.annotations}
end

return argoRender(obj.argo, obj.data) end
-- ================================== end of the Argo Rollouts block ===================================

local spec = obj.data.spec
local stable = obj.stableService
local canary = obj.canaryService
local canaryWeight = obj.canaryWeight
local stableWeight = obj.stableWeight
local modifier = obj.requestHeaderModifier
local subsetLevel = (canary == stable)
local CANARY_SUBSET = "canary"
local COPIED_RULE_FIELDS = {"rewrite", "timeout", "retries", "corsPolicy", "fault", "mirror", "mirrors",
                            "mirrorPercentage", "mirrorPercent"}

local function deepcopy(value)
  if type(value) ~= "table" then return value end
  local copy = {}
  for k, v in pairs(value) do copy[k] = deepcopy(v) end
  return copy
end

-- Istio's host resolution: "reviews" (short, in the VirtualService's namespace, which is the Rollout's and its
-- Service's) and "reviews.<namespace>.svc.cluster.local" name service reviews. Istio takes every other host with a
-- dot literally, so "reviews.bookinfo" and "reviews.bookinfo.svc" name no Service and are not the stable service.
-- The full form's namespace must be the object's (obj.namespace, which graylane passes; Kruise's obj carries
-- none, and then it is not compared): "reviews.other.svc.cluster.local" is another namespace's Service.
local objectNamespace = type(obj.namespace) == "string" and obj.namespace ~= "" and obj.namespace or nil
local sameServiceCache = {}
local function sameServiceUncached(host, service)
  if host == service then return true end
  if host:sub(1, #service + 1) ~= service .. "." then return false end
  local namespace = host:sub(#service + 2):match("^([^.]+)%.svc%.cluster%.local$")
  return namespace ~= nil and (objectNamespace == nil or namespace == objectNamespace)
end

-- "name.ns" or "name.ns.svc" of the service: the full name Istio needs, else nil.
local function unexpandedForm(host, service)
  if type(host) ~= "string" or host:sub(1, #service + 1) ~= service .. "." then return nil end
  local namespace = host:sub(#service + 2):match("^([^.]+)$") or host:sub(#service + 2):match("^([^.]+)%.svc$")
  return namespace and (service .. "." .. namespace .. ".svc.cluster.local") or nil
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

local function splitRule(rule, protocol)
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
  if protocol == "http" then  -- tcp and tls destinations have no headers
    local headers = applyModifier(deepcopy(template.headers))
    if headers then entry.headers = headers end
  end
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
      local name = string.lower(header.name)
      if result.headers[name] ~= nil then
        -- header names are case-insensitive: X-Lane and x-lane are one header, and one condition per header fits
        error("a match tests header " .. name .. " twice (header names are case-insensitive)")
      end
      result.headers[name] = stringMatch(header.type, header.value)
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

-- ------------------------------------------------------------------------------------------ lanes
-- A lane rule must catch only requests that would otherwise reach the stable service. So lane rules
-- are inserted directly before each rule that routes to it, each one that rule's own match ANDed
-- with a lane match: a request the lane rule catches is one that rule would have caught.

local function startsWith(text, prefix)
  return type(text) == "string" and type(prefix) == "string" and text:sub(1, #prefix) == prefix
end

-- (kind, value) of an Istio StringMatch: "any" for {} (and regex "*", Istio's presence match),
-- nil for something else (several keys, unknown type).
local function matchKind(condition, presenceRegex)
  if type(condition) ~= "table" or next(condition) == nil then return "any" end
  local kind, value = next(condition)
  if next(condition, kind) ~= nil or type(value) ~= "string" then return nil end
  if kind == "regex" and presenceRegex and value == "*" then return "any" end
  if kind == "exact" or kind == "prefix" or kind == "regex" then return kind, value end
  return nil
end

local function describeCondition(condition)
  local kind, value = matchKind(condition, true)
  if kind == "any" then return "present" end
  if kind == nil then return json.encode(condition) end
  return kind .. " '" .. value .. "'"
end

-- The requests both StringMatches accept, as one StringMatch: (match) or (nil, "contradiction") when
-- no value satisfies both, or (nil, "unsupported") when graylane cannot express or decide it.
local function intersect(a, b, presenceRegex)
  local kindA, valueA = matchKind(a, presenceRegex)
  local kindB, valueB = matchKind(b, presenceRegex)
  if kindA == nil or kindB == nil then return nil, "unsupported" end
  if kindA == "any" then return deepcopy(b) end
  if kindB == "any" then return deepcopy(a) end
  if kindA == "regex" or kindB == "regex" then
    if kindA == kindB and valueA == valueB then return deepcopy(a) end
    return nil, "unsupported"
  end
  if kindA == "exact" and kindB == "exact" then
    if valueA == valueB then return deepcopy(a) end
    return nil, "contradiction"
  end
  if kindA == "prefix" and kindB == "prefix" then
    if startsWith(valueA, valueB) then return deepcopy(a) end
    if startsWith(valueB, valueA) then return deepcopy(b) end
    return nil, "contradiction"
  end
  local exact, prefix = valueA, valueB
  if kindA == "prefix" then exact, prefix = valueB, valueA end
  if startsWith(exact, prefix) then return {exact = exact} end
  return nil, "contradiction"
end

-- Whether every value `condition` accepts is one `excluded` (a withoutHeaders entry) rejects.
local function excludedBy(condition, excluded)
  local kind, value = matchKind(condition, true)
  local excludedKind, excludedValue = matchKind(excluded, true)
  if excludedKind == "any" then return true end
  if kind == "exact" and excludedKind == "exact" then return value == excludedValue end
  if (kind == "exact" or kind == "prefix") and excludedKind == "prefix" then
    return startsWith(value, excludedValue)
  end
  return false
end

local function findKey(map, name, foldCase)
  if type(map) ~= "table" then return nil end
  for key in pairs(map) do
    if key == name or (foldCase and type(key) == "string" and key:lower() == name:lower()) then return key end
  end
  return nil
end

-- The lane's uri ANDed with a rule match that has ignoreUriCase (which applies to the whole match):
-- only an exact lane path can be expressed (as a case-sensitive exact match).
local function intersectIgnoringCase(ruleUri, laneUri)
  local laneKind, laneValue = matchKind(laneUri)
  if ruleUri == nil then return deepcopy(laneUri) end
  local ruleKind, ruleValue = matchKind(ruleUri)
  if laneKind ~= "exact" or (ruleKind ~= "exact" and ruleKind ~= "prefix" and ruleKind ~= "any") then
    return nil, "unsupported"
  end
  if ruleKind == "any" or (ruleKind == "exact" and laneValue:lower() == ruleValue:lower())
      or (ruleKind == "prefix" and startsWith(laneValue:lower(), ruleValue:lower())) then
    return {exact = laneValue}
  end
  return nil, "contradiction"
end

-- The keys of a map in sorted order (so the same inputs give the same message every run).
local function sortedKeys(map)
  local keys = {}
  for key in pairs(map or {}) do keys[#keys + 1] = key end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

-- A rule's match ANDed with a lane match: (match) or (nil, reason) with reason "contradiction: ..."
-- (no request satisfies both) or "unsupported: ..." (not expressible as one Istio match). A contradiction
-- anywhere wins over an inexpressible field (no request could match, so there is nothing to express);
-- engine/checks/analyzers/lane_matches.py mirrors this function so `graylane validate` foresees the refusal.
local function combineMatch(ruleMatch, laneMatch)
  local combined = deepcopy(ruleMatch)
  local unsupported = nil
  if laneMatch.uri then
    local uri, problem
    if combined.ignoreUriCase then
      uri, problem = intersectIgnoringCase(combined.uri, laneMatch.uri)
      combined.ignoreUriCase = nil
    else
      uri, problem = intersect(combined.uri, laneMatch.uri, false)
    end
    if uri == nil then
      local reason = problem .. ": the rule's uri " .. describeCondition(combined.uri or {}) ..
        (ruleMatch.ignoreUriCase and " (ignoreUriCase)" or "") .. " and the lane's uri " .. describeCondition(laneMatch.uri)
      if problem == "contradiction" then return nil, reason end
      unsupported = reason
    else
      combined.uri = uri
    end
  end
  for _, field in ipairs({"headers", "queryParams"}) do
    local foldCase = field == "headers"
    for _, name in ipairs(sortedKeys(laneMatch[field])) do
      local condition = laneMatch[field][name]
      combined[field] = combined[field] or {}
      local key = findKey(combined[field], name, foldCase)
      local value, problem = condition, nil
      if key ~= nil then
        value, problem = intersect(combined[field][key], condition, true)
      end
      if value == nil then
        local what = (foldCase and "header " or "query parameter ") .. name .. " "
        local reason = problem .. ": the rule's " .. what .. describeCondition(combined[field][key]) ..
          " and the lane's " .. what .. describeCondition(condition)
        if problem == "contradiction" then return nil, reason end
        unsupported = unsupported or reason
      else
        if key ~= nil then combined[field][key] = nil end
        combined[field][name] = deepcopy(value)
        local excluded = foldCase and findKey(combined.withoutHeaders, name, true)
        if excluded and excludedBy(value, combined.withoutHeaders[excluded]) then
          return nil, "contradiction: the rule's withoutHeaders " .. name .. " " ..
            describeCondition(combined.withoutHeaders[excluded]) .. " and the lane's header " .. name .. " " ..
            describeCondition(value)
        end
      end
    end
  end
  if unsupported then return nil, unsupported end
  return combined
end

-- The lane rule's route: the rule's route with the stable service (and an existing canary destination)
-- replaced by one canary destination; destinations of other services keep their share.
local function laneRoute(rule)
  local explicit = false
  for _, entry in ipairs(rule.route) do
    if entry.weight ~= nil then explicit = true end
  end
  local entries, weights, canaryIndex = {}, {}, nil
  for _, entry in ipairs(rule.route) do
    local weight = explicit and (tonumber(entry.weight) or 0) or 1
    if isStable(entry.destination) or isCanary(entry.destination) then
      if canaryIndex == nil then
        local destination = {host = canaryHostFor(entry.destination.host)}
        if subsetLevel then destination.subset = CANARY_SUBSET end
        if entry.destination.port then destination.port = deepcopy(entry.destination.port) end
        entries[#entries + 1] = {destination = destination, headers = deepcopy(entry.headers)}
        canaryIndex, weights[#entries] = #entries, 0
      end
      weights[canaryIndex] = weights[canaryIndex] + weight
    else
      entries[#entries + 1] = deepcopy(entry)
      weights[#entries] = weight
    end
  end
  if #entries == 1 then
    entries[1].weight = nil
  else
    local scaled = largestRemainder(weights, 100)
    for k, entry in ipairs(entries) do entry.weight = scaled[k] end
  end
  return entries, entries[canaryIndex]
end

local function ruleName(index, rule)
  if type(rule.name) == "string" and rule.name ~= "" then return "http[" .. (index - 1) .. "] (" .. rule.name .. ")" end
  return "http[" .. (index - 1) .. "]"
end

-- The lane rules to insert before `rule` (the index-th http rule): one per (rule match, lane match).
local function laneRules(index, rule, laneMatches)
  local route, canaryEntry = laneRoute(rule)
  local template = {}
  for _, field in ipairs(COPIED_RULE_FIELDS) do
    if rule[field] ~= nil then template[field] = deepcopy(rule[field]) end
  end
  if #route == 1 then
    template.headers = applyModifier(deepcopy(rule.headers))
  else
    template.headers = deepcopy(rule.headers)
    canaryEntry.headers = applyModifier(canaryEntry.headers)
  end
  local rules = {}
  local ruleMatches = rule.match
  if ruleMatches == nil or #ruleMatches == 0 then ruleMatches = {{}} end
  for m, ruleMatch in ipairs(ruleMatches) do
    for l, laneMatch in ipairs(laneMatches) do
      local combined, problem = combineMatch(ruleMatch, laneMatch)
      local where = ruleName(index, rule) .. (ruleMatches == rule.match and (" match[" .. (m - 1) .. "]") or "") ..
        " with lane match[" .. (l - 1) .. "]"
      if combined == nil and problem:sub(1, 11) == "unsupported" then
        error(where .. ": cannot combine them into one Istio match (" .. problem:sub(14) ..
          "); graylane can intersect exact and prefix matches, and a regex only with an identical one")
      end
      if combined == nil then
        print("no lane rule for " .. where .. ": no request can satisfy both (" .. problem:sub(16) .. ")")
      else
        local laneRule = deepcopy(template)
        laneRule.match = {combined}
        laneRule.route = deepcopy(route)
        rules[#rules + 1] = laneRule
      end
    end
  end
  return rules
end

local MATCH_LABELS = {name = true, statPrefix = true, ignoreUriCase = true}

-- Whether a rule takes every request (no match, or a match without conditions): Istio never
-- looks at the rules after it, so they get no lane rules.
local function catchesAll(rule)
  if type(rule) ~= "table" or rule.match == nil or #rule.match == 0 then return true end
  for _, match in ipairs(rule.match) do
    local conditions = false
    for key in pairs(match) do
      if not MATCH_LABELS[key] then conditions = true end
    end
    if not conditions then return true end
  end
  return false
end

-- Refuses a VirtualService none of whose routes (of ``protocols``) sends traffic to the stable service: the
-- release would change nothing (validate's GL0302), so graylane says so where Kruise goes on silently.
local function unrouted(what, protocols)
  local hint = ""
  for _, protocol in ipairs(protocols) do
    for _, rule in ipairs(type(spec[protocol]) == "table" and spec[protocol] or {}) do
      for _, route in ipairs(type(rule) == "table" and type(rule.route) == "table" and rule.route or {}) do
        local host = type(route) == "table" and type(route.destination) == "table" and route.destination.host
        local full = hint == "" and unexpandedForm(host, stable)
        if full then
          hint = " (Istio takes host " .. host .. " literally, so it names no Service: write " .. full ..
            ", or the short name " .. stable .. " in the Service's namespace)"
        end
      end
    end
  end
  error("no " .. (what ~= "" and what .. " " or "") .. "route of this VirtualService sends traffic to service " .. stable .. hint)
end

local function routesStableAnywhere()
  for _, protocol in ipairs({"http", "tcp", "tls"}) do
    for _, rule in ipairs(type(spec[protocol]) == "table" and spec[protocol] or {}) do
      if routesToStable(rule) then return true end
    end
  end
  return false
end

local function insertLaneRules(matches)
  if spec.http == nil then error("matches need http routes, but the VirtualService has no spec.http") end
  local laneMatches = {}
  for i, match in ipairs(matches) do laneMatches[i] = istioMatch(match) end
  local result, scoped, inserted, catchAll = {}, 0, 0, nil
  for index, rule in ipairs(spec.http) do
    if routesToStable(rule) and catchAll ~= nil and scoped == 0 then
      error("the http routes to service " .. stable .. " come after " .. ruleName(catchAll, spec.http[catchAll]) ..
        ", which takes every request first, so no lane rule can catch a request meant for " .. stable)
    end
    if routesToStable(rule) and catchAll == nil then
      scoped = scoped + 1
      for _, laneRule in ipairs(laneRules(index, rule, laneMatches)) do
        result[#result + 1] = laneRule
        inserted = inserted + 1
      end
    end
    result[#result + 1] = rule
    if catchAll == nil and catchesAll(rule) then catchAll = index end
  end
  if scoped == 0 then unrouted("http", {"http"}) end
  if inserted == 0 then
    print("no lane rule inserted: every lane match contradicts the matches of the rules that route to " .. stable)
  end
  spec.http = result
end

local hasMatches = obj.matches ~= nil and #obj.matches > 0

if not routesStableAnywhere() then unrouted("", {"http", "tcp", "tls"}) end

if canaryWeight ~= -1 and not hasMatches then
  for _, protocol in ipairs({"http", "tcp", "tls"}) do
    if type(spec[protocol]) == "table" then
      for _, rule in ipairs(spec[protocol]) do splitRule(rule, protocol) end
    end
  end
end

if hasMatches then
  insertLaneRules(obj.matches)
end

return {spec = spec, labels = obj.data.labels, annotations = obj.data.annotations}
