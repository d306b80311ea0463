"""Istio's admission rules (GL0108-GL0112, GL0205) and the mesh analyzers (GL05xx): each code with a failing and a
passing case through ``graylane validate``, render refusing what Istio would reject, and validate and render
agreeing over the samples and a generated corpus."""
from __future__ import annotations

import copy
from functools import partial
import json

import pytest
import yaml

from istio_cases import APP, INGRESS, deployment, destination_rule, envoy_filter, gateway, service, virtual_service
from helpers import SAMPLES, run_graylane
from routing_corpus import corpus

from engine import inputs
from engine.checks.validate import check_rendered, validate_documents
from engine.documents import Document, parse_documents
from engine.errors import GraylaneError
from engine.routing.render import Engine, render


def traffic_routing(strategy: dict, refs: tuple = ("VirtualService",)) -> dict:
    return {"apiVersion": "rollouts.kruise.io/v1alpha1", "kind": "TrafficRouting",
            "metadata": {"name": "reviews-tr", "namespace": "default"},
            "spec": {"strategy": strategy, "objectRef": [{"service": "reviews", "customNetworkRefs": [
                {"apiVersion": "networking.istio.io/v1", "kind": kind, "name": "reviews"} for kind in refs]}]}}


LANE = {"matches": [{"headers": [{"type": "Exact", "name": "x-lane", "value": "gray"}]}]}
SUBSETS = [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]


def modifier(**operations) -> dict:
    return {**LANE, "requestHeaderModifier": operations}


def routed(vs: dict) -> dict:
    vs = copy.deepcopy(vs)
    vs["spec"]["http"][0]["route"] = [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 90},
                                      {"destination": {"host": "reviews", "subset": "v2"}, "weight": 10}]
    return vs


FULLLINK = {"apiVersion": "graylane.io/v1alpha1", "kind": "FullLinkGray",
            "metadata": {"name": "shop", "namespace": "default"},
            "spec": {"lane": {"header": "x-lane", "value": "gray"},
                     "services": [{"name": "reviews", "release": True}]}}

# code -> (objects with the mistake, the same objects fixed)
CASES = {
    "GL0108": ([traffic_routing(modifier(set=[{"name": "x-traffic-share", "value": "10%"}])), virtual_service()],
               [traffic_routing(modifier(set=[{"name": "x-traffic-share", "value": "10%%"}])), virtual_service()]),
    "GL0109": ([traffic_routing(modifier(remove=["host"])), virtual_service()],
               [traffic_routing(modifier(remove=["x-debug"])), virtual_service()]),
    "GL0110": ([virtual_service(match=[{"headers": {"x lane": {"exact": "gray"}}}])],
               [virtual_service(match=[{"headers": {"x-lane": {"exact": "gray"}}}])]),
    "GL0111": ([virtual_service(match=[{"headers": {"x-lane": {"regex": "g" * 1025}}}])],
               [virtual_service(match=[{"headers": {"x-lane": {"regex": "g" * 1024}}}])]),
    "GL0112": ([traffic_routing({"matches": [{"headers": [{"type": "Exact", "name": "X-Lane", "value": "gray"},
                                                          {"type": "Exact", "name": "x-lane", "value": "blue"}]}]}),
                virtual_service()],
               [traffic_routing({"matches": [{"headers": [{"type": "Exact", "name": "x-lane", "value": "gray"}]},
                                             {"headers": [{"type": "Exact", "name": "x-lane", "value": "blue"}]}]}),
                virtual_service()]),
    "GL0205": ([destination_rule([{"name": "v1", "labels": {"version": "v 1"}}])],
               [destination_rule([{"name": "v1", "labels": {"version": "v1"}}])]),
    "GL0205 FullLinkGray": ([{**FULLLINK, "spec": {**FULLLINK["spec"], "grayLabels": {"lane": "gray one"}}}],
                            [{**FULLLINK, "spec": {**FULLLINK["spec"], "grayLabels": {"lane": "gray-one"}}}]),
    "GL0501": ([virtual_service(hosts=("bookinfo.example.com",), gateways=("bookinfo",))],
               [virtual_service(hosts=("bookinfo.example.com",), gateways=("bookinfo",)), gateway()]),
    "GL0502": ([virtual_service(hosts=("shop.example.com",), gateways=("bookinfo",)), gateway()],
               [virtual_service(hosts=("shop.example.com",), gateways=("bookinfo",)),
                gateway(hosts=("*.example.com",))]),
    "GL0503": ([virtual_service("reviews-a"), virtual_service("reviews-b")],
               [virtual_service("reviews-a"), virtual_service("reviews-b", hosts=("ratings",))]),
    "GL0504": ([virtual_service(hosts=("*",))],
               [virtual_service(hosts=("*",), gateways=("bookinfo",)), gateway(hosts=("*",))]),
    "GL0505": ([virtual_service(), service("reviews", ports=(8080, 9090))],
               [{**virtual_service(), "spec": {"hosts": ["reviews"], "http": [
                   {"route": [{"destination": {"host": "reviews", "port": {"number": 9090}}}]}]}},
                service("reviews", ports=(8080, 9090))]),
    "GL0506": ([routed(virtual_service()), destination_rule([SUBSETS[0], {"name": "v2", "labels": {"version": "v3"}}]),
                *APP],
               [routed(virtual_service()), destination_rule(SUBSETS), *APP]),
    "GL0507": ([envoy_filter(namespace="default", selector={"app": "gateway"}),
                deployment("gateway", {"app": "gateway"}, "edge")],
               [envoy_filter(namespace="edge", selector={"app": "gateway"}),
                deployment("gateway", {"app": "gateway"}, "edge")]),
    "GL0508": ([envoy_filter(name="envoy.lua")], [envoy_filter()]),
    "GL0511": ([envoy_filter(type_url="type.googleapis.com/envoy.config.filter.http.lua.v2.Lua")], [envoy_filter()]),
    "GL0509": ([envoy_filter(priority=None)], [envoy_filter(priority=-10)]),
    "GL0510": ([virtual_service(hosts=("reviews.default.svc",))],
               [virtual_service(hosts=("reviews.default.svc.cluster.local",))]),
    "GL0510 destination name.ns": ([virtual_service(hosts=("reviews",), destination="reviews.default"), *APP],
                                   [virtual_service(hosts=("reviews",), destination="reviews"), *APP]),
    "GL0510 destination name.ns.svc": ([virtual_service(destination="reviews.default.svc"), *APP],
                                       [virtual_service(destination="reviews.default.svc.cluster.local"), *APP]),
    "GL0512": ([virtual_service(namespace="shop", hosts=("reviews.default.svc.cluster.local",)), *APP],
               [virtual_service(namespace="shop", hosts=("reviews.default.svc.cluster.local",),
                                destination="reviews.default.svc.cluster.local"), *APP]),
    "GL0512 same namespace": ([virtual_service(destination="ratings"), *APP],
                              [virtual_service(destination="ratings"), *APP, service("ratings")]),
}


def _validate(objects: list[dict], tmp_path) -> list[dict]:
    path = tmp_path / "input.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    result = run_graylane("validate", "-f", str(path), "-o", "json")
    assert result.returncode in (0, 1) and "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("code", sorted(CASES))
def test_each_code_fails_the_mistake_and_passes_the_fix(code, tmp_path):
    broken, fixed = CASES[code]
    code = code.split()[0]
    found = [f for f in _validate(broken, tmp_path) if f["code"] == code]
    assert found, f"{code} not reported"
    assert all(f["path"] and f["message"] for f in found)
    assert [f for f in _validate(fixed, tmp_path) if f["code"] == code] == []


# The issue's table: each TrafficRouting strategy (or referenced object) Istio would reject once rendered.
REFUSED = {
    "percent": (traffic_routing(modifier(set=[{"name": "x-traffic-share", "value": "10%"}])), {}, "GL0108"),
    "variable": (traffic_routing(modifier(add=[{"name": "x-offer", "value": "50%off"}])), {}, "GL0108"),
    "remove host": (traffic_routing(modifier(remove=["host"])), {}, "GL0109"),
    "remove pseudo-header": (traffic_routing(modifier(remove=[":path"])), {}, "GL0109"),
    "newline": (traffic_routing(modifier(set=[{"name": "x-note", "value": "a\nb"}])), {}, "GL0108"),
    "authority twice": (traffic_routing(modifier(set=[{"name": "host", "value": "other"}])),
                        {"rewrite": {"authority": "reviews.internal"}}, "GL0109"),
    "long regex": (traffic_routing({"matches": [{"headers": [{"type": "RegularExpression", "name": "x-lane",
                                                             "value": "a" * 1100}]}]}), {}, "GL0111"),
    "empty path regex": (traffic_routing({"matches": [{"path": {"type": "RegularExpression", "value": ""}}]}), {},
                         "GL0111"),
    "lookahead": (traffic_routing({"matches": [{"headers": [{"type": "RegularExpression", "name": "user-agent",
                                                            "value": "^(?!curl).*"}]}]}), {}, "GL0106"),
    "backreference": (traffic_routing({"matches": [{"headers": [{"type": "RegularExpression", "name": "x-lane",
                                                                "value": "(a)\\1"}]}]}), {}, "GL0106"),
    "same header twice": (traffic_routing({"matches": [{"headers": [
        {"type": "Exact", "name": "X-Lane", "value": "gray"}, {"type": "Exact", "name": "x-lane", "value": "blue"}]}]}),
        {}, "GL0112"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_render_refuses_what_istio_would_reject_and_validate_agrees(case, tmp_path):
    routing, rule, code = REFUSED[case]
    path = tmp_path / "input.yaml"
    path.write_text(yaml.safe_dump_all([routing, virtual_service(**rule), service("reviews")]))
    rendered = run_graylane("render", "-f", str(path))
    assert rendered.returncode == 1 and rendered.stdout == "", rendered.stdout
    assert rendered.stderr.count("\n") == 1 and "Traceback" not in rendered.stderr
    assert str(path) in rendered.stderr and "document 1" in rendered.stderr or code in rendered.stderr
    validated = run_graylane("validate", "-f", str(path))
    assert validated.returncode == 1 and f"error {code} " in validated.stdout, validated.stdout


def test_tcp_routes_get_no_headers_from_the_header_modifier(tmp_path):
    vs = virtual_service(headers={"request": {"set": {"x-from": "mesh"}}})
    vs["spec"]["http"][0]["route"][0]["headers"] = {"request": {"set": {"x-route": "stable"}}}
    vs["spec"]["tcp"] = [{"route": [{"destination": {"host": "reviews", "port": {"number": 9000}}}]}]
    routing = traffic_routing({"weight": 20, "requestHeaderModifier": {"set": [{"name": "x-canary", "value": "1"}]}})
    path = tmp_path / "input.yaml"
    path.write_text(yaml.safe_dump_all([routing, vs]))
    # --force: no DestinationRule among the inputs defines subset canary (GL0402), beside the point here
    result = run_graylane("render", "-f", str(path), "-o", "json", "--force")
    assert result.returncode == 0, result.stderr
    spec = json.loads(result.stdout)["spec"]
    assert [sorted(entry) for entry in spec["tcp"][0]["route"]] == [["destination", "weight"]] * 2
    assert spec["http"][0]["route"][1]["headers"]["request"]["set"] == {"x-route": "stable", "x-canary": "1"}


def _renders(objects: list[dict], steps: int, engine: Engine) -> bool:
    """Whether every step renders."""
    for step in range(1, steps + 1):
        documents = [Document(copy.deepcopy(o), "case", i) for i, o in enumerate(objects, 1)]
        try:
            render(documents, engine, step, partial(check_rendered, force=True))
        except GraylaneError:
            return False
    return True


def test_validate_and_render_agree_over_the_samples_and_a_generated_corpus():
    """What renders cleanly validates without errors, and what validates without errors renders. (Results that
    would fail requests, GL04xx, are judged on the rendered objects together and refused by render unless
    --force; validate warns of the same inputs with GL0304. Here render runs as with --force.)"""
    engine = Engine(inputs.script_library([], None), inputs.sandbox(None, None), None)
    cases = {name: (objects, steps) for name, (objects, steps) in corpus().items()}
    for directory in sorted(p for p in SAMPLES.rglob("*") if p.is_dir() and any(p.glob("*.yaml"))):
        objects = [d.body for path in sorted(directory.glob("*.yaml"))
                   for d in parse_documents(path.read_text(), str(path))]
        cases[str(directory.relative_to(SAMPLES))] = ([o for o in objects if o.get("kind") != "FullLinkGray"], 1)
    disagreements, clean = [], 0
    for name, (objects, steps) in cases.items():
        documents = [Document(copy.deepcopy(o), name, i) for i, o in enumerate(objects, 1)]
        errors = [f.line() for f in validate_documents(documents) if f.severity == "error"]
        renders = _renders(objects, steps, engine)
        clean += renders
        if renders == bool(errors):
            disagreements.append((name, renders, errors[:2]))
    assert disagreements == []
    assert 100 <= clean < len(cases), "the corpus must hold both clean and refused cases"


@pytest.mark.parametrize("value, valid", [
    ("foo", True), ("%HOSTNAME%", True), ("100%%", True), ("prefix %HOSTNAME% suffix", True),
    ('%REQ(x-b3-traceid)%', True), ('%PER_REQUEST_STATE(["a", "b"])%', True), ("tab\there", True),
    ("abc%123", False), ("%START_TIME%%", False), ("10%", False), ("50%off", False), ("a\nb", False),
    ('%VAR(["a" x])%', False)])
def test_header_values_follow_envoy_formatting_as_istio_checks_it(value, valid):
    from engine.checks.analyzers.admission import header_value_error
    assert (header_value_error(value) is None) == valid


@pytest.mark.parametrize("labels, problems", [
    ({"version": "v1", "app.kubernetes.io/name": "x", "a": ""}, 0),
    ({"version": "v 1"}, 1), ({"-version": "v1"}, 1), ({"example.com/": "v1"}, 1), ({"v": "x" * 64}, 0),
    ({"k" * 64: "v"}, 1), ({"bad key": "bad value"}, 2)])
def test_label_rules_are_istios(labels, problems):
    from engine.checks.analyzers.admission import label_errors
    assert len(label_errors(labels)) == problems


def test_istio_host_resolution():
    from engine.routing.hosts import fqdn, istio_hosts_match, unexpanded_service_form
    assert fqdn("reviews", "shop") == "reviews.shop.svc.cluster.local"
    assert fqdn("reviews.shop", "default") == "reviews.shop"  # a dot: taken literally
    assert fqdn("*", "default") == "*"
    assert istio_hosts_match("*.example.com", "a.example.com") and istio_hosts_match("*", "anything")
    assert istio_hosts_match("*.b.example.com", "*.example.com") and not istio_hosts_match("a.com", "b.com")
    assert unexpanded_service_form("reviews.shop") == "reviews.shop.svc.cluster.local"
    assert unexpanded_service_form("reviews.shop.svc") == "reviews.shop.svc.cluster.local"
    assert unexpanded_service_form("reviews") is None
    assert unexpanded_service_form("reviews.shop.svc.cluster.local") is None


@pytest.mark.parametrize("flags, message", [
    (["--set-header", "x-share=10%"], "--set-header 'x-share=10%': un-escaped '%'"),
    (["--add-header", "x-offer=50%off"], "--add-header 'x-offer=50%off': un-terminated %VARIABLE%"),
    (["--remove-header", "host"], "--remove-header 'host': header 'host' cannot be removed"),
    (["--set-header", ":path=/x"], "--set-header ':path=/x'")])
def test_new_refuses_header_operations_istio_would_reject(flags, message):
    result = run_graylane("new", "trafficrouting", "t", "--service", "reviews", "--ref", "VirtualService/reviews",
                          "--weight", "5", *flags)
    assert result.returncode == 1 and result.stdout == "" and result.stderr.startswith(f"error: {message}"), \
        result.stderr
    fixed = run_graylane("new", "trafficrouting", "t", "--service", "reviews", "--ref", "VirtualService/reviews",
                         "--weight", "5", "--set-header", "x-share=10%%")
    assert fixed.returncode == 0 and "10%%" in fixed.stdout


def test_subset_pods_are_those_of_the_subsets_own_service(tmp_path):
    """Istio's IST0173 accepts a subset when any pod has its labels; graylane asks for a pod of the Service."""
    ratings = [service("ratings"), deployment("ratings-v3", {"app": "ratings", "version": "v3"})]
    objects = [routed(virtual_service()), destination_rule([SUBSETS[0], {"name": "v2", "labels": {"version": "v3"}}]),
               *APP, *ratings]
    found = [f for f in _validate(objects, tmp_path) if f["code"] == "GL0506"]
    assert [f["path"] for f in found] == ["spec.subsets[1]"]
    assert "Service default/reviews" in found[0]["message"]
