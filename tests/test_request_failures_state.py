"""The GL04xx checks work out what they read off the inputs once per state (render checks every object it made
against one state); a different state, or the same list changed, is read afresh."""
from __future__ import annotations

from engine.checks.analyzers.rendered import request_failures
from engine.documents import Document


def vs(route_subsets: list[str]) -> Document:
    return Document({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                     "metadata": {"name": "vs-mocka", "namespace": "shop"},
                     "spec": {"hosts": ["mocka"], "http": [{"route": [
                         {"destination": {"host": "mocka", "subset": subset}} for subset in route_subsets]}]}},
                    "vs.yaml", 1)


def destination_rule(subsets: list[str]) -> Document:
    return Document({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                     "metadata": {"name": "dr-mocka", "namespace": "shop"},
                     "spec": {"host": "mocka", "subsets": [{"name": s, "labels": {"v": s}} for s in subsets]}},
                    "dr.yaml", 1)


def codes(original: Document, rendered: Document, state: list[Document]) -> list[str]:
    return [f.code for f in request_failures(original, rendered, state)]


def test_each_state_is_read_as_it_is():
    original, rendered = vs(["base"]), vs(["base", "canary"])
    with_canary = [rendered, destination_rule(["base", "canary"])]
    without_canary = [rendered, destination_rule(["base"])]
    assert codes(original, rendered, with_canary) == []
    assert codes(original, rendered, without_canary) == ["GL0402"]
    assert codes(original, rendered, with_canary) == []
    with_canary[1] = destination_rule(["base"])  # the same list, changed
    assert codes(original, rendered, with_canary) == ["GL0402"]
