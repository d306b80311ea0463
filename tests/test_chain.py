"""FullLinkGray specs (engine/fulllink/chain.py) and `graylane chain`."""
from __future__ import annotations

import copy
import json

import pytest
import yaml
from helpers import SAMPLES, run_graylane

from engine.fulllink.chain import generate, parse_spec, specs_of
from engine.documents import Document, parse_documents
from engine.errors import InvalidInputError
from engine.inputs import read_documents
from engine.checks.schemas import schema_for, validator_for

SAMPLE_SPECS = sorted(SAMPLES.glob("*/fulllink.yaml"))


def load(text_or_body) -> Document:
    body = yaml.safe_load(text_or_body) if isinstance(text_or_body, str) else text_or_body
    return Document(body, "spec.yaml", 1)


def docs(text: str) -> list:
    return [d for d in yaml.safe_load_all(text) if d]


BASE = yaml.safe_load((SAMPLES / "fulllink" / "fulllink.yaml").read_text())


def spec_with(**changes) -> dict:
    body = copy.deepcopy(BASE)
    for path, value in changes.items():
        node = body
        keys = path.split("__")
        for key in keys[:-1]:
            node = node[int(key)] if key.isdigit() else node[key]
        last = keys[-1]
        if value is KeyError:
            del node[last]
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value
    return body


# ---------------------------------------------------------------------------------------------- parsing

def test_sample_spec_parses():
    spec = parse_spec(load(BASE))
    assert (spec.name, spec.namespace, spec.lane_header, spec.lane_value) == ("mock-chain", "default",
                                                                              "my-request-id", "canary")
    assert spec.gray_labels == {"istio.service.tag": "gray", "version": "canary"}
    assert spec.subset_labels == {"istio.service.tag": "gray"}
    assert [s.name for s in spec.services] == ["mocka", "mockb"]
    assert spec.target.namespace == "istio-system" and spec.target.selector == {"istio": "ingressgateway"}
    graph = spec.call_graph()
    assert [c.service for c in graph["default/mocka"]] == ["default/mockb"] and graph["default/mockb"] == []


def test_defaults_of_a_minimal_spec():
    spec = parse_spec(load({"apiVersion": "graylane.io/v1alpha1", "kind": "FullLinkGray",
                            "metadata": {"name": "r1"}, "spec": {"lane": {"header": "X-Lane"},
                                                                 "services": ["a", {"name": "b", "release": False}]}}))
    assert spec.lane_header == "x-lane" and spec.lane_value == "canary" and spec.namespace == "default"
    a, b = spec.services
    assert (a.virtual_service, a.destination_rule, a.workload, a.traffic_routing, a.rollout) == \
        ("a", "a", "a", "a-r1", "a-r1")
    assert not b.release and b.workload is None
    assert spec.coloring.default == "base" and spec.coloring.existing == "overwrite" and spec.coloring.salt == "r1"
    assert spec.rollout_api == "rollouts.kruise.io/v1beta1"
    assert spec.target.name == "r1-coloring"


@pytest.mark.parametrize("changes,field,message", [
    ({"apiVersion": "graylane.io/v2"}, "apiVersion", "must be graylane.io/v1alpha1"),
    ({"spec__lane": KeyError}, "spec.lane", "is required"),
    ({"spec__lane__header": "bad header"}, "spec.lane.header", "not a valid HTTP header name"),
    ({"spec__lane__value": "a\nb"}, "spec.lane.value", "not a valid header value"),
    ({"spec__services": []}, "spec.services", "non-empty list"),
    ({"spec__services__1__name": "mocka"}, "spec.services[1].name", "listed twice"),
    ({"spec__services__0__calls": ["nowhere"]}, "spec.services[0].calls[0]", "not a service of the chain"),
    ({"spec__services__0__workload": {"kind": "Job", "name": "x"}}, "spec.services[0].workload.kind", "must be one of"),
    ({"spec__services__0__colour": "x"}, "spec.services[0]", "unknown field"),
    ({"spec__grayLabels": {"version": 2}}, "spec.grayLabels", "must map to a string"),
    ({"spec__canarySubsetLabels": {"track": "gray"}}, "spec.canarySubsetLabels", "not among grayLabels"),
    ({"spec__coloring__rules__0__regex": "(a"}, "spec.coloring.rules[0]", "exactly one of"),
    ({"spec__coloring__rules__0": {"header": "agent", "regex": "(a"}}, "spec.coloring.rules[0].regex",
     "not a valid RE2"),
    ({"spec__rollout__apiVersion": "rollouts.kruise.io/v2"}, "spec.rollout.apiVersion", "must be one of"),
    ({"spec__gateway__selector": {"istio": 1}}, "spec.gateway.selector", "must map to a string"),
    ({"spec__services__0__release": False, "spec__services__1__release": False}, "spec.services",
     "no service is released"),
])
def test_spec_errors_name_the_field(changes, field, message):
    with pytest.raises(InvalidInputError) as caught:
        parse_spec(load(spec_with(**changes)))
    assert caught.value.field == field, str(caught.value)
    assert message in str(caught.value)
    assert str(caught.value).startswith("spec.yaml: document 1: ")


def test_the_same_spec_twice_counts_once_but_two_different_ones_conflict():
    document = load(BASE)
    assert len(specs_of([document, load(BASE)])) == 1
    with pytest.raises(InvalidInputError, match="a different FullLinkGray mock-chain"):
        specs_of([document, load(spec_with(spec__lane__value="gray"))])


# ---------------------------------------------------------------------------------------------- schema

@pytest.mark.parametrize("path", SAMPLE_SPECS, ids=lambda p: p.parent.name)
def test_sample_specs_pass_the_schema(path):
    body = yaml.safe_load(path.read_text())
    assert schema_for(body["apiVersion"], body["kind"]) == "fulllinkgray"
    assert list(validator_for("fulllinkgray").iter_errors(body)) == []
    parse_spec(load(body))


@pytest.mark.parametrize("changes", [
    {"spec__lane__header": "bad header"}, {"spec__services__0__colour": "x"},
    {"spec__coloring__rules__0": {"header": "agent"}}, {"spec__coloring__existingHeader": "keep"},
    {"spec__grayLabels": {}}, {"spec__rollout__apiVersion": "x"},
])
def test_schema_and_parser_reject_the_same_mistakes(changes):
    body = spec_with(**changes)
    assert list(validator_for("fulllinkgray").iter_errors(body))
    with pytest.raises(InvalidInputError):
        parse_spec(load(body))


def test_validate_command_checks_fulllinkgray(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(spec_with(spec__lane__colour="x")))
    result = run_graylane("validate", "-f", str(bad))
    assert result.returncode == 1
    assert "GL0001" in result.stdout and "spec.lane.colour" in result.stdout


# ---------------------------------------------------------------------------------------------- generating

def sample_documents(name: str) -> list:
    return read_documents([str(SAMPLES / name)])


@pytest.mark.parametrize("sample", ["fulllink", "three-hop", "misconfigured"])
def test_samples_are_what_chain_generates(sample):
    """envoyfilter.yaml and trafficrouting.yaml of each sample are chain output (regenerate them, never edit)."""
    documents = sample_documents(sample)
    (spec,) = specs_of(documents)
    objects = generate(spec, [d for d in documents if d.kind != "FullLinkGray"]).objects
    filters = [o for o in objects if o["kind"] == "EnvoyFilter"]
    assert filters == docs((SAMPLES / sample / "envoyfilter.yaml").read_text())
    expected = docs((SAMPLES / sample / "trafficrouting.yaml").read_text())
    routings = [o for o in objects if o["kind"] == "TrafficRouting"]
    strip = lambda o: {**o, "metadata": {k: v for k, v in o["metadata"].items() if k != "labels"}}  # noqa: E731
    assert [strip(o) for o in routings] == [strip(o) for o in expected]


def test_fulllink_sample_output():
    (spec,) = specs_of(sample_documents("fulllink"))
    objects = generate(spec, []).objects
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("EnvoyFilter", "mock-chain-coloring"), ("TrafficRouting", "mocka-tr"), ("Rollout", "rollouts-a"),
        ("TrafficRouting", "mockb-tr"), ("Rollout", "rollouts-b")]
    routing = objects[1]
    assert routing["spec"]["strategy"] == {"matches": [{"headers": [{"type": "Exact", "name": "my-request-id",
                                                                     "value": "canary"}]}]}
    assert routing["spec"]["objectRef"][0]["customNetworkRefs"] == [
        {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "name": "vs-mocka"},
        {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule", "name": "dr-mocka"}]
    rollout = objects[2]
    assert rollout["apiVersion"] == "rollouts.kruise.io/v1alpha1"
    assert rollout["metadata"]["annotations"] == {"rollouts.kruise.io/rolling-style": "canary",
                                                  "rollouts.kruise.io/trafficrouting": "mocka-tr"}
    assert rollout["spec"]["objectRef"]["workloadRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                          "name": "mocka-base"}
    assert rollout["spec"]["strategy"]["canary"]["patchPodTemplateMetadata"] == {
        "labels": {"istio.service.tag": "gray", "version": "canary"}}


def test_v1beta1_rollouts_and_unreleased_services():
    (spec,) = specs_of(sample_documents("three-hop"))
    objects = generate(spec, []).objects
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert ("TrafficRouting", "orders-checkout") not in names and ("Rollout", "orders-checkout") not in names
    rollout = next(o for o in objects if o["kind"] == "Rollout")
    assert rollout["apiVersion"] == "rollouts.kruise.io/v1beta1"
    canary = rollout["spec"]["strategy"]["canary"]
    assert canary["enableExtraWorkloadForCanary"] is True and canary["trafficRoutingRef"] == "web-checkout"
    assert rollout["spec"]["workloadRef"]["name"] == "web-v1"
    assert list(validator_for("rollout").iter_errors(rollout)) == []


def test_network_api_versions_follow_the_inputs():
    documents = sample_documents("fulllink")
    (spec,) = specs_of(documents)
    for document in documents:
        if document.kind == "VirtualService":
            document.body["apiVersion"] = "networking.istio.io/v1"
    routing = generate(spec, documents).objects[1]
    assert routing["spec"]["objectRef"][0]["customNetworkRefs"][0]["apiVersion"] == "networking.istio.io/v1"


def test_checks_find_a_base_subset_that_selects_the_gray_pods():
    documents = sample_documents("fulllink")
    spec = parse_spec(load(spec_with(spec__grayLabels={"istio.service.tag": "gray"})))
    warnings = generate(spec, documents).warnings
    assert len(warnings) == 2
    assert "subset version-base of DestinationRule dr-mocka ({version: base}) also selects the gray pods" in warnings[0]
    assert generate(parse_spec(load(BASE)), documents).warnings == []


def test_checks_missing_objects_and_selector_overrides():
    documents = sample_documents("fulllink")
    body = spec_with(spec__services__0__virtualService="vs-nope", spec__grayLabels={
        "istio.service.tag": "gray", "version": "canary", "app": "other"})
    warnings = generate(parse_spec(load(body)), documents).warnings
    assert any("VirtualService vs-nope is not among the inputs" in w for w in warnings)
    assert any("Service selector {app: mocka} does not select the gray pods" in w for w in warnings)


# ---------------------------------------------------------------------------------------------- CLI

def test_chain_cli_prints_an_apply_ready_stream():
    result = run_graylane("chain", "-f", str(SAMPLES / "fulllink" / "fulllink.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert [o["kind"] for o in docs(result.stdout)] == ["EnvoyFilter", "TrafficRouting", "Rollout",
                                                        "TrafficRouting", "Rollout"]


def test_chain_cli_render_adds_the_mutated_network_objects():
    # the directory holds the spec, the network objects and the hand-written TrafficRoutings (left out)
    result = run_graylane("chain", "-f", str(SAMPLES / "fulllink"), "--render", "-o", "json")
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)["items"]
    rendered = {o["metadata"]["name"]: o for o in items if o["kind"] in ("VirtualService", "DestinationRule")}
    assert set(rendered) == {"vs-mocka", "dr-mocka", "vs-mockb", "dr-mockb"}
    assert rendered["vs-mockb"]["spec"]["http"][0] == {
        "match": [{"headers": {"my-request-id": {"exact": "canary"}}}],
        "route": [{"destination": {"host": "mockb", "subset": "canary"}}]}
    assert rendered["dr-mocka"]["spec"]["subsets"][-1] == {"labels": {"istio.service.tag": "gray"}, "name": "canary"}


def test_chain_render_uses_custom_canary_subset_labels(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(spec_with(spec__grayLabels={"track": "gray", "version": "canary"},
                                             spec__canarySubsetLabels={"track": "gray"})))
    # the gray pods carry the custom labels (with the sample's, subset canary would select none: GL0403)
    gray = tmp_path / "gray.yaml"
    gray.write_text((SAMPLES / "fulllink" / "gray.yaml").read_text().replace("istio.service.tag: gray", "track: gray"))
    result = run_graylane("chain", "-f", str(spec), "-f", str(SAMPLES / "fulllink" / "mocka.yaml"),
                          "-f", str(SAMPLES / "fulllink" / "mockb.yaml"), "-f", str(gray), "--render")
    assert result.returncode == 0, result.stderr
    rules = [o for o in docs(result.stdout) if o["kind"] == "DestinationRule"]
    assert all(r["spec"]["subsets"][-1] == {"name": "canary", "labels": {"track": "gray"}} for r in rules)
    assert all(json.loads(r["metadata"]["annotations"]["graylane.io/canary-subset-labels"]) == {"track": "gray"}
               for r in rules)


def test_chain_cli_warnings_and_strict():
    result = run_graylane("chain", "-f", str(SAMPLES / "misconfigured"))
    assert result.returncode == 0
    assert result.stderr.count("warning: ") == 2 and "also selects the gray pods" in result.stderr
    strict = run_graylane("chain", "-f", str(SAMPLES / "misconfigured"), "--strict")
    assert strict.returncode == 1 and strict.stdout == ""
    assert strict.stderr.strip().splitlines()[-1] == "error: 2 warning(s) with --strict"


@pytest.mark.parametrize("args,message", [
    (["-f", str(SAMPLES / "fulllink" / "mocka.yaml")], "no FullLinkGray"),
    (["-f", str(SAMPLES / "nope.yaml")], "no such file"),
    (["-f", str(SAMPLES / "fulllink" / "fulllink.yaml"), "--render"], "not among the inputs"),
])
def test_chain_cli_errors(args, message):
    result = run_graylane("chain", *args)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error: ") and message in result.stderr


def test_chain_output_validates_with_the_base_objects(tmp_path):
    out = tmp_path / "chain.yaml"
    out.write_text(run_graylane("chain", "-f", str(SAMPLES / "three-hop" / "fulllink.yaml")).stdout)
    result = run_graylane("validate", "-f", str(out), "-f", str(SAMPLES / "three-hop" / "web.yaml"),
                          "-f", str(SAMPLES / "three-hop" / "payments.yaml"))
    assert result.returncode == 0, result.stdout
    assert parse_documents(out.read_text(), "x")


def test_chain_output_pipes_into_render():
    """Rollouts that leave traffic to their TrafficRouting are not routing documents for render."""
    chain = run_graylane("chain", "-f", str(SAMPLES / "fulllink" / "fulllink.yaml"))
    result = run_graylane("render", "-f", "-", "-f", str(SAMPLES / "fulllink" / "mocka.yaml"),
                          "-f", str(SAMPLES / "fulllink" / "mockb.yaml"), input=chain.stdout)
    assert result.returncode == 0, result.stderr
    assert sorted(o["metadata"]["name"] for o in docs(result.stdout)) == ["dr-mocka", "dr-mockb", "vs-mocka",
                                                                         "vs-mockb"]


def test_the_spec_example_in_the_readme_is_valid():
    from helpers import REPO
    text = (REPO / "README.md").read_text()
    block = text.split("The spec (`apiVersion")[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    body = yaml.safe_load(block)
    assert list(validator_for("fulllinkgray").iter_errors(body)) == []
    spec = parse_spec(load(body))
    assert [c.service for c in spec.call_graph()["default/orders"]] == ["default/payments", "default/audit"]
