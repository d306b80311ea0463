"""``graylane script new GROUP/KIND``: a commented skeleton of the script contract and a first test case."""
from __future__ import annotations

import re
from typing import Optional

from engine.documents import Document, dump_yaml
from engine.errors import InvalidInputError
from engine.lua.scripts import SCRIPT_FILE

_KEY = re.compile(r"^(?:(?P<group>[a-z0-9]([-a-z0-9.]*[a-z0-9])?)/)?(?P<kind>[A-Z][A-Za-z0-9]*)$")
FIRST_CASE = "first_case.yaml"
_KEPT_METADATA = ("name", "namespace", "labels", "annotations")

SKELETON = """\
-- Traffic routing for {key} (OpenKruise Rollouts' custom network provider contract).
-- graylane (and Kruise) run this file for every {kind} a TrafficRouting or Rollout step references,
-- with a global `obj`:
--
--   obj.data.spec, obj.data.labels, obj.data.annotations
--                        the object's original spec and metadata (nil when empty)
--   obj.canaryWeight     0-100: percent of the traffic to the canary; -1 when the step sets no weight
--   obj.stableWeight     100 - canaryWeight (101 when canaryWeight is -1)
--   obj.matches          nil, or a list of {{path = {{type, value}}, headers = {{{{type, name, value}}}},
--                        queryParams = {{{{type, name, value}}}}}}; types Exact, RegularExpression (path:
--                        also PathPrefix). Requests matching any of them go to the canary.
--   obj.canaryService    the canary Service (== stableService: route to the gray pods of the stable one)
--   obj.stableService    the stable Service
--   obj.requestHeaderModifier
--                        nil, or {{set = {{{{name, value}}}}, add = {{{{name, value}}}}, remove = {{name}}}}
--
-- Return the new {{spec = ..., labels = ..., annotations = ...}} (returning obj.data changes nothing).
-- Libraries: string, table, math and json (json.encode, json.decode, json.null); print() shows with -v.
-- `graylane script input -f ...` prints the obj this script gets; `graylane test DIR` runs testdata/;
-- `graylane script types > graylane-types.lua` lets an editor complete and check obj's fields.

local spec = obj.data.spec

if obj.canaryWeight ~= -1 then
  -- send obj.canaryWeight percent of the traffic to obj.canaryService, the rest to obj.stableService
end

if obj.matches then
  for _, match in ipairs(obj.matches) do
    -- send the requests that `match` describes to obj.canaryService
  end
end

return {{spec = spec, labels = obj.data.labels, annotations = obj.data.annotations}}
"""


def parse_key(text: str) -> tuple[str, str]:
    """``GROUP/KIND`` (or ``KIND`` for the core group) -> (group, kind)."""
    match = _KEY.match(text)
    if not match:
        raise InvalidInputError(f"{text!r} is not GROUP/KIND (for example networking.example.io/Route)")
    return match.group("group") or "", match.group("kind")


def script_path(group: str, kind: str) -> str:
    """Where the script goes below a script directory, as graylane's and Kruise's lookup expect it."""
    return f"{group}/{kind}/{SCRIPT_FILE}" if group else f"{kind}/{SCRIPT_FILE}"


def skeleton(group: str, kind: str) -> str:
    return SKELETON.format(key=f"{group}/{kind}" if group else kind, kind=kind)


def example_object(group: str, kind: str, documents: Optional[list[Document]], source: Optional[str]) -> dict:
    """The network object of the first case: the first GROUP/KIND in ``documents`` (trimmed to what a manifest
    author writes), or a stub to fill in."""
    if documents is None:
        return {"apiVersion": f"{group}/v1" if group else "v1", "kind": kind,
                "metadata": {"name": f"{kind.lower()}-example"}, "spec": {}}
    for document in documents:
        if document.group == group and document.kind == kind:
            body = {key: value for key, value in document.body.items() if key != "status"}
            body["metadata"] = {key: value for key, value in document.metadata.items() if key in _KEPT_METADATA}
            return body
    raise InvalidInputError(f"holds no {kind} of group {group or '(core)'}", source=source)


def first_case(example: dict, service: Optional[str]) -> str:
    """A Rollout case in Kruise's format with a weight step and a header-match step, and no expected: yet."""
    metadata = example.get("metadata") or {}
    name = str(metadata.get("name") or "example")
    service = service or name
    reference = {"apiVersion": example["apiVersion"], "kind": example["kind"], "name": name}
    rollout = {
        "apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout", "metadata": {"name": f"{name}-rollout"},
        "spec": {
            "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": service},
            "strategy": {"canary": {
                "steps": [{"traffic": "20%"},
                          {"matches": [{"headers": [{"type": "Exact", "name": "x-canary", "value": "true"}]}]}],
                "trafficRoutings": [{"service": service, "customNetworkRefs": [reference]}]}}},
    }
    header = (f"# First case for {example['kind']}: step 1 sends 20% of the traffic to {service}-canary,\n"
              f"# step 2 sends requests with x-canary: true there. expected: lists the object after each step;\n"
              f"# `graylane test --update` rewrites it from what the script returns.\n")
    return header + dump_yaml([{"rollout": rollout, "original": example}])
