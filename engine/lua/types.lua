---@meta graylane
-- Lua Language Server definitions for OpenKruise Rollouts traffic-routing scripts run by graylane
-- (printed by `graylane script types`). Put this file in your workspace (or in Lua.workspace.library) and
-- the editor completes and checks `obj`'s fields and the table a script returns.

---A Kruise match type: Exact, RegularExpression, and for a path also PathPrefix.
---@alias graylane.MatchType "Exact"|"RegularExpression"|"PathPrefix"

---@class graylane.PathMatch
---@field type graylane.MatchType
---@field value string

---@class graylane.NamedMatch
---@field type graylane.MatchType
---@field name string header or query parameter name
---@field value string

---One match: every condition must hold; separate matches are alternatives.
---@class graylane.Match
---@field path? graylane.PathMatch
---@field headers? graylane.NamedMatch[]
---@field queryParams? graylane.NamedMatch[]

---@class graylane.Header
---@field name string
---@field value string

---@class graylane.RequestHeaderModifier
---@field set? graylane.Header[]
---@field add? graylane.Header[]
---@field remove? string[]

---The network object's original state (empty maps are nil, as Kruise passes them).
---@class graylane.ObjectData
---@field spec table<string, any>
---@field labels? table<string, string>
---@field annotations? table<string, string>

---The global `obj` of a custom network script (`<group>/<Kind>/trafficRouting.lua`).
---@class graylane.ScriptInput
---@field data graylane.ObjectData
---@field canaryWeight integer 0-100, or -1 when the step sets no weight
---@field stableWeight integer 100 - canaryWeight (101 when canaryWeight is -1)
---@field matches? graylane.Match[] requests that go to the canary
---@field canaryService string
---@field stableService string
---@field namespace? string the object's namespace (graylane only; Kruise's obj has none)
---@field requestHeaderModifier? graylane.RequestHeaderModifier

---What a custom network script returns.
---@class graylane.ScriptResult
---@field spec table<string, any>
---@field labels? table<string, string>
---@field annotations? table<string, string>

---The `obj` of an ingress-annotation script (`trafficrouting_ingress/<classType>.lua`), which returns the
---annotations map. Declare it in such a script with: `local obj = obj ---@type graylane.IngressInput`
---@class graylane.IngressInput
---@field annotations table<string, string>
---@field weight string the canary weight as a string, "-1" when unset
---@field matches? graylane.Match[]
---@field canaryService string
---@field stableService string
---@field requestHeaderModifier? graylane.RequestHeaderModifier

---@type graylane.ScriptInput
obj = nil

---The json module scripts get (as in Kruise's gopher-lua host).
---@class graylane.json
---@field null any the JSON null (a value that is encoded as null)
json = {}

---@param value any
---@return string
function json.encode(value) end

---@param text string
---@return any
function json.decode(text) end
