"""engine.routing.ownership: what graylane owns on a routed object, run against the built-in scripts' real
output (issue #17, part 1)."""
from __future__ import annotations

import copy
import json

import pytest

from engine.lua.scripts import ScriptLibrary, builtin_layer
from engine.routing.ownership import fold_original
from engine.routing.render import Engine
from engine.routing.script_input import ORIGINAL_ANNOTATION, OriginalState, apply_result, encode_original
from engine.routing.strategy import TrafficStrategy

VS = {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
      "metadata": {"name": "vs-mocka", "namespace": "shop", "labels": {"team": "a"}},
      "spec": {"hosts": ["*"], "gateways": ["gw"],
               "http": [{"name": "main", "route": [{"destination": {"host": "mocka", "subset": "version-base"}}]}]}}
DR = {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
      "metadata": {"name": "dr-mocka", "namespace": "shop"},
      "spec": {"host": "mocka", "subsets": [{"name": "version-base", "labels": {"version": "base"}}]}}
MATCH = TrafficStrategy(matches=[{"headers": [{"type": "Exact", "name": "my-request-id", "value": "canary"}]}])
WEIGHT = TrafficStrategy(weight=20)
ENGINE = Engine(ScriptLibrary([builtin_layer()]))


def rendered(body: dict, strategy: TrafficStrategy, stable: str = "mocka", canary: str = "mocka") -> dict:
    """What graylane (or Kruise) leaves on the object: the script's output plus the stored original."""
    meta = body["metadata"]
    original = OriginalState(copy.deepcopy(body["spec"]), dict(meta.get("labels") or {}),
                             dict(meta.get("annotations") or {}))
    key = f"{body['apiVersion'].rpartition('/')[0]}/{body['kind']}"
    result = ENGINE.run_network_script(key, copy.deepcopy(original), strategy, stable, canary)
    return apply_result(body, result.spec, result.labels, result.annotations, encode_original(original))


def stored(body: dict) -> OriginalState:
    data = json.loads(body["metadata"]["annotations"][ORIGINAL_ANNOTATION])
    return OriginalState(data["spec"], data.get("labels") or {}, data.get("annotations") or {})


@pytest.mark.parametrize("body", [VS, DR])
@pytest.mark.parametrize("strategy", [MATCH, WEIGHT], ids=["match", "weight"])
def test_folding_an_untouched_render_gives_the_original_back(body, strategy):
    live = rendered(body, strategy)
    assert live["spec"] != body["spec"]
    folded = fold_original(live, stored(live), "mocka", "mocka")
    assert folded.spec == body["spec"]
    assert folded.labels == (body["metadata"].get("labels") or {})


@pytest.mark.parametrize("strategy", [MATCH, WEIGHT], ids=["match", "weight"])
def test_own_additions_are_recognised_without_the_annotation(strategy):
    live = rendered(VS, strategy)
    del live["metadata"]["annotations"][ORIGINAL_ANNOTATION]
    assert fold_original(live, None, "mocka", "mocka").spec == VS["spec"]
    live = rendered(DR, strategy)
    del live["metadata"]["annotations"][ORIGINAL_ANNOTATION]
    assert fold_original(live, None, "mocka", "mocka").spec == DR["spec"]


def test_other_writers_edits_are_folded_into_the_original():
    live = rendered(VS, MATCH)
    live["metadata"]["labels"]["owner"] = "gitops"
    live["spec"]["http"].append({"name": "admin", "match": [{"uri": {"prefix": "/admin"}}],
                                 "route": [{"destination": {"host": "admin"}}]})
    folded = fold_original(live, stored(live), "mocka", "mocka")
    assert folded.labels == {"team": "a", "owner": "gitops"}
    assert [rule["name"] for rule in folded.spec["http"]] == ["main", "admin"]
    dr = rendered(DR, MATCH)
    dr["spec"]["subsets"].append({"name": "v3", "labels": {"version": "v3"}})
    assert [s["name"] for s in fold_original(dr, stored(dr), "mocka", "mocka").spec["subsets"]] == \
        ["version-base", "v3"]


def test_weights_come_back_from_the_stored_original():
    body = copy.deepcopy(VS)
    body["spec"]["http"][0]["route"] = [{"destination": {"host": "mocka", "subset": "a"}, "weight": 70},
                                        {"destination": {"host": "mocka", "subset": "b"}, "weight": 30}]
    live = rendered(body, WEIGHT)
    assert [r["weight"] for r in live["spec"]["http"][0]["route"]] == [56, 24, 20]
    assert fold_original(live, stored(live), "mocka", "mocka").spec == body["spec"]


def test_a_service_level_canary_is_recognised_by_its_host():
    live = rendered(VS, MATCH, stable="mocka", canary="mocka-canary")
    assert live["spec"]["http"][0]["route"][0]["destination"]["host"] == "mocka-canary"
    assert fold_original(live, None, "mocka", "mocka-canary").spec == VS["spec"]


def test_script_set_labels_go_back_but_other_writers_labels_stay():
    original = OriginalState({"x": 1}, {"team": "a"}, {})
    scripted = OriginalState({"x": 1}, {"team": "a", "gray": "on"}, {})
    live = {"kind": "VirtualService", "metadata": {"labels": {"team": "a", "gray": "on", "owner": "me"}},
            "spec": {"x": 1}}
    assert fold_original(live, original, "s", "s", scripted).labels == {"team": "a", "owner": "me"}


def test_unknown_kinds_keep_the_stored_original():
    original = OriginalState({"a": 1}, {}, {})
    live = {"kind": "Widget", "metadata": {}, "spec": {"a": 2}}
    assert fold_original(live, original, "s", "s") is original


@pytest.mark.parametrize("host,same", [
    ("mocka", True), ("mocka.default.svc.cluster.local", True),   # the forms Istio resolves to Service mocka
    ("mocka.default", False), ("mocka.default.svc", False),      # literal in Istio: no Service
    ("mocka-v2", False), ("mocka.example.com", False), ("*.default.svc.cluster.local", False), (None, False)])
def test_ownership_reads_hosts_as_istio_and_the_built_in_script_do(host, same):
    from engine.routing.ownership import same_service
    assert same_service(host, "mocka") is same


@pytest.mark.parametrize("host,namespace,same", [
    ("mocka.shop.svc.cluster.local", "shop", True), ("mocka.other.svc.cluster.local", "shop", False),
    ("mocka", "shop", True), ("mocka.other.svc.cluster.local", None, True)])  # no namespace known: not compared
def test_the_full_forms_namespace_must_be_the_objects(host, namespace, same):
    from engine.routing.ownership import same_service
    assert same_service(host, "mocka", namespace) is same


def test_another_namespaces_canary_route_is_not_taken_for_graylanes():
    """A rule someone wrote to route to mocka-canary of another namespace is theirs: folding keeps it, where the
    same rule to this namespace's mocka-canary is recognised as graylane's lane rule and dropped."""
    def lane_rule(host: str) -> dict:
        return {"name": "lane", "match": [{"headers": {"my-request-id": {"exact": "canary"}}}],
                "route": [{"destination": {"host": host}}]}
    for host, kept in (("mocka-canary.other.svc.cluster.local", True), ("mocka-canary.shop.svc.cluster.local", False)):
        live = copy.deepcopy(VS)
        live["spec"]["http"].insert(0, lane_rule(host))
        folded = fold_original(live, None, "mocka", "mocka-canary").spec
        assert (folded["http"][0] == lane_rule(host)) is kept, host
        assert folded["http"][-1] == VS["spec"]["http"][0]
