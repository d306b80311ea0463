"""Lanes that never leak (issue 15): the built-in VirtualService script scopes lane rules to the routes of the
service being released, checked with an independent model of Istio's first-match routing (tests/istio_model.py,
not the simulator), for the issue's scenario and its variants, through the real ``graylane`` command."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from engine.checks.analyzers.lanes import find_leaks
from engine.errors import ScriptError
from engine.lua.sandbox import LuaSandbox, Script
from engine.lua.scripts import builtin_root
from engine.routing.render import network_result
from engine.routing.script_input import OriginalState, build_script_input
from engine.routing.strategy import TrafficStrategy
from istio_model import LaneExpectation, Request, route

CART_TR = """
apiVersion: rollouts.kruise.io/v1alpha1
kind: TrafficRouting
metadata: {name: cart-lane, namespace: shop}
spec:
  strategy:
    matches: MATCHES
  objectRef:
  - service: cart
    customNetworkRefs:
    - {apiVersion: networking.istio.io/v1beta1, kind: VirtualService, name: edge}
    - {apiVersion: networking.istio.io/v1beta1, kind: DestinationRule, name: cart}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: cart, namespace: shop}
spec:
  host: cart
  subsets:
  - {name: base, labels: {version: base}}
"""
HEADER_LANE = [{"headers": [{"type": "Exact", "name": "x-lane", "value": "gray"}]}]
QUERY_LANE = [{"queryParams": [{"type": "Exact", "name": "lane", "value": "gray"}]}]


def edge(http: list, hosts: tuple = ("shop.example.com",)) -> dict:
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "edge", "namespace": "shop"},
            "spec": {"hosts": list(hosts), "gateways": ["shop-gateway"], "http": http}}


def to(host: str, **extra) -> dict:
    return {"route": [{"destination": {"host": host}}], **extra}


def render_edge(graylane, tmp_path: Path, virtual_service: dict, matches: list, *flags: str):
    (tmp_path / "edge.yaml").write_text(yaml.safe_dump(virtual_service, sort_keys=False))
    (tmp_path / "tr.yaml").write_text(CART_TR.replace("MATCHES", json.dumps(matches)))
    return graylane("render", "-f", str(tmp_path), "-o", "json", *flags)


def rendered_vs(result) -> dict:
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)["items"]
    return next(item for item in items if item["kind"] == "VirtualService")


def requests_for(spec: dict) -> list[Request]:
    """Requests along every path, method and lane header the VirtualService and the lanes mention."""
    paths = {"/", "/anything", "/cart", "/cart/items", "/pay", "/pay/now", "/basket", "/cart/checkout"}
    for rule in spec.get("http") or []:
        for block in rule.get("match") or []:
            for value in (block.get("uri") or {}).values():
                paths.update({value, value + "/x"})
    headers = [(), (("x-lane", "gray"),), (("x-lane", "blue"),)]
    return [Request(path=path + query, method=method, authority="shop.example.com", headers=header,
                    gateway="shop/shop-gateway")
            for path in sorted(paths) for query in ("", "?lane=gray") for method in ("GET", "POST")
            for header in headers]


def subset_canary(host: str, subset) -> tuple:
    return host, "canary"


def assert_lanes_route_right(original: dict, rendered: dict, matches: list) -> None:
    lanes = LaneExpectation("cart", matches, subset_canary, namespace="shop")
    problems = lanes.check(original["spec"], rendered["spec"], requests_for(original["spec"]))
    assert not problems, "\n".join(problems[:5])


def test_issue_scenario_pay_stays_with_payments(graylane, tmp_path):
    original = edge([{"match": [{"uri": {"prefix": "/cart"}}], **to("cart")},
                     {"match": [{"uri": {"prefix": "/pay"}}], **to("payments")}])
    rendered = rendered_vs(render_edge(graylane, tmp_path, original, HEADER_LANE))
    assert_lanes_route_right(original, rendered, HEADER_LANE)
    spec = rendered["spec"]
    lane = Request("/pay", headers=(("x-lane", "gray"),), authority="shop.example.com", gateway="shop/shop-gateway")
    assert route(spec, lane, "shop").shares() == {("payments", None): 1}
    assert route(spec, Request("/anything", headers=(("x-lane", "gray"),)), "shop").status == 404
    assert route(spec, Request("/cart/1", headers=(("x-lane", "gray"),)), "shop").shares() == {("cart", "canary"): 1}
    assert spec["http"][0] == {"match": [{"headers": {"x-lane": {"exact": "gray"}}, "uri": {"prefix": "/cart"}}],
                               "route": [{"destination": {"host": "cart", "subset": "canary"}}]}


def test_catch_all_after_another_services_rule(graylane, tmp_path):
    original = edge([{"match": [{"uri": {"prefix": "/pay"}}], **to("payments")}, to("cart")])
    rendered = rendered_vs(render_edge(graylane, tmp_path, original, HEADER_LANE))
    assert_lanes_route_right(original, rendered, HEADER_LANE)
    assert [rule["route"][0]["destination"] for rule in rendered["spec"]["http"]] == [
        {"host": "payments"}, {"host": "cart", "subset": "canary"}, {"host": "cart"}]


def test_method_and_uri_rules(graylane, tmp_path):
    original = edge([
        {"match": [{"method": {"exact": "GET"}, "uri": {"prefix": "/cart"}},
                   {"method": {"exact": "POST"}, "uri": {"exact": "/cart/checkout"}}], **to("cart")},
        {"match": [{"uri": {"prefix": "/cart"}}], **to("cart-legacy")},
        {"match": [{"uri": {"prefix": "/pay"}}], **to("payments")}])
    rendered = rendered_vs(render_edge(graylane, tmp_path, original, HEADER_LANE))
    assert_lanes_route_right(original, rendered, HEADER_LANE)
    lane = {"x-lane": {"exact": "gray"}}
    assert rendered["spec"]["http"][0]["match"] == [{"headers": lane, "method": {"exact": "GET"},
                                                     "uri": {"prefix": "/cart"}}]
    assert rendered["spec"]["http"][1]["match"] == [{"headers": lane, "method": {"exact": "POST"},
                                                     "uri": {"exact": "/cart/checkout"}}]


def test_two_lane_matches_across_two_path_rules(graylane, tmp_path):
    matches = HEADER_LANE + QUERY_LANE
    original = edge([
        {"match": [{"uri": {"prefix": "/cart"}}], **to("cart"), "timeout": "5s"},
        {"match": [{"uri": {"prefix": "/pay"}}], **to("payments")},
        {"match": [{"uri": {"prefix": "/basket"}}], **to("cart"), "rewrite": {"uri": "/cart"}}])
    rendered = rendered_vs(render_edge(graylane, tmp_path, original, matches))
    assert_lanes_route_right(original, rendered, matches)
    http = rendered["spec"]["http"]
    assert len(http) == 3 + 4
    assert [rule.get("timeout") for rule in http[:2]] == ["5s", "5s"]
    assert [rule.get("rewrite") for rule in http[4:6]] == [{"uri": "/cart"}, {"uri": "/cart"}]


def test_single_service_virtual_service_equals_kruise(graylane, tmp_path):
    """With one catch-all route the output is what Kruise's own script gives (one lane rule on top)."""
    original = edge([{"route": [{"destination": {"host": "cart", "subset": "base"}}]}])
    rendered = rendered_vs(render_edge(graylane, tmp_path, original, HEADER_LANE))
    assert rendered["spec"]["http"] == [
        {"match": [{"headers": {"x-lane": {"exact": "gray"}}}],
         "route": [{"destination": {"host": "cart", "subset": "canary"}}]},
        {"route": [{"destination": {"host": "cart", "subset": "base"}}]}]


def test_a_lane_that_contradicts_a_rule_gets_no_rule_and_says_so(graylane, tmp_path):
    original = edge([{"match": [{"headers": {"x-lane": {"exact": "blue"}}}], **to("cart")},
                     {"match": [{"uri": {"prefix": "/cart"}}], **to("cart")}])
    result = render_edge(graylane, tmp_path, original, HEADER_LANE, "-v")
    rendered = rendered_vs(result)
    assert_lanes_route_right(original, rendered, HEADER_LANE)
    assert len(rendered["spec"]["http"]) == 3
    assert "no lane rule for http[0] match[0]" in result.stderr
    assert "exact 'blue'" in result.stderr


def test_a_combination_graylane_cannot_express_is_an_error_naming_the_input(graylane, tmp_path):
    original = edge([{"match": [{"uri": {"regex": "/cart/.*"}}], **to("cart")}])
    result = render_edge(graylane, tmp_path, original, [{"path": {"type": "PathPrefix", "value": "/cart/new"}}])
    assert result.returncode == 1 and result.stdout == ""
    line = result.stderr.strip()
    assert line.startswith(f"error: {tmp_path / 'edge.yaml'}: document 1: VirtualService shop/edge: script ")
    assert "cannot combine" in line and "Traceback" not in result.stderr
    found = graylane("validate", "-f", str(tmp_path))  # validate foresees the refusal (GL0404), naming the match
    assert found.returncode == 1
    assert (f"error GL0404 {tmp_path / 'tr.yaml'}#1 spec.strategy.matches[0]: the lane match cannot be combined with "
            "http[0] match[0] of VirtualService shop/edge into one Istio match (the rule's uri regex '/cart/.*' and "
            "the lane's uri prefix '/cart/new')") in found.stdout


@pytest.mark.parametrize("rule_match, lane, refused", [
    ({"uri": {"regex": "/cart/.*"}}, [{"path": {"type": "RegularExpression", "value": "/cart/.*"}}], False),
    ({"uri": {"prefix": "/cart"}}, [{"path": {"type": "RegularExpression", "value": "/c.*"}}], True),
    ({"uri": {"prefix": "/cart"}, "ignoreUriCase": True}, [{"path": {"type": "PathPrefix", "value": "/cart/x"}}],
     True),
    ({"uri": {"prefix": "/cart"}, "ignoreUriCase": True}, [{"path": {"type": "Exact", "value": "/CART/x"}}], False),
    ({"headers": {"x-user": {"regex": "a.*"}}},
     [{"headers": [{"type": "Exact", "name": "X-User", "value": "ab"}]}], True),
    ({"queryParams": {"id": {"prefix": "7"}}}, [{"queryParams": [{"type": "RegularExpression", "name": "id",
                                                                    "value": "7.*"}]}], True),
    # a contradiction anywhere wins: no request satisfies both, so there is nothing to express (no lane rule)
    ({"uri": {"prefix": "/cart"}, "headers": {"x-user": {"regex": "a.*"}}},
     [{"path": {"type": "Exact", "value": "/pay"}, "headers": [{"type": "Exact", "name": "x-user", "value": "a"}]}],
     False),
    ({"headers": {"b-user": {"regex": "a.*"}, "a-user": {"exact": "x"}}},
     [{"headers": [{"type": "Exact", "name": "b-user", "value": "a"}, {"type": "Exact", "name": "a-user",
                                                                          "value": "y"}]}], False),
])
def test_validate_and_render_agree_on_what_the_script_cannot_combine(graylane, tmp_path, rule_match, lane, refused):
    original = edge([{"match": [rule_match], **to("cart")}, to("cart")])
    rendered = render_edge(graylane, tmp_path, original, lane)
    found = graylane("validate", "-f", str(tmp_path))
    assert ("GL0404" in found.stdout) == refused == (rendered.returncode == 1), found.stdout + rendered.stderr
    if refused:
        assert "cannot combine them into one Istio match" in rendered.stderr
    else:
        assert_lanes_route_right(original, rendered_vs(rendered), lane)


# ------------------------------------------------------------------------------ properties (Hypothesis)

# The same examples every run (no flaky CI, no example database written into the tree).
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                    database=None)
VS_SCRIPT = Path(str(builtin_root())) / "networking.istio.io" / "VirtualService" / "trafficRouting.lua"
SANDBOX = LuaSandbox()
PATHS = ["/a", "/a/b", "/b", "/c"]

string_condition = st.builds(lambda kind, value: {kind: value}, st.sampled_from(["exact", "prefix"]),
                             st.sampled_from(PATHS))
lane_header_condition = st.sampled_from([{"exact": "gray"}, {"exact": "blue"}, {"prefix": "gr"}, {}])
match_block = st.builds(
    lambda uri, post, lane: {key: value for key, value in (("uri", uri), ("method", {"exact": "POST"} if post else None),
                                                            ("headers", {"x-lane": lane} if lane is not None else None))
                             if value is not None},
    st.one_of(st.none(), string_condition), st.booleans(), st.one_of(st.none(), lane_header_condition))
http_rule = st.builds(
    lambda blocks, hosts: ({"match": blocks} if blocks else {}) | {
        "route": [{"destination": {"host": host}, **({"weight": weight} if len(hosts) > 1 else {})}
                  for host, weight in zip(hosts, [60, 40])]},
    st.lists(match_block, max_size=2), st.lists(st.sampled_from(["svc", "other", "third"]), min_size=1, max_size=2,
                                                 unique=True))
lane_match = st.builds(
    lambda path, headers, query: {key: value for key, value in (("path", path), ("headers", headers),
                                                                 ("queryParams", query)) if value},
    st.one_of(st.none(), st.builds(lambda kind, value: {"type": kind, "value": value},
                                   st.sampled_from(["Exact", "PathPrefix"]), st.sampled_from(PATHS))),
    st.sampled_from([[], [{"type": "Exact", "name": "x-lane", "value": "gray"}],
                     [{"type": "RegularExpression", "name": "x-user", "value": "u[0-9]"}]]),
    st.sampled_from([[], [{"type": "Exact", "name": "lane", "value": "gray"}]]))
PROBES = [Request(path=path + query, method=method, authority="svc",
                  headers=tuple(h for h in (lane, user) if h))
          for path in PATHS + ["/a/bc", "/z"] for query in ("", "?lane=gray") for method in ("GET", "POST")
          for lane in (None, ("x-lane", "gray"), ("x-lane", "blue")) for user in (None, ("x-user", "u1"))]


def run_builtin(spec: dict, matches: list, subset_level: bool) -> dict:
    script = Script("networking.istio.io/VirtualService", VS_SCRIPT.read_text(), str(VS_SCRIPT))
    obj = build_script_input(OriginalState(json.loads(json.dumps(spec)), {}, {}), TrafficStrategy(matches=matches),
                             "svc", "svc" if subset_level else "svc-canary")
    return network_result(script, SANDBOX.run(script, obj).value).spec


def canary_of(subset_level: bool):
    return (lambda host, subset: (host, "canary")) if subset_level else (lambda host, subset: ("svc-canary", None))


@PROPERTY
@given(st.lists(http_rule, min_size=1, max_size=5), st.lists(lane_match, min_size=1, max_size=2), st.booleans())
def test_lanes_never_leak_on_any_virtual_service(rules, matches, subset_level):
    """Any VirtualService of several services, any lane: lane requests the original sent to svc go to its canary,
    every other request is routed exactly as before (Istio's first match, modelled independently)."""
    spec = {"hosts": ["svc"], "http": rules}
    try:
        rendered = run_builtin(spec, matches, subset_level)
    except ScriptError as error:  # svc is only reachable after a catch-all rule, or not routed at all
        assert "takes every request first" in error.message or "sends traffic to service svc" in error.message
        return
    problems = LaneExpectation("svc", matches, canary_of(subset_level)).check(spec, rendered, PROBES)
    assert not problems, json.dumps(rendered, indent=1) + "\n" + "\n".join(problems[:3])
    assert find_leaks(rendered, None) == []


def kruise_style(spec: dict, matches: list, subset_level: bool) -> dict:
    """What Kruise's script makes of the same lane: the bare lane match on top of spec.http."""
    def istio(match: dict) -> dict:
        result: dict = {}
        if match.get("path"):
            result["uri"] = {"exact" if match["path"]["type"] == "Exact" else "prefix": match["path"]["value"]}
        if match.get("headers"):
            result["headers"] = {h["name"]: {"exact" if h["type"] == "Exact" else "regex": h["value"]}
                                 for h in match["headers"]}
        if match.get("queryParams"):
            result["queryParams"] = {q["name"]: {"exact": q["value"]} for q in match["queryParams"]}
        return result
    destination = {"host": "svc", "subset": "canary"} if subset_level else {"host": "svc-canary"}
    return {"hosts": spec["hosts"],
            "http": [{"match": [istio(m)], "route": [{"destination": destination}]} for m in matches] + spec["http"]}


@PROPERTY
@given(st.lists(http_rule, min_size=1, max_size=5), st.lists(lane_match, min_size=1, max_size=2), st.booleans())
def test_leak_analyzer_agrees_with_the_model(rules, matches, subset_level):
    """GL0401 fires on a Kruise-style (unscoped) lane exactly when the independent model finds a request the lane
    takes that the original did not send to svc, and each example it gives really leaks."""
    spec = {"hosts": ["svc"], "http": rules}
    leaky = kruise_style(spec, matches, subset_level)
    model_leak = any(
        after.rule is not None and after.rule < len(matches)
        and (before.status != 200 or any(host != "svc" for host, _subset in before.shares()))
        for before, after in ((route(spec, probe), route(leaky, probe)) for probe in PROBES))
    leaks = find_leaks(leaky, None)
    assert bool(leaks) == model_leak, (json.dumps(leaky), [leak.describe() for leak in leaks])
    for leak in leaks:
        probe = leak.probe
        example = Request(path=probe.path + ("?" + "&".join(f"{k}={v}" for k, v in probe.query) if probe.query else ""),
                          method=probe.method, authority=probe.authority, headers=probe.headers)
        before, after = route(spec, example), route(leaky, example)
        assert after.rule == leak.rule and before.shares() != {("svc", None): Fraction(1)}


# ------------------------------------------------------------------------------------ the leak analyzer

LEAKY_EDGE = edge([
    {"match": [{"headers": {"x-lane": {"exact": "gray"}}}], "route": [{"destination": {"host": "cart",
                                                                                        "subset": "canary"}}]},
    {"match": [{"uri": {"prefix": "/cart"}}], **to("cart")},
    {"match": [{"uri": {"prefix": "/pay"}}], **to("payments")},
    {"match": [{"uri": {"exact": "/old"}}], "redirect": {"uri": "/new"}}])

KRUISE_LIKE_SCRIPT = """
-- Kruise's way: the bare lane match on top of spec.http
local spec = obj.data.spec
for i = #obj.matches, 1, -1 do
  local headers = {}
  for _, h in ipairs(obj.matches[i].headers or {}) do headers[h.name] = {exact = h.value} end
  table.insert(spec.http, 1, {match = {{headers = headers}},
                              route = {{destination = {host = obj.stableService, subset = "canary"}}}})
end
return obj.data
"""


def test_validate_catches_a_hand_written_leaky_rule(graylane, tmp_path):
    (tmp_path / "edge.yaml").write_text(yaml.safe_dump(LEAKY_EDGE, sort_keys=False))
    result = graylane("validate", "-f", str(tmp_path / "edge.yaml"), "-o", "json")
    assert result.returncode == 1
    leaks = [f for f in json.loads(result.stdout) if f["code"] == "GL0401"]
    assert len(leaks) == 1 and leaks[0]["path"] == "spec.http[0]" and leaks[0]["check"] == "LaneLeak"
    message = leaks[0]["message"]
    assert "canary of cart" in message and "spec.http[2] sends to payments" in message
    assert "e.g. GET shop.example.com/pay with header x-lane: gray" in message
    # the example is real: Istio's first match sends it to cart's canary, the rules after would send it to payments
    example = Request("/pay", headers=(("x-lane", "gray"),), authority="shop.example.com", gateway="shop/shop-gateway")
    assert route(LEAKY_EDGE["spec"], example, "shop").rule == 0
    assert route({"http": LEAKY_EDGE["spec"]["http"][1:]}, example, "shop").shares() == {("payments", None): 1}


@pytest.mark.parametrize("host,lost", [
    ("cart", None), ("cart.shop.svc.cluster.local", None),            # Istio: Service cart of shop, the lane's own
    ("cart.shop", "cart.shop"), ("cart.shop.svc", "cart.shop.svc"),    # literal: no Service at all
    ("cart.other.svc.cluster.local", "cart.other.svc.cluster.local"),  # another namespace's cart
    ("cart.example.com", "cart.example.com"), ("*.shop.svc.cluster.local", "*.shop.svc.cluster.local")])
def test_a_lane_is_scoped_by_istios_host_resolution(graylane, tmp_path, host, lost):
    """A lane for cart of namespace shop before a catch-all rule: it leaks unless the catch-all's host is, by Istio's
    rules, Service cart of shop (short in the VirtualService's namespace, or the FQDN)."""
    lane = {"match": [{"headers": {"x-lane": {"exact": "gray"}}}],
            "route": [{"destination": {"host": "cart", "subset": "canary"}}]}
    (tmp_path / "edge.yaml").write_text(yaml.safe_dump(edge([lane, to(host)]), sort_keys=False))
    result = graylane("validate", "-f", str(tmp_path / "edge.yaml"), "-o", "json")
    leaks = [f for f in json.loads(result.stdout) if f["code"] == "GL0401"]
    if lost is None:
        assert leaks == [], leaks
    else:
        assert [f["path"] for f in leaks] == ["spec.http[0]"]
        assert f"requests that spec.http[1] sends to {lost}: e.g." in leaks[0]["message"]


def test_validate_passes_a_scoped_lane(graylane, tmp_path):
    scoped = edge([{"match": [{"headers": {"x-lane": {"exact": "gray"}}, "uri": {"prefix": "/cart"}}],
                    "route": [{"destination": {"host": "cart", "subset": "canary"}}]},
                   *LEAKY_EDGE["spec"]["http"][1:]])
    (tmp_path / "edge.yaml").write_text(yaml.safe_dump(scoped, sort_keys=False))
    result = graylane("validate", "-f", str(tmp_path / "edge.yaml"), "-o", "json")
    assert "GL0401" not in result.stdout, result.stdout


def test_leaks_into_404_and_redirects_are_leaks_too(graylane, tmp_path):
    only_cart = edge([LEAKY_EDGE["spec"]["http"][0], LEAKY_EDGE["spec"]["http"][1],
                      LEAKY_EDGE["spec"]["http"][3]])
    (tmp_path / "edge.yaml").write_text(yaml.safe_dump(only_cart, sort_keys=False))
    result = graylane("validate", "-f", str(tmp_path / "edge.yaml"))
    assert result.returncode == 1
    assert "requests that spec.http[2] answers with a redirect: e.g. GET shop.example.com/old" in result.stdout


def test_render_refuses_a_script_that_leaks_and_force_renders_it(graylane, tmp_path):
    scripts = tmp_path / "scripts" / "networking.istio.io" / "VirtualService"
    scripts.mkdir(parents=True)
    (scripts / "trafficRouting.lua").write_text(KRUISE_LIKE_SCRIPT)
    original = edge([{"match": [{"uri": {"prefix": "/cart"}}], **to("cart")},
                     {"match": [{"uri": {"prefix": "/pay"}}], **to("payments")}])
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    refused = render_edge(graylane, inputs, original, HEADER_LANE, "--lua-dir", str(tmp_path / "scripts"))
    assert refused.returncode == 1 and refused.stdout == ""
    line = refused.stderr.strip()
    assert line.startswith(f"error: {inputs / 'edge.yaml'}: document 1: spec.http[0]: the traffic-routing script's "
                           "output for VirtualService shop/edge would fail requests: this rule sends requests to the "
                           "canary of cart, but it also catches requests that spec.http[2] sends to payments")
    assert line.endswith("[GL0401 LaneLeak]; --force renders it anyway")
    forced = render_edge(graylane, inputs, original, HEADER_LANE, "--lua-dir", str(tmp_path / "scripts"), "--force")
    assert forced.returncode == 0
    leaky = rendered_vs(forced)
    assert route(leaky["spec"], Request("/pay", headers=(("x-lane", "gray"),)), "shop").shares() == {
        ("cart", "canary"): 1}
    assert forced.stderr.startswith(f"warning: {inputs / 'edge.yaml'}: document 1: spec.http[0]: this rule sends")
    assert "[GL0401 LaneLeak]" in forced.stderr and "warning" not in forced.stdout


def test_rendering_the_rendered_object_again_and_restoring_it(graylane, tmp_path):
    """Idempotent (a rendered object renders from its stored original, so lanes never stack) and restored exactly."""
    original = edge([{"match": [{"uri": {"prefix": "/cart"}}], **to("cart")},
                     {"match": [{"uri": {"prefix": "/pay"}}], **to("payments")}])
    first = render_edge(graylane, tmp_path, original, HEADER_LANE)
    assert first.returncode == 0, first.stderr
    again_dir = tmp_path / "again"
    again_dir.mkdir()
    (again_dir / "rendered.json").write_text(first.stdout)
    (again_dir / "tr.yaml").write_text(CART_TR.replace("MATCHES", json.dumps(HEADER_LANE)).split("---")[0])
    again = graylane("render", "-f", str(again_dir), "-o", "json")
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    restored = graylane("restore", "-f", str(again_dir / "rendered.json"), "-o", "json")
    items = json.loads(restored.stdout)["items"]
    assert next(i for i in items if i["kind"] == "VirtualService") == original


# ------------------------------------------------------------------------------ Argo Rollouts' service names

ARGO_CHECKOUT = """\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: checkout, namespace: shop}
spec:
  selector: {matchLabels: {app: checkout}}
  template:
    metadata: {labels: {app: checkout}}
    spec: {containers: [{name: app, image: example/checkout:1}]}
  strategy:
    canary:
      canaryService: checkout-canary
      stableService: checkout-stable
      trafficRouting:
        istio:
          virtualService: {name: edge, routes: [primary]}
      steps:
      - setWeight: 10
      - pause: {}
"""


def _argo_edge(tmp_path: Path, http: list) -> None:
    (tmp_path / "edge.yaml").write_text(yaml.safe_dump(edge(http), sort_keys=False))
    (tmp_path / "rollout.yaml").write_text(ARGO_CHECKOUT)


def test_an_argo_host_level_split_whose_stable_service_is_not_named_like_the_canary_is_no_leak(graylane, tmp_path):
    """Argo's stableService need not be the canary's name without -canary: checkout-canary stands for
    checkout-stable here, so the split rule is no lane rule catching payments' requests."""
    _argo_edge(tmp_path, [{"name": "primary", "match": [{"uri": {"prefix": "/checkout"}}],
                           "route": [{"destination": {"host": "checkout-stable"}, "weight": 100},
                                     {"destination": {"host": "checkout-canary"}, "weight": 0}]},
                          {"name": "pay", **to("payments")}])
    found = graylane("validate", "-f", str(tmp_path))
    assert found.returncode == 0 and "GL0401" not in found.stdout, found.stdout
    result = graylane("render", "-f", str(tmp_path), "-o", "json")
    assert result.returncode == 0, result.stderr
    assert [e["weight"] for e in json.loads(result.stdout)["spec"]["http"][0]["route"]] == [90, 10]
    simulated = graylane("simulate", "-f", str(tmp_path), "--request", "GET http://shop.example.com/pay")
    assert "LEAK" not in simulated.stdout and "captures" not in simulated.stdout, simulated.stdout


def test_a_header_route_to_an_argo_canary_that_catches_another_services_requests_still_leaks(graylane, tmp_path):
    _argo_edge(tmp_path, [{"name": "lane", "match": [{"headers": {"x-lane": {"exact": "gray"}}}],
                           **to("checkout-canary")},
                          {"name": "primary", "match": [{"uri": {"prefix": "/checkout"}}],
                           "route": [{"destination": {"host": "checkout-stable"}, "weight": 100},
                                     {"destination": {"host": "checkout-canary"}, "weight": 0}]},
                          {"name": "pay", **to("payments")}])
    found = graylane("validate", "-f", str(tmp_path))
    assert found.returncode == 1
    assert ("error GL0401 " + str(tmp_path / "edge.yaml") + "#1 spec.http[0]: this rule sends requests to the canary "
            "of checkout-stable, but it also catches requests that spec.http[2] sends to payments") in found.stdout


# ------------------------------------------------------------------------------ GL0404 mirrors the script

combinable = st.sampled_from([{"exact": "/a"}, {"prefix": "/a"}, {"prefix": "/b"}, {"regex": "/a.*"},
                              {"regex": "/b.*"}, {}])
header_value = st.sampled_from([{"exact": "gray"}, {"prefix": "gr"}, {"regex": "g.*"}, {"regex": "*"}, {}])
rule_match_block = st.builds(
    lambda uri, case, header, query, without: {key: value for key, value in (
        ("uri", uri), ("ignoreUriCase", case or None), ("headers", {"X-Lane": header} if header is not None else None),
        ("queryParams", {"lane": query} if query is not None else None),
        ("withoutHeaders", {"x-user": without} if without is not None else None)) if value is not None},
    st.one_of(st.none(), combinable), st.booleans(), st.one_of(st.none(), header_value),
    st.one_of(st.none(), header_value), st.one_of(st.none(), header_value))
kruise_match = st.builds(
    lambda path, headers, query: {key: value for key, value in (("path", path), ("headers", headers),
                                                                 ("queryParams", query)) if value},
    st.one_of(st.none(), st.builds(lambda kind, value: {"type": kind, "value": value},
                                   st.sampled_from(["Exact", "PathPrefix", "RegularExpression"]),
                                   st.sampled_from(["/a", "/a/b", "/a.*"]))),
    st.lists(st.builds(lambda kind, name, value: {"type": kind, "name": name, "value": value},
                       st.sampled_from(["Exact", "RegularExpression"]), st.sampled_from(["x-lane", "x-user"]),
                       st.sampled_from(["gray", "g.*"])), max_size=2, unique_by=lambda h: h["name"]),
    st.sampled_from([[], [{"type": "Exact", "name": "lane", "value": "gray"}],
                     [{"type": "RegularExpression", "name": "lane", "value": "g.*"}]]))


@PROPERTY
@given(st.lists(st.lists(rule_match_block, max_size=2), min_size=1, max_size=3),
       st.lists(kruise_match.filter(bool), min_size=1, max_size=2))
def test_the_analyzers_combination_of_matches_is_the_scripts(rule_matches, matches):
    """engine/checks/analyzers/lane_matches.py decides exactly as the built-in script: the script refuses a lane
    ("cannot combine") when and only when the analyzer finds a pair it cannot express, and where both combine, the
    lane rules the script inserts carry the analyzer's combined matches."""
    from engine.checks.analyzers.lane_matches import combine, inexpressible, lane_match as istio_lane_match
    spec = {"hosts": ["svc"], "http": [{**({"match": blocks} if blocks else {}), **to("svc")}
                                       for blocks in rule_matches]}
    lanes = [istio_lane_match(m) for m in matches]
    expected = list(inexpressible(spec["http"], lanes, "svc", "svc-canary"))
    try:
        rendered = run_builtin(spec, matches, False)
    except ScriptError as error:
        if "takes every request first" in error.message:
            return
        assert "cannot combine them into one Istio match" in error.message, error.message
        assert expected, error.message
        assert expected[0][2] in error.message
        return
    assert expected == []
    scoped = []  # the rules that get lane rules: every rule up to the first that takes every request
    for rule in spec["http"]:
        scoped.append(rule)
        if not rule.get("match") or any(not set(block) - {"ignoreUriCase"} for block in rule["match"]):
            break
    combined = [c for rule in scoped for block in (rule.get("match") or [{}]) for lane in lanes
                for c in [combine(block, lane)[0]] if c is not None]
    inserted = [rule["match"][0] for rule in rendered["http"] if rule["route"][0]["destination"]["host"] == "svc-canary"]
    assert inserted == combined
