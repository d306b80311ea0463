"""graylane's value classes without dataclasses (engine/records.py, start-up): they compare, print, copy and
refuse changes as the dataclasses they replaced did."""
from __future__ import annotations

import copy
import pickle

import pytest

from engine.checks.analyzers.common import Finding
from engine.checks.analyzers.requests import Probe
from engine.documents import Document
from engine.lua.sandbox import RunResult, Script
from engine.routing.strategy import TrafficStrategy


def test_a_record_is_equal_by_value_and_unhashable_as_a_mutable_dataclass():
    a, b = Document({"kind": "Service"}, "a.yaml", 1), Document({"kind": "Service"}, "a.yaml", 1)
    assert a == b and a != Document({"kind": "Service"}, "a.yaml", 2)
    assert a != ({"kind": "Service"}, "a.yaml", 1)  # not a tuple
    assert repr(a) == "Document(body={'kind': 'Service'}, source='a.yaml', index=1)"
    with pytest.raises(TypeError):
        hash(a)
    a.index = 3
    assert a.index == 3
    with pytest.raises(AttributeError):
        a.colour = "red"  # type: ignore[attr-defined]  # fields only


def test_defaults_are_fresh_for_each_record():
    first, second = TrafficStrategy(), TrafficStrategy()
    first.matches.append({"headers": []})
    assert second.matches == [] and TrafficStrategy(weight=5).weight == 5


def test_a_frozen_record_refuses_changes_hashes_and_survives_copy_and_pickle():
    finding = Finding("GL0001", "error", "bad", "a.yaml", 2, "spec.hosts")
    with pytest.raises(AttributeError):
        finding.code = "GL0002"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del finding.code
    assert {finding, Finding("GL0001", "error", "bad", "a.yaml", 2, "spec.hosts")} == {finding}
    for twin in (copy.copy(finding), copy.deepcopy(finding), pickle.loads(pickle.dumps(finding))):
        assert twin == finding and twin is not finding
    assert finding.as_dict() == {"code": "GL0001", "severity": "error", "message": "bad", "source": "a.yaml",
                                 "document": 2, "path": "spec.hosts", "object": ""}


def test_replace_changes_only_the_given_fields():
    probe = Probe(authority="reviews", headers=(("x-lane", "gray"),))
    moved = probe.replace(path="/api")
    assert (moved.path, moved.authority, moved.headers) == ("/api", "reviews", (("x-lane", "gray"),))
    assert probe.path != "/api" and moved != probe


def test_the_lua_hosts_script_is_immutable_and_compared_by_value():
    script = Script("networking.istio.io/VirtualService", "return obj", "builtin:vs")
    assert script == Script("networking.istio.io/VirtualService", "return obj", "builtin:vs")
    assert hash(script) == hash(Script("networking.istio.io/VirtualService", "return obj", "builtin:vs"))
    assert script != Script("networking.istio.io/VirtualService", "return obj", "other.lua")
    with pytest.raises(AttributeError):
        script.source = "error()"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(script)) == script == copy.deepcopy(script)
    assert RunResult({"a": 1}).printed == [] and "printed=[]" in repr(RunResult(None))
