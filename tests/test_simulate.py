"""The request-routing simulator (engine/fulllink/simulate/) and `graylane simulate`."""
from __future__ import annotations

import json
from fractions import Fraction

import pytest
import yaml
from helpers import SAMPLES, run_graylane

from engine.fulllink.color import ColoringSpec, Condition, GatewayTarget, Rule, envoy_filter
from engine.documents import Document, parse_documents
from engine.fulllink.envoy import HttpRequest, parse_request
from engine.errors import InvalidInputError
from engine.inputs import read_documents, sandbox, script_library
from engine.routing.render import Engine
from engine.fulllink.simulate.simulator import (
    Options,
    check_expectations,
    parse_call,
    parse_expectation,
    rendered_state,
    route_shares,
    simulate,
)
from engine.fulllink.simulate.mesh import RouteContext, match_block, string_match
from engine.fulllink.simulate.report import text, to_data

ENGINE = Engine(script_library(), sandbox())


def sample(name: str, render: bool = True) -> list:
    documents = read_documents([str(SAMPLES / name)])
    return rendered_state(documents, ENGINE)[0] if render else documents


def find(documents: list, kind: str, name: str) -> Document:
    return next(d for d in documents if d.kind == kind and d.name == name)


def served(trace) -> dict:
    """{service name: {workload name: total share}} of every served arrival."""
    result: dict = {}
    for arrival in trace.arrivals():
        if arrival.status == 200:
            name = arrival.service.split("/")[1]
            result.setdefault(name, {})
            result[name][arrival.workload.name] = result[name].get(arrival.workload.name, 0) + arrival.total_share
    return result


def run(documents, *headers, url="GET http://example.com/", expect=(), **options):
    expectations = [parse_expectation(e) for e in expect]
    return simulate(documents, parse_request(url, list(headers)), Options(**options), expectations)


# ---------------------------------------------------------------------------------------------- seed scenario

def test_agent_pc_reaches_the_gray_version_of_both_services():
    trace = run(sample("fulllink"), "agent: pc", expect=["mocka=version=canary", "mockb=version=canary"])
    assert trace.ok
    assert served(trace) == {"mocka": {"mocka-gray": 1}, "mockb": {"mockb-gray": 1}}
    (step,) = trace.root.coloring
    assert step.envoy_filter == "EnvoyFilter istio-system/mock-chain-coloring"
    assert step.changes == [("added", "my-request-id", None, "canary")] and step.route_cache_cleared == 1
    assert trace.root.virtual_service == "default/vs-mocka" and trace.root.rule == "http[0]"
    hop2 = trace.root.arrivals[0].calls[0]
    assert hop2.request.headers == [("my-request-id", "canary")] and hop2.dropped == ["agent"]
    assert hop2.virtual_service == "default/vs-mockb" and hop2.rule == "http[0]"


def test_no_header_reaches_base_everywhere():
    trace = run(sample("fulllink"), expect=["mocka=version=base", "mockb=version=base"])
    assert trace.ok
    assert served(trace) == {"mocka": {"mocka-base": 1}, "mockb": {"mockb-base": 1}}
    assert trace.root.coloring[0].changes == [("added", "my-request-id", None, "base")]


def test_a_client_sent_lane_header_is_overwritten_at_the_gateway():
    trace = run(sample("fulllink"), "my-request-id: canary", expect=["mocka=version=base", "mockb=version=base"])
    assert trace.ok
    assert trace.root.coloring[0].changes == [("set", "my-request-id", "canary", "base")]
    assert trace.root.skipped == ["http[0] not matched: header my-request-id exact 'canary' (request: 'base')"]


def test_trusting_the_client_header_lets_it_pick_the_lane():
    documents = [d for d in sample("fulllink") if d.kind != "EnvoyFilter"]
    spec = ColoringSpec("my-request-id", (Rule((Condition("header", "agent", "exact", "pc"),), "canary"),),
                        existing="trust")
    documents.append(Document(envoy_filter(spec, GatewayTarget("trusting")), "test", 1))
    trace = run(documents, "my-request-id: canary", expect=["mocka=version=canary", "mockb=version=canary"])
    assert trace.ok and trace.root.coloring[0].changes == []


def test_the_seed_tutorial_filter_runs_with_its_deprecated_name_and_add_semantics():
    seed = yaml.safe_load("""
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: http-request-labelling-according-source, namespace: istio-system}
spec:
  workloadSelector: {labels: {app: istio-ingressgateway}}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
      listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager,
                                        subFilter: {name: envoy.filters.http.router}}}}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.lua
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
          inlineCode: |
            function envoy_on_request(request_handle)
              local headers = request_handle:headers()
              if headers:get("agent") == "pc" then headers:add("my-request-id", "canary")
              else headers:add("my-request-id", "base") end
            end
""")
    documents = [d for d in sample("fulllink") if d.kind != "EnvoyFilter"] + [Document(seed, "seed.yaml", 1)]
    assert served(run(documents, "agent: pc")) == {"mocka": {"mocka-gray": 1}, "mockb": {"mockb-gray": 1}}
    spoofed = run(documents, "my-request-id: canary")
    step = spoofed.root.coloring[0]
    assert step.changes == [("set", "my-request-id", "canary", "canary,base")]
    assert any("deprecated filter name envoy.lua" in n for n in step.notes)
    assert any("without clearRouteCache" in n for n in step.notes)
    assert served(spoofed) == {"mocka": {"mocka-base": 1}, "mockb": {"mockb-base": 1}}


# ---------------------------------------------------------------------------------------------- three hops

def test_lane_header_propagates_through_a_service_outside_the_release():
    trace = run(sample("three-hop"), "cookie: lane=gray", "x-request-id: r1", url="GET http://shop.example.com/",
                expect=["web=version=gray", "orders=version=v1", "payments=version=gray"])
    assert trace.ok, text(trace)
    orders_hop = trace.root.arrivals[0].calls[0]
    assert orders_hop.virtual_service is None
    assert any("no VirtualService for orders" in n for n in orders_hop.notes)
    payments_hop = orders_hop.arrivals[0].calls[0]
    assert dict(payments_hop.request.headers) == {"x-request-id": "r1", "x-lane": "gray"}
    assert payments_hop.request.authority == "payments:9090"
    assert orders_hop.dropped == ["cookie"]


@pytest.mark.parametrize("headers,url,lane", [
    ((), "GET http://shop.example.com/", None),
    (("x-lane: gray",), "GET http://shop.example.com/", None),  # overwritten: default null removes it
    (("x-user-group: staff",), "GET http://shop.example.com/", "gray"),
    (("x-user-group: staffer",), "GET http://shop.example.com/", None),
    ((), "GET http://shop.example.com/cart?lane=gray", "gray"),
])
def test_three_hop_coloring_rules(headers, url, lane):
    trace = run(sample("three-hop"), *headers, url=url)
    version = "gray" if lane else "v1"
    assert served(trace) == {"web": {f"web-{version}": 1}, "orders": {"orders-v1": 1},
                             "payments": {f"payments-{version}": 1}}


def test_percentage_coloring_is_stable_per_user():
    documents = sample("three-hop")
    results = {}
    for user in range(40):
        trace = run(documents, f"x-user-id: user-{user}", url="GET http://shop.example.com/")
        results[user] = list(served(trace)["payments"])[0]
    assert set(results.values()) == {"payments-gray", "payments-v1"}
    again = {u: list(served(run(documents, f"x-user-id: user-{u}", url="GET http://shop.example.com/"))["payments"])[0]
             for u in range(40)}
    assert again == results


# ---------------------------------------------------------------------------------------------- misconfigured

def test_gray_pods_missing_is_a_503_for_lane_traffic():
    trace = run(sample("misconfigured"), "x-canary: 1", url="GET http://books.example.com/",
                expect=["ratings=version=v1"])
    assert not trace.ok
    ratings = trace.root.arrivals[0].calls[0].arrivals[0]
    assert ratings.status == 503 and ratings.subset == "canary"
    assert ratings.reason.startswith("no healthy upstream")
    assert trace.expectations[0].details == [
        "100% of requests get 503 (no healthy upstream: no pods match the Service selector {app: ratings} plus "
        "subset canary {istio.service.tag: gray})"]


def test_a_base_subset_selecting_gray_pods_splits_base_traffic():
    trace = run(sample("misconfigured"), url="GET http://books.example.com/")
    assert served(trace)["reviews"] == {"reviews-gray": Fraction(1, 2), "reviews-v1": Fraction(1, 2)}
    assert all("more than one version" in " ".join(a.notes) for a in trace.root.arrivals)
    assert sorted(p.share for p in trace.paths()) == [Fraction(1, 2), Fraction(1, 2)]


# ---------------------------------------------------------------------------------------------- weights

def weighted_fulllink(mocka_weights=(50, 50), mockb_weights=(80, 20)) -> list:
    documents = sample("fulllink", render=False)
    documents = [d for d in documents if d.kind != "TrafficRouting"]
    for name, host, (base, gray) in (("vs-mocka", "mocka", mocka_weights), ("vs-mockb", "mockb", mockb_weights)):
        vs = find(documents, "VirtualService", name)
        vs.body["spec"]["http"] = [{"route": [
            {"destination": {"host": host, "subset": "version-base"}, "weight": base},
            {"destination": {"host": host, "subset": "gray"}, "weight": gray}]}]
        dr = find(documents, "DestinationRule", f"dr-{host}")
        dr.body["spec"]["subsets"].append({"name": "gray", "labels": {"version": "canary"}})
    return documents


def test_weighted_splits_mid_chain_follow_every_branch_with_exact_shares():
    trace = run(weighted_fulllink((50, 50), (80, 20)))
    shares = sorted((tuple(s.workload.split("/")[1] for s in p.steps), p.share) for p in trace.paths())
    assert shares == [(("mocka-base", "mockb-base"), Fraction(2, 5)), (("mocka-base", "mockb-gray"), Fraction(1, 10)),
                      (("mocka-gray", "mockb-base"), Fraction(2, 5)), (("mocka-gray", "mockb-gray"), Fraction(1, 10))]
    assert sum(p.share for p in trace.paths()) == 1
    assert served(trace)["mockb"] == {"mockb-base": Fraction(4, 5), "mockb-gray": Fraction(1, 5)}


def test_replicas_weigh_the_pods_a_subset_selects():
    documents = weighted_fulllink((100, 0), (100, 0))
    find(documents, "Deployment", "mocka-base").body["spec"]["replicas"] = 2
    vs = find(documents, "VirtualService", "vs-mocka")
    vs.body["spec"]["http"] = [{"route": [{"destination": {"host": "mocka"}}]}]  # the whole Service
    trace = run(documents)
    assert served(trace)["mocka"] == {"mocka-base": Fraction(2, 3), "mocka-gray": Fraction(1, 3)}
    assert text(trace).count("66.67%") >= 1


def test_route_shares():
    assert route_shares([{}]) == [1]
    assert route_shares([{}, {}, {}]) == [Fraction(1, 3)] * 3
    assert route_shares([{"weight": 90}, {"weight": 10}]) == [Fraction(9, 10), Fraction(1, 10)]
    assert route_shares([{"weight": 30}, {}]) == [1, 0]


def test_fault_abort_is_a_branch_with_its_share():
    documents = weighted_fulllink((100, 0), (100, 0))
    find(documents, "VirtualService", "vs-mockb").body["spec"]["http"][0]["fault"] = {
        "abort": {"httpStatus": 500, "percentage": {"value": 12.5}}}
    trace = run(documents)
    mockb = trace.root.arrivals[0].calls[0].arrivals
    assert [(a.status, a.total_share) for a in mockb] == [(500, Fraction(1, 8)), (200, Fraction(7, 8))]


# ---------------------------------------------------------------------------------------------- rendering

def test_no_render_simulates_the_objects_as_given():
    trace = run(sample("fulllink", render=False), "agent: pc")
    assert served(trace) == {"mocka": {"mocka-base": 1}, "mockb": {"mockb-base": 1}}


def test_rendered_state_is_idempotent_and_skips_rollouts_that_delegate():
    documents = sample("fulllink")
    again, names = rendered_state(documents, ENGINE)
    assert [d.body for d in again] == [d.body for d in documents]
    assert names == ["VirtualService default/vs-mocka", "DestinationRule default/dr-mocka",
                     "VirtualService default/vs-mockb", "DestinationRule default/dr-mockb"]
    chain = run_graylane("chain", "-f", str(SAMPLES / "fulllink" / "fulllink.yaml")).stdout
    rollouts = [d for d in parse_documents(chain, "chain") if d.kind == "Rollout"]
    with_rollouts, _ = rendered_state(sample("fulllink", render=False) + rollouts, ENGINE)
    assert served(run(with_rollouts, "agent: pc"))["mocka"] == {"mocka-gray": 1}


def test_rollout_pods_stand_in_for_the_canary_pods(tmp_path):
    chain = tmp_path / "chain.yaml"
    chain.write_text(run_graylane("chain", "-f", str(SAMPLES / "fulllink" / "fulllink.yaml")).stdout)
    args = ["simulate", "-f", str(chain), "-f", str(SAMPLES / "fulllink" / "fulllink.yaml"),
            "-f", str(SAMPLES / "fulllink" / "mocka.yaml"),
            "-f", str(SAMPLES / "fulllink" / "mockb.yaml"), "-f", str(SAMPLES / "fulllink" / "gateway.yaml"),
            "--request", "GET http://example.com/", "-H", "agent: pc", "--expect", "mockb=version=canary"]
    without = run_graylane(*args)
    assert without.returncode == 3 and "no healthy upstream" in without.stdout
    with_pods = run_graylane(*args, "--rollout-pods")
    assert with_pods.returncode == 0, with_pods.stdout + with_pods.stderr
    assert "canary pods of Rollout default/rollouts-b" in with_pods.stdout


# ---------------------------------------------------------------------------------------------- matching

REQUEST = HttpRequest("GET", "mockb:8000", "/api/v1/items?Lane=Gray&x=1", "http",
                      [("my-request-id", "canary"), ("agent", "pc"), ("agent", "mac")])
MESH = RouteContext({"mesh"}, "default", {"app": "mocka", "version": "canary"}, 8000)


@pytest.mark.parametrize("block,matched", [
    ({}, True),
    ({"headers": {"my-request-id": {"exact": "canary"}}}, True),
    ({"headers": {"my-request-id": {"exact": "canary"}, "agent": {"exact": "pc"}}}, False),  # joined: "pc,mac"
    ({"headers": {"agent": {"exact": "pc,mac"}}}, True),
    ({"headers": {"agent": {"regex": "pc"}}}, False),  # RE2 full match
    ({"headers": {"agent": {"regex": "pc.*"}}}, True),
    ({"headers": {"agent": {}}}, True),  # presence
    ({"headers": {"missing": {}}}, False),
    ({"withoutHeaders": {"my-request-id": {"exact": "canary"}}}, False),
    ({"uri": {"prefix": "/api"}}, True),
    ({"uri": {"exact": "/api/v1/items"}}, True),  # the query string is not part of the path
    ({"uri": {"regex": "/api/v[0-9]+/.*"}}, True),
    ({"uri": {"prefix": "/API"}}, False),
    ({"uri": {"prefix": "/API"}, "ignoreUriCase": True}, True),
    ({"queryParams": {"Lane": {"exact": "Gray"}}}, True),
    ({"queryParams": {"lane": {"exact": "Gray"}}}, False),
    ({"method": {"exact": "POST"}}, False),
    ({"sourceLabels": {"version": "canary"}}, True),
    ({"sourceLabels": {"version": "base"}}, False),
    ({"port": 9000}, False),
    ({"gateways": ["sample-gateway"]}, False),
])
def test_match_blocks(block, matched):
    assert match_block(block, REQUEST, MESH, "default")[0] is matched


def test_match_blocks_are_ored_and_conditions_anded():
    documents = weighted_fulllink((100, 0), (100, 0))
    vs = find(documents, "VirtualService", "vs-mockb")
    vs.body["spec"]["http"].insert(0, {"name": "gray-lane", "match": [
        {"headers": {"agent": {"exact": "none"}}},
        {"headers": {"my-request-id": {"exact": "base"}}, "uri": {"prefix": "/"}}],
        "route": [{"destination": {"host": "mockb", "subset": "gray"}}]})
    trace = run(documents)
    hop = trace.root.arrivals[0].calls[0]
    assert hop.rule == "http[0] (gray-lane)" and hop.matched.startswith("match[1]:")
    assert served(trace)["mockb"] == {"mockb-gray": 1}


def test_string_match_semantics():
    assert string_match({"exact": "a"}, "a") and not string_match({"exact": "a"}, None)
    assert string_match({"prefix": "ab"}, "abc") and not string_match({"regex": "b"}, "abc")
    assert string_match({"regex": "(?i)ABC"}, "abc") and not string_match({"regex": "(a"}, "(a")


# ---------------------------------------------------------------------------------------------- hosts and hops

# A VirtualService host resolves by Istio's rules (a short name in the VirtualService's namespace, or the FQDN); the
# host an application calls reaches the Service through Kubernetes DNS, so mockb.default and mockb.default.svc work
# there (the sidecar's virtual-host domains include them).
@pytest.mark.parametrize("vs_host,call", [
    ("mockb", "mockb"), ("mockb.default.svc.cluster.local", "mockb"), ("mockb", "mockb.default"),
    ("mockb", "mockb.default.svc"), ("mockb.default.svc.cluster.local", "mockb.default.svc.cluster.local"),
    ("*.default.svc.cluster.local", "mockb"),
])
def test_host_forms_name_one_service(vs_host, call):
    documents = sample("fulllink")
    find(documents, "VirtualService", "vs-mockb").body["spec"]["hosts"] = [vs_host]
    trace = run(documents, "agent: pc", calls={"default/mocka": [parse_call(call, "default")]})
    hop = trace.root.arrivals[0].calls[0]
    assert hop.virtual_service == "default/vs-mockb", text(trace)
    assert served(trace)["mockb"] == {"mockb-gray": 1}


@pytest.mark.parametrize("vs_host", ["mockb.default", "mockb.default.svc", "mockb.other.svc.cluster.local"])
def test_virtual_service_hosts_istio_takes_literally_do_not_bind_the_service(vs_host):
    """Istio expands only names without dots: a VirtualService for mockb.default is not the one for Service mockb,
    so a call to mockb goes to the whole Service, not through vs-mockb's subset."""
    documents = sample("fulllink")
    find(documents, "VirtualService", "vs-mockb").body["spec"]["hosts"] = [vs_host]
    trace = run(documents, "agent: pc", calls={"default/mocka": [parse_call("mockb", "default")]})
    hop = trace.root.arrivals[0].calls[0]
    assert hop.virtual_service is None, text(trace)
    assert any("no VirtualService for mockb" in note for note in hop.notes)


@pytest.mark.parametrize("destination", ["mockb.default", "mockb.default.svc"])
def test_a_destination_istio_takes_literally_reaches_no_pods_and_the_trace_says_how_to_write_it(destination):
    documents = sample("fulllink")
    vs = find(documents, "VirtualService", "vs-mockb")
    vs.body["spec"]["http"][0]["route"][0]["destination"]["host"] = destination
    trace = run(documents, "agent: pc", calls={"default/mocka": [parse_call("mockb", "default")]})
    arrival = trace.root.arrivals[0].calls[0].arrivals[0]
    assert arrival.status == 503 and arrival.workload is None, text(trace)
    assert arrival.reason == (f"Istio takes destination host {destination} literally (it expands only names without "
                              "dots), so it names no Service and requests get 503 (no cluster): write "
                              "'mockb.default.svc.cluster.local', or the short name 'mockb' (the VirtualService is "
                              "in namespace default)")
    assert "mockb" not in served(trace)
    assert arrival.reason in text(trace)


@pytest.mark.parametrize("destination,served_by", [
    ("mockb", None), ("mockb.default.svc.cluster.local", {"mockb-base": Fraction(1, 2), "mockb-gray": Fraction(1, 2)})])
def test_a_short_destination_resolves_in_the_virtual_services_namespace(destination, served_by):
    """vs-mockb moved to namespace edge (its host the FQDN): a short destination there means edge/mockb."""
    documents = sample("fulllink")
    vs = find(documents, "VirtualService", "vs-mockb")
    vs.body["metadata"]["namespace"] = "edge"
    vs.body["spec"]["hosts"] = ["mockb.default.svc.cluster.local"]
    vs.body["spec"]["http"] = [{"route": [{"destination": {"host": destination}}]}]
    documents[documents.index(vs)] = Document(vs.body, vs.source, vs.index)
    trace = run(documents, calls={"default/mocka": [parse_call("mockb", "default")]})
    hop = trace.root.arrivals[0].calls[0]
    assert hop.virtual_service == "edge/vs-mockb", text(trace)
    if served_by is None:
        assert hop.arrivals[0].status == 503 and hop.arrivals[0].reason == "no Service edge/mockb in the inputs"
    else:
        assert served(trace)["mockb"] == served_by


def test_gateway_prefers_the_most_specific_host():
    documents = sample("fulllink")
    specific = yaml.safe_load("""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: vs-shop, namespace: default}
spec:
  gateways: [default/sample-gateway]
  hosts: [shop.example.com]
  http:
  - route: [{destination: {host: mockb, subset: version-base}}]
""")
    documents.append(Document(specific, "test", 1))
    assert run(documents, url="GET http://shop.example.com/").root.virtual_service == "default/vs-shop"
    assert run(documents, url="GET http://other.example.com/").root.virtual_service == "default/vs-mocka"


def test_unrouted_requests_and_missing_objects():
    documents = weighted_fulllink((100, 0), (100, 0))
    vs = find(documents, "VirtualService", "vs-mocka")
    vs.body["spec"]["http"] = [{"match": [{"uri": {"prefix": "/api"}}],
                                "route": [{"destination": {"host": "mocka", "subset": "nope"}}]},
                               {"match": [{"uri": {"prefix": "/other"}}],
                                "route": [{"destination": {"host": "ghost"}}]}]
    not_found = run(documents, url="GET http://example.com/")
    assert not_found.root.status == 404 and "no http rule" in not_found.root.reason
    no_subset = run(documents, url="GET http://example.com/api")
    assert no_subset.root.arrivals[0].status == 503
    assert "has no subset nope" in no_subset.root.arrivals[0].reason
    no_service = run(documents, url="GET http://example.com/other")
    assert no_service.root.arrivals[0].reason == "no Service default/ghost in the inputs"


def test_mesh_entry_without_a_virtual_service_uses_the_whole_service():
    trace = run(sample("fulllink"), url="GET http://mocka:8000/", entry="mesh")
    assert served(trace)["mocka"] == {"mocka-base": Fraction(1, 2), "mocka-gray": Fraction(1, 2)}
    assert trace.root.coloring == []


def test_envoy_filters_that_do_not_reach_the_gateway_are_reported():
    documents = [d for d in sample("fulllink") if d.kind != "EnvoyFilter"]
    spec = ColoringSpec("my-request-id", (Rule((Condition("header", "agent", "exact", "pc"),), "canary"),))
    wrong_namespace = envoy_filter(spec, GatewayTarget("in-default", "default"))
    v2 = envoy_filter(spec, GatewayTarget("old-api", "istio-system"))
    v2["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["@type"] = \
        "type.googleapis.com/envoy.config.filter.http.lua.v2.Lua"
    other_selector = envoy_filter(spec, GatewayTarget("egress", "istio-system", {"istio": "egressgateway"}))
    documents += [Document(body, "test", i) for i, body in enumerate((wrong_namespace, v2, other_selector), 1)]
    trace = run(documents, "agent: pc")
    assert trace.root.coloring == []
    notes = " | ".join(trace.root.notes)
    assert "EnvoyFilter default/in-default does not apply: it is in namespace default" in notes
    assert "removed v2 Lua API" in notes
    assert served(trace)["mocka"] == {"mocka-base": 1}
    assert run(documents, "agent: pc", gateway_namespace="default").root.coloring  # a gateway in default


def test_a_failing_coloring_script_is_reported_and_the_request_goes_on():
    documents = [d for d in sample("fulllink") if d.kind != "EnvoyFilter"]
    body = envoy_filter(ColoringSpec("my-request-id"), GatewayTarget("broken"))
    body["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["inlineCode"] = (
        'function envoy_on_request(h)\n  h:headers():replace("my-request-id", "canary")\n  error("boom")\nend\n')
    documents.append(Document(body, "test", 1))
    trace = run(documents)
    step = trace.root.coloring[0]
    assert step.error == "inlineCode:3: boom" and any("continue" in n for n in step.notes)
    assert served(trace)["mocka"] == {"mocka-gray": 1}


# ---------------------------------------------------------------------------------------------- call graph

def test_calls_from_flags_annotations_and_cycles():
    documents = sample("fulllink")
    find(documents, "Service", "mockb").body["metadata"]["annotations"] = {"graylane.io/calls": "mocka"}
    trace = run(documents, "agent: pc")
    mockb = trace.root.arrivals[0].calls[0].arrivals[0]
    assert any("a cycle" in n for n in mockb.notes) and mockb.calls == []
    flagged = run(sample("fulllink"), calls={"default/mocka": []})
    assert trace.root.arrivals[0].calls and flagged.root.arrivals[0].calls == []
    assert parse_call("POST http://mockb.other:9000/x", "default").__dict__ == {
        "service": "other/mockb", "method": "POST", "path": "/x", "port": 9000}
    with pytest.raises(InvalidInputError):
        parse_call("http://example.com.x.y/", "default")
    find(documents, "Service", "mockb").body["metadata"]["annotations"] = {"graylane.io/calls": "http://a:b/"}
    with pytest.raises(InvalidInputError) as caught:
        run(documents)
    assert caught.value.field == "metadata.annotations[graylane.io/calls]" and "bad port" in str(caught.value)


def test_propagate_everything():
    trace = run(sample("fulllink"), "agent: pc", "x-b3-traceid: 1", propagate=["*"])
    assert dict(trace.root.arrivals[0].calls[0].request.headers) == {
        "agent": "pc", "x-b3-traceid": "1", "my-request-id": "canary"}


def test_expectations_cover_unreached_services():
    trace = run(sample("fulllink"), expect=["ghost=version=base", "default/mocka=version=base", "mockb.default=app=mockb"])
    assert [e.ok for e in trace.expectations] == [False, True, True]
    assert trace.expectations[0].details == [
        "the request never reaches ghost; nothing in the call graph calls it: add --calls CALLER=ghost, a "
        "graylane.io/calls annotation on the caller's Service, or the service to a FullLinkGray spec"]
    with pytest.raises(InvalidInputError):
        parse_expectation("mocka=version")
    check_expectations(trace, [])


# ---------------------------------------------------------------------------------------------- CLI

def test_cli_seed_scenario_exit_codes_and_trace():
    ok = run_graylane("simulate", "-f", str(SAMPLES / "fulllink"), "--request", "GET http://example.com/",
                      "-H", "agent: pc", "--expect", "mocka=version=canary", "--expect", "mockb=version=canary")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stderr == ""
    assert "coloring  EnvoyFilter istio-system/mock-chain-coloring: my-request-id: canary (added), clearRouteCache()" \
        in ok.stdout
    assert "route     VirtualService default/vs-mocka http[0]: match[0]: header my-request-id exact 'canary'" \
        in ok.stdout
    assert "ok   mockb=version=canary" in ok.stdout
    failed = run_graylane("simulate", "-f", str(SAMPLES / "fulllink"), "--request", "GET http://example.com/",
                          "-H", "my-request-id: canary", "--expect", "mocka=version=canary")
    assert failed.returncode == 3
    assert "FAIL mocka=version=canary" in failed.stdout
    assert "100% of requests reach Deployment default/mocka-base (version=base)" in failed.stdout


def test_cli_json_output():
    result = run_graylane("simulate", "-f", str(SAMPLES / "three-hop"), "--request", "http://shop.example.com/",
                          "-H", "cookie: lane=gray", "-o", "json", "--expect", "payments=version=gray")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["entry"] == "gateway"
    assert data["propagatedHeaders"] == ["x-lane", "x-request-id"]
    assert data["hop"]["coloring"][0]["changes"] == [{"action": "added", "header": "x-lane", "old": None,
                                                       "new": "gray"}]
    (path,) = data["paths"]
    assert path["share"] == {"percent": 100.0, "fraction": "1/1"}
    assert [s["workload"] for s in path["steps"]] == ["Deployment shop/web-gray", "Deployment shop/orders-v1",
                                                     "Deployment shop/payments-gray"]
    assert to_data(run(sample("fulllink")))["expectations"] == []


@pytest.mark.parametrize("args,message", [
    (["--request", "GET http://example.com/", "--expect", "mocka"], "expected SERVICE=LABEL=VALUE"),
    (["--request", "FETCH http://x/"], "unknown method"),
    (["--request", "GET http://example.com/", "-H", "no colon"], "expected 'name: value'"),
    (["--request", "GET http://example.com/", "--gateway", "nope"], "no such Gateway"),
    (["--request", "GET http://example.com/", "--calls", "mocka"], "expected SERVICE=CALLEE"),
    (["--request", "GET http://example.com/", "--step", "0"], "--step is 1-based"),
    (["--request", "GET http://example.com/", "--gateway-label", "x"], "KEY=VALUE"),
])
def test_cli_errors_are_one_line_with_nothing_on_stdout(args, message):
    result = run_graylane("simulate", "-f", str(SAMPLES / "fulllink"), *args)
    assert result.returncode == 1, result.stdout
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_reports_a_coloring_syntax_error_with_its_line(tmp_path):
    bad = yaml.safe_load((SAMPLES / "fulllink" / "envoyfilter.yaml").read_text())
    bad["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["inlineCode"] = "function envoy_on_request(h)\n  if\nend\n"
    (tmp_path / "ef.yaml").write_text(yaml.safe_dump(bad))
    for name in ("mocka.yaml", "mockb.yaml", "gateway.yaml"):
        (tmp_path / name).write_text((SAMPLES / "fulllink" / name).read_text())
    result = run_graylane("simulate", "-f", str(tmp_path), "--request", "GET http://example.com/")
    assert result.returncode == 1 and result.stdout == ""
    assert "EnvoyFilter istio-system/mock-chain-coloring configPatches[0] inlineCode:3: does not compile" in result.stderr


def test_gateways_on_one_workload_merge_and_the_most_specific_host_wins():
    trace = run(read_documents([str(SAMPLES)]), "x-canary: 1", url="GET http://books.example.com/")
    assert "default/sample-gateway, bookstore/books-gateway" in trace.root.proxy
    assert trace.root.virtual_service == "bookstore/reviews"
    # every coloring filter on the shared gateway runs, in name order
    assert [s.envoy_filter.split("/")[1] for s in trace.root.coloring] == [
        "bookstore-coloring", "checkout-coloring", "mock-chain-coloring"]


def test_cli_render_failure_suggests_no_render():
    result = run_graylane("simulate", "-f", str(SAMPLES / "fulllink" / "trafficrouting.yaml"),
                          "-f", str(SAMPLES / "fulllink" / "gateway.yaml"), "--request", "GET http://example.com/")
    assert result.returncode == 1 and result.stdout == ""
    assert "not among the inputs" in result.stderr and "--no-render" in result.stderr
