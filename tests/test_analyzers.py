"""Every analyzer code with a failing and a passing input; schema findings for every kind; host equivalence."""
from __future__ import annotations

import copy

import pytest
import yaml

from engine.checks.analyzers import CODES, ERROR, WARNING, analyze
from engine.checks.analyzers.istio import match_covers
from engine.documents import Document, parse_documents
from engine.errors import ValidationFailed
from engine.routing.hosts import (fqdn, host_matches, how_to_write, is_service_host, request_service_key, same_service,
                                  service_key)
from engine.checks.validate import check_rendered, schema_findings, validate_documents


def documents(*bodies: dict) -> list[Document]:
    return [Document(copy.deepcopy(body), "t.yaml", index) for index, body in enumerate(bodies, 1)]


def findings(*bodies: dict, code: str | None = None):
    found = validate_documents(documents(*bodies))
    return [f for f in found if code is None or f.code == code]


def paths(*bodies: dict, code: str) -> list[str]:
    return [f.path for f in findings(*bodies, code=code)]


def vs(http=None, name="vs", namespace="default", hosts=("mocka",), **spec) -> dict:
    body = {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"hosts": list(hosts), **spec}}
    if http is not None:
        body["spec"]["http"] = http
    return body


def dr(subsets, host="mocka", name="dr", namespace="default") -> dict:
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"host": host, "subsets": subsets}}


def route(*destinations) -> list[dict]:
    result = []
    for item in destinations:
        host, subset, weight = (list(item) + [None, None])[:3]
        destination = {"host": host}
        if subset:
            destination["subset"] = subset
        entry = {"destination": destination}
        if weight is not None:
            entry["weight"] = weight
        result.append(entry)
    return result


def tr(service="mocka", refs=(("VirtualService", "vs"),), strategy=None, namespace="default") -> dict:
    return {"apiVersion": "rollouts.kruise.io/v1alpha1", "kind": "TrafficRouting",
            "metadata": {"name": "tr", "namespace": namespace},
            "spec": {"objectRef": [{"service": service, "customNetworkRefs": [
                {"apiVersion": "networking.istio.io/v1beta1", "kind": kind, "name": name} for kind, name in refs]}],
                "strategy": strategy if strategy is not None else {"weight": 10}}}


def rollout(steps, service="mocka", refs=(("VirtualService", "vs"),)) -> dict:
    return {"apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout",
            "metadata": {"name": "ro", "namespace": "default"},
            "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mocka"},
                     "strategy": {"canary": {"steps": steps, "trafficRoutings": [{"service": service,
                                  "customNetworkRefs": [{"apiVersion": "networking.istio.io/v1beta1", "kind": kind,
                                                         "name": name} for kind, name in refs]}]}}}}


BASE_DR = dr([{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}])


def test_every_code_is_documented_with_a_severity():
    assert all(c.severity in (ERROR, WARNING) and c.summary for c in CODES.values())
    assert sorted(CODES) == list(CODES)


# ---------------------------------------------------------------------------------------------- GL0001

def test_gl0001_schema_unknown_field_and_missing_required():
    bad = vs([{"route": route(("mocka",))}], bogus=1)
    bad["spec"]["http"][0]["match"] = [{"uri": {"prefix": "/"}}]
    bad["spec"]["http"].append({"name": "no-action"})
    found = findings(bad, code="GL0001")
    assert {f.path: f.message.split(" (schema")[0] for f in found} == {
        "spec.bogus": 'unknown field "bogus"',
        "spec.http[1]": "must set one of route, redirect, directResponse, delegate"}


def test_gl0001_passes_valid_documents():
    assert findings(vs([{"route": route(("mocka",))}]), BASE_DR, code="GL0001") == []


VALID_OF_EVERY_KIND = [
    vs([{"route": route(("mocka",))}]),
    BASE_DR,
    {"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter", "metadata": {"name": "ef"},
     "spec": {"configPatches": [{"applyTo": "HTTP_FILTER", "patch": {"operation": "MERGE", "value": {}}}]}},
    {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "gw"},
     "spec": {"selector": {"istio": "ingressgateway"},
              "servers": [{"hosts": ["*"], "port": {"name": "http", "number": 80, "protocol": "HTTP"}}]}},
    tr(),
    rollout([{"traffic": "5%", "replicas": 1}]),
    {"apiVersion": "rollouts.kruise.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "old"},
     "spec": {"objectRef": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"}},
              "strategy": {"canary": {"steps": [{"weight": 5}]}}}},
]


@pytest.mark.parametrize("body", VALID_OF_EVERY_KIND, ids=lambda b: f"{b['apiVersion']}-{b['kind']}")
def test_schema_valid_and_invalid_document_of_every_kind(body):
    assert schema_findings(documents(body)[0]) == []
    broken = copy.deepcopy(body)
    broken["spec"]["notAField"] = True
    found = schema_findings(documents(broken)[0])
    assert [(f.code, f.path) for f in found] == [("GL0001", "spec.notAField")]


@pytest.mark.parametrize("version", ["v1alpha3", "v1beta1", "v1"])
def test_schema_covers_every_istio_version(version):
    body = vs([{"route": route(("mocka",))}])
    body["apiVersion"] = f"networking.istio.io/{version}"
    assert schema_findings(documents(body)[0]) == []
    body["spec"]["http"][0]["route"][0]["destination"]["hots"] = "x"
    assert [f.path for f in schema_findings(documents(body)[0])] == ["spec.http[0].route[0].destination.hots"]


def test_objects_without_a_schema_are_not_schema_checked():
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"anything": 1}}
    assert findings(service) == []


# ---------------------------------------------------------------------------------------------- GL0002

def test_gl0002_duplicate_object():
    assert paths(BASE_DR, BASE_DR, code="GL0002") == ["metadata.name"]
    other_namespace = copy.deepcopy(BASE_DR)
    other_namespace["metadata"]["namespace"] = "other"
    assert paths(BASE_DR, other_namespace, code="GL0002") == []


# ---------------------------------------------------------------------------------------------- GL0101

def test_gl0101_weights_must_sum_to_100():
    bad = vs([{"route": route(("mocka", "v1", 60), ("mocka", "v2", 30))}], tcp=[
        {"route": route(("mocka", None, 50), ("mockb",))}])
    found = findings(bad, BASE_DR, code="GL0101")
    assert [f.path for f in found] == ["spec.http[0].route", "spec.tcp[0].route"]
    assert "sum to 90" in found[0].message


@pytest.mark.parametrize("http", [
    [{"route": route(("mocka", "v1", 90), ("mocka", "v2", 10))}],
    [{"route": route(("mocka", "v1"))}],            # one destination, no weight: it gets everything
    [{"route": route(("mocka", "v1", 100))}],
    [{"route": route(("mocka", "v1", 100), ("mocka", "v2", 0))}],
])
def test_gl0101_passes(http):
    assert paths(vs(http), BASE_DR, code="GL0101") == []


def test_gl0101_single_destination_with_partial_weight():
    assert paths(vs([{"route": route(("mocka", "v1", 40))}]), BASE_DR, code="GL0101") == ["spec.http[0].route"]


# ---------------------------------------------------------------------------------------------- GL0102

def test_gl0102_weights_outside_0_100():
    bad_vs = vs([{"route": route(("mocka", "v1", 150), ("mocka", "v2", -50))}])
    assert paths(bad_vs, BASE_DR, code="GL0102") == ["spec.http[0].route[0].weight", "spec.http[0].route[1].weight"]
    # the schema's own "maximum" complaint at the same path is folded into the analyzer finding
    assert paths(bad_vs, BASE_DR, code="GL0001") == []
    assert paths(tr(strategy={"weight": 101}), code="GL0102") == ["spec.strategy.weight"]
    assert paths(rollout([{"traffic": "150%"}, {"traffic": "x"}]), code="GL0102") == [
        "spec.strategy.canary.steps[0].traffic", "spec.strategy.canary.steps[1].traffic"]


def test_gl0102_passes():
    assert paths(vs([{"route": route(("mocka", "v1", 100), ("mocka", "v2", 0))}]), BASE_DR, code="GL0102") == []
    assert paths(tr(strategy={"weight": 0}), rollout([{"traffic": "100%"}, {"traffic": "0%"}]), code="GL0102") == []


# ---------------------------------------------------------------------------------------------- GL0103

def test_gl0103_match_type_outside_enum():
    strategy = {"matches": [{"headers": [{"type": "Prefix", "name": "x", "value": "a"}],
                             "path": {"type": "Suffix", "value": "/a"}}]}
    assert paths(tr(strategy=strategy), code="GL0103") == ["spec.strategy.matches[0].headers[0].type",
                                                          "spec.strategy.matches[0].path.type"]
    bad_vs = vs([{"match": [{"uri": {"suffix": "/x"}}], "route": route(("mocka",))}, {"route": route(("mocka",))}])
    assert paths(bad_vs, code="GL0103") == ["spec.http[0].match[0].uri.suffix"]


def test_gl0103_passes():
    strategy = {"matches": [{"headers": [{"type": "RegularExpression", "name": "x", "value": "a.*"}, {"name": "y",
                                                                                                    "value": "b"}],
                             "queryParams": [{"type": "Exact", "name": "q", "value": "1"}],
                             "path": {"type": "PathPrefix", "value": "/a"}}]}
    ok_vs = vs([{"match": [{"uri": {"prefix": "/x"}, "headers": {"a": {"exact": "1"}, "b": {"regex": "c+"}}}],
                 "route": route(("mocka",))}, {"route": route(("mocka",))}])
    assert paths(tr(strategy=strategy), ok_vs, code="GL0103") == []


# ---------------------------------------------------------------------------------------------- GL0104

def test_gl0104_more_than_16_matches():
    many = [{"headers": [{"name": "x", "value": str(i)}]} for i in range(17)]
    assert paths(tr(strategy={"matches": many}), code="GL0104") == ["spec.strategy.matches"]
    assert paths(rollout([{"traffic": "5%", "matches": many}]), code="GL0104") == [
        "spec.strategy.canary.steps[0].matches"]
    headers = [{"name": f"h{i}", "value": "v"} for i in range(17)]
    assert paths(tr(strategy={"matches": [{"headers": headers}]}), code="GL0104") == [
        "spec.strategy.matches[0].headers"]


def test_gl0104_passes_with_16():
    many = [{"headers": [{"name": "x", "value": str(i)}]} for i in range(16)]
    assert paths(tr(strategy={"matches": many}), code="GL0104") == []


# ---------------------------------------------------------------------------------------------- GL0105

def test_gl0105_header_names_not_lowercase():
    strategy = {"matches": [{"headers": [{"name": "X-User", "value": "a"}],
                             "queryParams": [{"name": "Q", "value": "1"}]}]}
    found = findings(tr(strategy=strategy), code="GL0105")
    assert [(f.path, f.severity) for f in found] == [("spec.strategy.matches[0].headers[0].name", WARNING)]
    bad_vs = vs([{"match": [{"headers": {"My-Id": {"exact": "1"}}, "withoutHeaders": {"X-No": {}}}],
                  "route": route(("mocka",))}, {"route": route(("mocka",))}])
    assert paths(bad_vs, code="GL0105") == ["spec.http[0].match[0].headers.My-Id",
                                           "spec.http[0].match[0].withoutHeaders.X-No"]


def test_gl0105_passes_and_query_params_may_have_capitals():
    ok_vs = vs([{"match": [{"headers": {"my-id": {"exact": "1"}}, "queryParams": {"UserId": {"exact": "1"}}}],
                 "route": route(("mocka",))}, {"route": route(("mocka",))}])
    assert paths(ok_vs, tr(strategy={"matches": [{"headers": [{"name": "x-user", "value": "A"}]}]}),
                 code="GL0105") == []


# ---------------------------------------------------------------------------------------------- GL0106

@pytest.mark.parametrize("regex", [r"(a)\1", r"(?=lookahead)", r"(?<!x)y", "a++", "["])
def test_gl0106_not_re2(regex):
    strategy = {"matches": [{"headers": [{"type": "RegularExpression", "name": "x", "value": regex}]}]}
    assert paths(tr(strategy=strategy), code="GL0106") == ["spec.strategy.matches[0].headers[0].value"]
    bad_vs = vs([{"match": [{"uri": {"regex": regex}}], "route": route(("mocka",))}, {"route": route(("mocka",))}])
    assert paths(bad_vs, code="GL0106") == ["spec.http[0].match[0].uri.regex"]


def test_gl0106_other_regex_places():
    bad_vs = vs([{"route": route(("mocka",)), "rewrite": {"uriRegexRewrite": {"match": "(?=x)", "rewrite": "/"}},
                  "corsPolicy": {"allowOrigins": [{"regex": "(a)\\1"}]}}])
    assert paths(bad_vs, code="GL0106") == ["spec.http[0].corsPolicy.allowOrigins[0].regex",
                                           "spec.http[0].rewrite.uriRegexRewrite.match"]


@pytest.mark.parametrize("regex", [r"^canary-.*$", r"(?i)beta", r"\d{3}", r"(?P<id>[0-9]+)"])
def test_gl0106_passes(regex):
    strategy = {"matches": [{"headers": [{"type": "RegularExpression", "name": "x", "value": regex}],
                             "path": {"type": "RegularExpression", "value": regex}}]}
    assert paths(tr(strategy=strategy), code="GL0106") == []
    # an Exact value is not a regex, whatever it looks like
    assert paths(tr(strategy={"matches": [{"headers": [{"name": "x", "value": "(?=x)"}]}]}), code="GL0106") == []


# ---------------------------------------------------------------------------------------------- GL0107

def rule(match=None, host="mocka"):
    result = {"route": route((host,))}
    if match is not None:
        result["match"] = match
    return result


def test_gl0107_rule_after_catch_all():
    found = findings(vs([rule(), rule([{"headers": {"x": {"exact": "1"}}}])]), code="GL0107")
    assert [(f.path, f.severity) for f in found] == [("spec.http[1]", WARNING)]
    assert "spec.http[0]" in found[0].message


def test_gl0107_rule_after_superset_match():
    broad = rule([{"uri": {"prefix": "/api"}}])
    narrow = rule([{"uri": {"prefix": "/api/v1"}, "headers": {"x": {"exact": "1"}}}])
    assert paths(vs([broad, narrow, rule()]), code="GL0107") == ["spec.http[1]"]
    header_subset = rule([{"headers": {"x": {"exact": "1"}}}])
    header_superset = rule([{"headers": {"x": {"exact": "1"}, "y": {"regex": ".*"}}}])
    assert paths(vs([header_subset, header_superset, rule()]), code="GL0107") == ["spec.http[1]"]


def test_gl0107_single_shadowed_match_of_a_rule():
    first = rule([{"headers": {"x": {"exact": "1"}}}])
    second = rule([{"headers": {"x": {"exact": "1"}, "y": {"exact": "2"}}}, {"uri": {"prefix": "/b"}}])
    assert paths(vs([first, second, rule()]), code="GL0107") == ["spec.http[1].match[0]"]


def test_gl0107_passes():
    canary_first = [rule([{"headers": {"x": {"exact": "1"}}}]), rule([{"uri": {"prefix": "/api"}}]), rule()]
    assert paths(vs(canary_first), code="GL0107") == []
    narrow_first = [rule([{"uri": {"prefix": "/api/v1"}}]), rule([{"uri": {"prefix": "/api"}}]), rule()]
    assert paths(vs(narrow_first), code="GL0107") == []
    different = [rule([{"headers": {"x": {"exact": "1"}}}]), rule([{"headers": {"x": {"exact": "2"}}}]), rule()]
    assert paths(vs(different), code="GL0107") == []


@pytest.mark.parametrize("broad,narrow,covers", [
    ({"uri": {"prefix": "/"}}, {"uri": {"exact": "/a"}}, True),
    ({"uri": {"exact": "/a"}}, {"uri": {"prefix": "/a"}}, False),
    ({"uri": {"regex": "/a.*"}}, {"uri": {"exact": "/abc"}}, True),
    ({"uri": {"regex": "/a.*"}}, {"uri": {"prefix": "/a"}}, False),
    ({"headers": {"x": {}}}, {"headers": {"x": {"exact": "1"}}}, True),
    ({"headers": {"X": {"exact": "1"}}}, {"headers": {"x": {"exact": "1"}}}, True),
    ({"headers": {"x": {"exact": "1"}}}, {"uri": {"prefix": "/"}}, False),
    ({"gateways": ["a", "b"]}, {"gateways": ["a"]}, True),
    ({"gateways": ["a"]}, {}, False),
    ({"uri": {"prefix": "/a"}}, {"uri": {"prefix": "/a"}, "ignoreUriCase": True}, False),
    ({"uri": {"prefix": "/A"}, "ignoreUriCase": True}, {"uri": {"prefix": "/a"}}, True),
    ({"sourceLabels": {"app": "x"}}, {"sourceLabels": {"app": "x", "v": "1"}}, True),
    ({"unknownCondition": 1}, {"unknownCondition": 1}, False),
])
def test_match_covers(broad, narrow, covers):
    assert match_covers(broad, narrow) is covers


# ---------------------------------------------------------------------------------------------- GL0201/2

def test_gl0201_subset_missing_from_destination_rule():
    bad = vs([{"route": route(("mocka.default.svc.cluster.local", "v3", 100), ("mocka", "v1", 0))}])
    found = findings(bad, BASE_DR, code="GL0201")
    assert [f.path for f in found] == ["spec.http[0].route[0].destination.subset"]
    assert "defined: v1, v2" in found[0].message


def test_gl0201_mirror_subsets_count():
    bad = vs([{"route": route(("mocka", "v1")), "mirror": {"host": "mocka", "subset": "shadow"}}])
    assert paths(bad, BASE_DR, code="GL0201") == ["spec.http[0].mirror.subset"]


def test_gl0201_passes_in_every_host_form_istio_resolves_and_with_wildcard_rules():
    ok = vs([{"route": route(("mocka", "v1", 50), ("mocka.default.svc.cluster.local", "v2", 50))}])
    assert findings(ok, BASE_DR, code="GL0201") + findings(ok, BASE_DR, code="GL0202") == []
    wildcard = dr([{"name": "v1", "labels": {"v": "1"}}, {"name": "v2", "labels": {"v": "2"}}],
                  host="*.default.svc.cluster.local")
    assert paths(ok, wildcard, code="GL0201") + paths(ok, wildcard, code="GL0202") == []


def test_gl0201_rule_for_other_namespace_does_not_count():
    other = dr([{"name": "v1", "labels": {"v": "1"}}], namespace="other")
    assert paths(vs([{"route": route(("mocka", "v1"))}]), other, code="GL0202") == [
        "spec.http[0].route[0].destination.subset"]


def test_gl0202_no_destination_rule_for_host():
    found = findings(vs([{"route": route(("mocka", "v1"))}]), code="GL0202")
    assert [(f.path, f.severity) for f in found] == [("spec.http[0].route[0].destination.subset", WARNING)]
    assert findings(vs([{"route": route(("mocka",))}]), code="GL0202") == []


# ---------------------------------------------------------------------------------------------- GL0203/4

def test_gl0203_duplicate_subset_names():
    bad = dr([{"name": "v1", "labels": {"a": "1"}}, {"name": "v1", "labels": {"a": "2"}}])
    assert paths(bad, code="GL0203") == ["spec.subsets[1].name"]
    assert paths(BASE_DR, code="GL0203") == []


def test_gl0204_subset_without_labels():
    found = findings(dr([{"name": "v1"}, {"name": "v2", "labels": {}}, {"name": "v3", "labels": {"a": "b"}}]),
                     code="GL0204")
    assert [(f.path, f.severity) for f in found] == [("spec.subsets[0]", WARNING), ("spec.subsets[1]", WARNING)]
    assert paths(BASE_DR, code="GL0204") == []


# ---------------------------------------------------------------------------------------------- GL03xx

def test_gl0301_reference_not_among_inputs():
    routing = tr(refs=(("VirtualService", "vs"), ("DestinationRule", "missing")))
    assert paths(routing, vs([{"route": route(("mocka",))}]), code="GL0301") == [
        "spec.objectRef[0].customNetworkRefs[1]"]
    elsewhere = vs([{"route": route(("mocka",))}], namespace="other")
    found = findings(tr(), elsewhere, code="GL0301")
    assert len(found) == 1 and "namespace other" in found[0].message
    ingress_ref = tr()
    ingress_ref["spec"]["objectRef"][0] = {"service": "mocka", "ingress": {"name": "web"}}
    assert paths(ingress_ref, code="GL0301") == ["spec.objectRef[0].ingress.name"]


def test_gl0301_passes():
    assert paths(tr(), vs([{"route": route(("mocka",))}]), code="GL0301") == []
    assert paths(rollout([{"traffic": "5%"}]), vs([{"route": route(("mocka",))}]), code="GL0301") == []


def test_gl0302_service_not_a_destination_host():
    found = findings(tr(service="reviews"), vs([{"route": route(("mocka",))}]), code="GL0302")
    assert [f.path for f in found] == ["spec.objectRef[0].service"]
    assert paths(rollout([{"traffic": "5%"}], service="reviews"), vs([{"route": route(("mocka",))}]),
                 code="GL0302") == ["spec.strategy.canary.trafficRoutings[0].service"]
    other_namespace = vs([{"route": route(("mocka.other.svc.cluster.local",))}])
    assert paths(tr(), other_namespace, code="GL0302") == ["spec.objectRef[0].service"]


def test_gl0201_a_destination_istio_takes_literally_is_not_the_rules_host():
    """mocka.default is no Service in Istio, so the DestinationRule for mocka does not define its subsets."""
    literal = vs([{"route": route(("mocka.default", "v1"))}])
    assert paths(literal, BASE_DR, code="GL0202") == ["spec.http[0].route[0].destination.subset"]


@pytest.mark.parametrize("host", ["mocka", "mocka.default.svc.cluster.local"])
def test_gl0302_passes_for_every_host_form_istio_resolves(host):
    assert paths(tr(), vs([{"route": route((host,))}], tcp=[{"route": route(("other",))}]), code="GL0302") == []


@pytest.mark.parametrize("host", ["mocka.default", "mocka.default.svc"])
def test_gl0302_fails_for_hosts_istio_takes_literally_and_says_how_to_write_them(host):
    found = findings(tr(), vs([{"route": route((host,))}]), code="GL0302")
    assert [f.path for f in found] == ["spec.objectRef[0].service"]
    assert found[0].message.endswith(
        f"(Istio takes host {host} literally: it expands only names without dots, so {host} names no Service; "
        "write 'mocka.default.svc.cluster.local', or the short name 'mocka' (VirtualService/vs is in namespace "
        "default))")



def test_gl0303_destination_rule_for_another_host():
    refs = (("VirtualService", "vs"), ("DestinationRule", "dr"))
    found = findings(tr(refs=refs), vs([{"route": route(("mocka",))}]), dr([{"name": "a", "labels": {"a": "b"}}],
                                                                            host="mockb"), code="GL0303")
    assert [(f.path, f.severity) for f in found] == [("spec.objectRef[0].customNetworkRefs[1]", WARNING)]
    assert paths(tr(refs=refs), vs([{"route": route(("mocka",))}]), BASE_DR, code="GL0303") == []


def test_gl0304_subset_routing_without_destination_rule():
    found = findings(tr(), vs([{"route": route(("mocka",))}]), code="GL0304")
    assert [(f.path, f.severity) for f in found] == [("spec.objectRef[0].customNetworkRefs", WARNING)]
    no_canary_service = rollout([{"traffic": "5%"}])
    no_canary_service["spec"]["strategy"]["canary"]["disableGenerateCanaryService"] = True
    assert paths(no_canary_service, vs([{"route": route(("mocka",))}]), code="GL0304") == [
        "spec.strategy.canary.trafficRoutings[0].customNetworkRefs"]


def test_gl0304_passes():
    refs = (("VirtualService", "vs"), ("DestinationRule", "dr"))
    assert paths(tr(refs=refs), vs([{"route": route(("mocka",))}]), BASE_DR, code="GL0304") == []
    with_canary = dr([{"name": "canary", "labels": {"track": "canary"}}])
    assert paths(tr(), vs([{"route": route(("mocka",))}]), with_canary, code="GL0304") == []
    # a Rollout routes to the <service>-canary Service, not to a subset
    assert paths(rollout([{"traffic": "5%"}]), vs([{"route": route(("mocka",))}]), code="GL0304") == []


# ---------------------------------------------------------------------------------------------- samples

def test_samples_are_clean():
    from helpers import SAMPLES

    for sample in ("fulllink", "weighted-canary"):
        docs = []
        for path in sorted((SAMPLES / sample).glob("*.yaml")):
            docs.extend(parse_documents(path.read_text(), str(path)))
        assert validate_documents(docs) == [], sample


def test_analyze_tolerates_garbage_shapes():
    weird = [vs("not-a-list"), vs([None, 3, {"route": "x", "match": "y"}]), dr("nope"), dr([None, {"name": 3}]),
             tr(strategy={"matches": "x", "weight": "y"}), rollout("x"), rollout([None, {"matches": [None]}])]
    analyze(documents(*weird))  # must not raise
    validate_documents(documents(*weird))


# ---------------------------------------------------------------------------------------------- check_rendered

def test_check_rendered_refuses_weights_and_schema_failures():
    source = documents(vs([{"route": route(("mocka",))}]))[0]
    bad_weights = vs([{"route": route(("mocka", None, 90), ("mocka-canary", None, 20))}])
    with pytest.raises(ValidationFailed) as error:
        check_rendered(source, bad_weights)
    assert "t.yaml: document 1: spec.http[0].route:" in str(error.value) and "GL0101" in str(error.value)
    assert [f.code for f in error.value.findings] == ["GL0101"]
    with pytest.raises(ValidationFailed, match='unknown field "oops"'):
        check_rendered(source, vs([{"route": route(("mocka",)), "oops": 1}]))
    check_rendered(source, vs([{"route": route(("mocka", None, 90), ("mocka-canary", None, 10))}]))


def test_check_rendered_ignores_warnings_and_kinds_without_schema():
    source = documents(vs([{"route": route(("mocka",))}]))[0]
    check_rendered(source, vs([rule(), rule([{"headers": {"X": {"exact": "1"}}}])]))  # GL0107 + GL0105: warnings
    other = Document({"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "x"}}, "t.yaml", 1)
    check_rendered(other, {**other.body, "spec": {"anything": True}})


# ---------------------------------------------------------------------------------------------- hosts

# Istio's rules (ResolveShortnameToFQDN): only a name without dots is expanded, in the namespace of the object that
# holds it; every host with a dot is literal, so name.ns and name.ns.svc name no Service.
@pytest.mark.parametrize("host,namespace,key", [
    ("reviews", "bookinfo", ("reviews", "bookinfo")),                              # short: the object's namespace
    ("reviews", None, ("reviews", None)),
    ("reviews.bookinfo", None, ("reviews.bookinfo", None)),                        # name.ns: literal
    ("reviews.bookinfo", "bookinfo", ("reviews.bookinfo", None)),
    ("reviews.bookinfo.svc", "x", ("reviews.bookinfo.svc", None)),                 # name.ns.svc: literal
    ("Reviews.Bookinfo.svc.cluster.local.", None, ("reviews", "bookinfo")),        # FQDN
    ("reviews.other.svc.cluster.local", "bookinfo", ("reviews", "other")),         # FQDN of another namespace
    ("reviews.bookinfo.svc.corp.example", None, ("reviews.bookinfo.svc.corp.example", None)),  # another domain
    ("api.example.com", "x", ("api.example.com", None)),                           # external
    ("*.example.com", "x", ("*.example.com", None)),                               # wildcard
    ("*", None, ("*", None)),
    ("10.0.0.1", "x", ("10.0.0.1", None)), ("fd00::1", "x", ("fd00::1", None)),  # IP addresses: never expanded
])
def test_service_key_follows_istio(host, namespace, key):
    assert service_key(host, namespace) == key


@pytest.mark.parametrize("host,client,key", [
    ("reviews", "bookinfo", ("reviews", "bookinfo")), ("reviews.bookinfo", "default", ("reviews", "bookinfo")),
    ("reviews.bookinfo.svc", "default", ("reviews", "bookinfo")),
    ("reviews.bookinfo.svc.cluster.local", "default", ("reviews", "bookinfo")),
    ("api.example.com", "default", ("api.example.com", None)), ("*.example.com", "x", ("*.example.com", None))])
def test_request_hosts_resolve_as_kubernetes_dns(host, client, key):
    """A request (or a service named on graylane's command line) reaches the Service through DNS and the sidecar's
    virtual-host domains, which include name.ns and name.ns.svc."""
    assert request_service_key(host, client) == key


@pytest.mark.parametrize("a,b,namespace,same", [
    ("reviews", "reviews.bookinfo.svc.cluster.local", "bookinfo", True),
    ("reviews", "reviews", None, True),
    ("reviews", "reviews.bookinfo", "bookinfo", False),          # Istio: reviews.bookinfo is no Service
    ("reviews", "reviews.bookinfo.svc", "bookinfo", False),
    ("reviews.bookinfo", "reviews.bookinfo", "bookinfo", True),  # the same literal host
    ("reviews", "reviews.other.svc.cluster.local", "bookinfo", False),
    ("reviews", "ratings", "bookinfo", False), ("*", "reviews", None, False),
    ("api.example.com", "api.example.com.svc", None, False)])
def test_same_service_follows_istio(a, b, namespace, same):
    assert same_service(a, b, namespace) is same
    assert same_service(b, a, namespace) is same


def test_fqdn_is_service_host_and_host_matches_follow_istio():
    assert fqdn("reviews", "bookinfo") == "reviews.bookinfo.svc.cluster.local"
    assert fqdn("reviews.bookinfo", "bookinfo") == "reviews.bookinfo"
    assert fqdn("api.example.com", "bookinfo") == "api.example.com"
    assert is_service_host("reviews") and is_service_host("reviews.bookinfo.svc.cluster.local")
    assert not is_service_host("reviews.bookinfo") and not is_service_host("reviews.bookinfo.svc")
    assert not is_service_host("*.bookinfo.svc.cluster.local") and not is_service_host("api.example.com")
    assert host_matches("*.bookinfo.svc.cluster.local", "reviews", "bookinfo")
    assert host_matches("reviews", "reviews.bookinfo.svc.cluster.local", "bookinfo")
    assert not host_matches("reviews.bookinfo", "reviews.bookinfo.svc.cluster.local")
    assert not host_matches("*.bookinfo.svc.cluster.local", "reviews.bookinfo")
    assert not host_matches("*.other.svc.cluster.local", "reviews", "bookinfo")
    assert host_matches("*", "api.example.com") and host_matches("*.example.com", "api.example.com")


def test_how_to_write_names_the_fqdn_and_the_short_name_where_it_works():
    assert how_to_write("reviews.bookinfo", "bookinfo") == (
        "write 'reviews.bookinfo.svc.cluster.local', or the short name 'reviews' (this object is in namespace "
        "bookinfo)")
    assert how_to_write("reviews.bookinfo.svc", "shop") == (
        "write 'reviews.bookinfo.svc.cluster.local' (the short name 'reviews' would mean Service reviews of "
        "namespace shop)")
    for fine in ("reviews", "reviews.bookinfo.svc.cluster.local", "api.example.com", "*.example.com", "*"):
        assert how_to_write(fine, "bookinfo") == ""


def test_findings_format():
    found = findings(BASE_DR, BASE_DR, code="GL0002")[0]
    assert found.line() == "error GL0002 t.yaml#2 metadata.name: DestinationRule/dr also appears in t.yaml document 1"
    assert found.to_dict()["check"] == "DuplicateObject"
    assert yaml.safe_dump(found.to_dict())


def test_check_rendered_says_when_the_input_already_had_the_problem():
    source = documents(vs([{"route": route(("mocka",)), "oops": 1}]))[0]
    with pytest.raises(ValidationFailed, match="the input object already has this problem"):
        check_rendered(source, vs([{"route": route(("mocka",)), "oops": 1}]))
