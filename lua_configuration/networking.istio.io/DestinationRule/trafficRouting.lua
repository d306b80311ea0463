-- graylane built-in traffic routing for Istio DestinationRule (Kruise custom-network-provider contract).
--
-- Adds the subset "canary" that selects the gray pods, or updates it when it already exists, so that
-- rendering twice or over a hand-written subset never leaves two subsets with one name.
-- The gray pods carry `istio.service.tag: gray` by default; a DestinationRule can choose other labels
-- with the annotation graylane.io/canary-subset-labels: '{"version": "canary"}'.

-- ======================================================================================================
-- Argo Rollouts (dispatched on obj.argo): Argo's UpdateHash. The canary and stable subsets select their
-- ReplicaSet's pods by `rollouts-pod-template-hash` (an empty hash removes the label), the object is
-- marked managed by the Rollout, and, as Argo does, subsets that are neither are not kept.
-- ======================================================================================================
local ARGO_HASH_LABEL = "rollouts-pod-template-hash"
local ARGO_MANAGED_BY = "argo-rollouts.argoproj.io/managed-by-rollouts"

local function argoSetHash(subset, hash)
  if type(subset.labels) ~= "table" then subset.labels = {} end
  if hash ~= nil and hash ~= "" then subset.labels[ARGO_HASH_LABEL] = hash else subset.labels[ARGO_HASH_LABEL] = nil end
end

local function argoUpdateHash(argo, data)
  local s = data.spec
  local annotations = data.annotations or {}
  annotations[ARGO_MANAGED_BY] = argo.rollout
  local kept = {}
  for _, subset in ipairs(type(s.subsets) == "table" and s.subsets or {}) do
    if subset.name == argo.destinationRule.canarySubsetName then
      argoSetHash(subset, argo.canaryHash)
      kept[#kept + 1] = subset
    elseif subset.name == argo.destinationRule.stableSubsetName then
      argoSetHash(subset, argo.stableHash)
      kept[#kept + 1] = subset
    end
  end
  s.subsets = kept
  return {spec = s, labels = data.labels, annotations = annotations}
end

if obj.argo then return argoUpdateHash(obj.argo, obj.data) end
-- ================================== end of the Argo Rollouts block ===================================

local CANARY_SUBSET = "canary"
local LABELS_ANNOTATION = "graylane.io/canary-subset-labels"

local spec = obj.data.spec
local annotations = obj.data.annotations or {}

local labels = {["istio.service.tag"] = "gray"}
local custom = annotations[LABELS_ANNOTATION]
if custom ~= nil then
  labels = json.decode(custom)
  if type(labels) ~= "table" or next(labels) == nil then
    error("annotation " .. LABELS_ANNOTATION .. " must be a non-empty JSON map of labels")
  end
  for key, value in pairs(labels) do
    if type(key) ~= "string" or type(value) ~= "string" then
      error("annotation " .. LABELS_ANNOTATION .. " must map label names to string values")
    end
  end
end

if type(spec.subsets) ~= "table" then spec.subsets = {} end

local existing
for _, subset in ipairs(spec.subsets) do
  if subset.name == CANARY_SUBSET then existing = subset break end
end

if existing then
  existing.labels = labels
else
  table.insert(spec.subsets, {name = CANARY_SUBSET, labels = labels})
end

return {spec = spec, labels = obj.data.labels, annotations = obj.data.annotations}
