"""The script author's kit through the real CLI: script new/input/types/configmap, test --update/--run/--coverage,
script errors that point into the script, and the README walkthrough run command by command."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import lupa.lua51 as lua51
import pytest
import yaml

from helpers import REPO, SAMPLES, graylane_command, run_graylane

KEY = "example.io/Route"
ROUTE = """\
apiVersion: example.io/v1
kind: Route
metadata:
  name: shop
  namespace: prod
spec:
  backends:
  - service: shop
"""
# Written from scratch: a weight split over spec.backends and a header-match list.
SCRIPT = """\
local spec = obj.data.spec

local function backend(service, weight)
  return {service = service, weight = weight}
end

if obj.canaryWeight ~= -1 then
  spec.backends[1].weight = obj.stableWeight
  table.insert(spec.backends, backend(obj.canaryService, obj.canaryWeight))
end

if obj.matches then
  spec.canaryHeaders = {}
  for _, match in ipairs(obj.matches) do
    for _, header in ipairs(match.headers) do
      table.insert(spec.canaryHeaders, header.name .. "=" .. header.value)
    end
  end
end

return {spec = spec, labels = obj.data.labels, annotations = obj.data.annotations}
"""
ROUTING = """\
apiVersion: rollouts.kruise.io/v1alpha1
kind: TrafficRouting
metadata:
  name: shop-tr
  namespace: prod
spec:
  strategy:
    weight: 10
    matches:
    - headers:
      - {name: X-Beta, value: "yes"}
    requestHeaderModifier:
      set: [{name: x-lane, value: gray}]
  objectRef:
  - service: shop
    customNetworkRefs:
    - {apiVersion: example.io/v1, kind: Route, name: shop}
"""
WEIGHT_CASE = """\
trafficRouting:
  apiVersion: rollouts.kruise.io/v1alpha1
  kind: TrafficRouting
  metadata: {name: t}
  spec:
    strategy: {weight: 20}
    objectRef:
    - service: shop
      customNetworkRefs: [{apiVersion: example.io/v1, kind: Route, name: shop}]
original:
""" + "".join("  " + line + "\n" for line in ROUTE.splitlines())


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def failed_cleanly(result: subprocess.CompletedProcess) -> str:
    """Exit 1, nothing on stdout, no traceback; returns stderr."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr, result.stdout + result.stderr
    return result.stderr


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "route.yaml").write_text(ROUTE)
    (tmp_path / "routing.yaml").write_text(ROUTING)
    return tmp_path


def scaffold(workspace: Path) -> Path:
    result = ok(run_graylane("script", "new", KEY, "--from", "route.yaml", "-d", "scripts", cwd=workspace))
    script = workspace / "scripts" / KEY / "trafficRouting.lua"
    assert result.stdout.splitlines() == [f"scripts/{KEY}/trafficRouting.lua",
                                          f"scripts/{KEY}/testdata/first_case.yaml"]
    return script


def test_script_new_scaffolds_a_skeleton_and_a_passing_first_case(workspace):
    script = scaffold(workspace)
    source = script.read_text()
    for documented in ("obj.data.spec", "obj.canaryWeight", "obj.stableWeight", "obj.matches", "obj.canaryService",
                       "obj.stableService", "obj.requestHeaderModifier", "return {spec = spec"):
        assert documented in source
    case = yaml.safe_load((script.parent / "testdata" / "first_case.yaml").read_text())
    assert case["original"] == yaml.safe_load(ROUTE)
    assert case["rollout"]["spec"]["strategy"]["canary"]["trafficRoutings"][0]["customNetworkRefs"] == [
        {"apiVersion": "example.io/v1", "kind": "Route", "name": "shop"}]
    assert case["expected"] == [yaml.safe_load(ROUTE)] * 2  # the skeleton changes nothing
    result = ok(run_graylane("test", "scripts", cwd=workspace))
    assert result.stdout.splitlines()[-1] == "1 passed, 0 failed"

    again = run_graylane("script", "new", KEY, "-d", "scripts", cwd=workspace)
    assert "already exists" in failed_cleanly(again) and script.read_text() == source


def test_script_new_without_an_example_and_bad_keys(tmp_path):
    ok(run_graylane("script", "new", "Widget", cwd=tmp_path))  # core group: just the kind
    case = yaml.safe_load((tmp_path / "Widget" / "testdata" / "first_case.yaml").read_text())
    assert case["original"] == {"apiVersion": "v1", "kind": "Widget", "metadata": {"name": "widget-example"},
                                "spec": {}}
    assert ok(run_graylane("test", str(tmp_path), cwd=tmp_path)).stdout.endswith("1 passed, 0 failed\n")
    assert "is not GROUP/KIND" in failed_cleanly(run_graylane("script", "new", "not a key", cwd=tmp_path))
    (tmp_path / "route.yaml").write_text(ROUTE)
    message = failed_cleanly(run_graylane("script", "new", "example.io/Other", "--from", "route.yaml", cwd=tmp_path))
    assert message.startswith("error: route.yaml: holds no Other of group example.io")


def test_script_input_and_render_show_input_print_the_exact_obj(workspace):
    result = ok(run_graylane("script", "input", "-f", "routing.yaml", "-f", "route.yaml", cwd=workspace))
    entries = json.loads(result.stdout)
    assert entries == [{
        "object": {"apiVersion": "example.io/v1", "kind": "Route", "name": "shop", "namespace": "prod",
                   "source": "route.yaml#1"},
        "routing": {"apiVersion": "rollouts.kruise.io/v1alpha1", "kind": "TrafficRouting", "name": "shop-tr",
                    "namespace": "prod", "source": "routing.yaml#1"},
        "scriptKey": KEY,
        "script": None,  # not written yet
        "obj": {"data": {"spec": {"backends": [{"service": "shop"}]}},
                "canaryWeight": 10, "stableWeight": 90, "canaryService": "shop", "stableService": "shop",
                "namespace": "prod",
                "matches": [{"headers": [{"type": "Exact", "name": "X-Beta", "value": "yes"}]}],
                "requestHeaderModifier": {"set": [{"name": "x-lane", "value": "gray"}]}},
    }]
    scaffold(workspace)
    shown = ok(run_graylane("render", "-f", "routing.yaml", "-f", "route.yaml", "--lua-dir", "scripts",
                            "--show-input", cwd=workspace))
    entries[0]["script"] = f"scripts/{KEY}/trafficRouting.lua"
    assert json.loads(shown.stdout) == entries

    # What the script really receives: a script that returns obj itself (as JSON in an annotation).
    script = workspace / "scripts" / KEY / "trafficRouting.lua"
    script.write_text('local a = {seen = json.encode(obj)}\nreturn {spec = obj.data.spec, annotations = a}\n')
    rendered = yaml.safe_load(ok(run_graylane("render", "-f", "routing.yaml", "-f", "route.yaml", "--lua-dir",
                                              "scripts", cwd=workspace)).stdout)
    assert json.loads(rendered["metadata"]["annotations"]["seen"]) == entries[0]["obj"]

    assert "spec.strategy.canary.steps" not in failed_cleanly(
        run_graylane("script", "input", "-f", "route.yaml", cwd=workspace))


def test_script_input_shows_ingress_and_builtin_inputs():
    result = ok(run_graylane("script", "input", "-f", str(SAMPLES / "weighted-canary"), "--step", "2"))
    entries = json.loads(result.stdout)
    assert [e["scriptKey"] for e in entries] == ["networking.istio.io/VirtualService"]
    assert entries[0]["script"] == "builtin:networking.istio.io/VirtualService/trafficRouting.lua"
    assert entries[0]["routing"]["step"] == 2 and entries[0]["obj"]["canaryWeight"] == 50


def test_ingress_scripts_input_and_errors(tmp_path):
    (tmp_path / "trafficrouting_ingress").mkdir()
    (tmp_path / "in.yaml").write_text(yaml.safe_dump_all([
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
         "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
             "service": {"name": "web", "port": {"number": 80}}}}]}}]}},
        {"apiVersion": "rollouts.kruise.io/v1alpha1", "kind": "TrafficRouting", "metadata": {"name": "tr"},
         "spec": {"strategy": {"weight": 20}, "objectRef": [{"service": "web", "ingress": {"classType": "nginx",
                                                                                             "name": "web"}}]}},
    ]))
    entries = json.loads(ok(run_graylane("script", "input", "-f", "in.yaml", cwd=tmp_path)).stdout)
    assert [(e["object"]["kind"], e["scriptKey"], e["script"]) for e in entries] == [
        ("Ingress", "trafficrouting_ingress/nginx", None)]
    assert entries[0]["obj"] == {"annotations": {}, "weight": "20", "canaryService": "web"}
    (tmp_path / "trafficrouting_ingress" / "nginx.lua").write_text("return obj.annotations.missing.key\n")
    stderr = failed_cleanly(run_graylane("render", "-f", "in.yaml", "--lua-dir", ".", cwd=tmp_path))
    assert stderr.splitlines()[:2] == [
        "error: in.yaml: document 1: Ingress web: script ./trafficrouting_ingress/nginx.lua:1: attempt to index "
        "field 'missing' (a nil value)",
        "  routed by TrafficRouting/tr"]


def test_update_rewrites_only_failing_expected_blocks_and_run_filters(workspace):
    script = scaffold(workspace)
    testdata = script.parent / "testdata"
    weight_only = testdata / "weight_only.yaml"
    weight_only.write_text("# a comment that stays\n" + WEIGHT_CASE + "expected: []\n# trailing comment that stays\n")
    first_before = (testdata / "first_case.yaml").read_text()

    only = run_graylane("test", "scripts", "--run", "weight_only", cwd=workspace)
    assert only.returncode == 1 and "first_case" not in only.stdout
    assert "no expected: objects yet" in only.stdout and only.stdout.endswith("0 passed, 1 failed\n")

    updated = ok(run_graylane("test", "scripts", "--update", "--run", "weight", cwd=workspace))
    assert updated.stdout.endswith("0 passed, 0 failed, 1 updated\n")
    text = weight_only.read_text()
    assert text.startswith("# a comment that stays\n") and text.endswith("# trailing comment that stays\n")
    assert (testdata / "first_case.yaml").read_text() == first_before  # passing: untouched
    ok(run_graylane("test", "scripts", cwd=workspace))

    script.write_text(SCRIPT)
    failing = run_graylane("test", "scripts", cwd=workspace)
    assert failing.returncode == 1 and failing.stdout.endswith("0 passed, 2 failed\n")
    update = ok(run_graylane("test", "scripts", "--update", cwd=workspace))
    diff = update.stdout.split("     updated:")[0]
    assert "+    weight: 80" in failing.stdout and diff in failing.stdout  # the diff is shown first
    assert update.stdout.endswith("0 passed, 0 failed, 2 updated\n")
    case = yaml.safe_load(weight_only.read_text())
    assert case["expected"][0]["spec"]["backends"] == [{"service": "shop", "weight": 80},
                                                       {"service": "shop", "weight": 20}]
    assert ok(run_graylane("test", "scripts", cwd=workspace)).stdout.endswith("2 passed, 0 failed\n")

    # A case whose script fails is reported with the error, never "updated".
    script.write_text("error('not yet')\n")
    broken = run_graylane("test", "scripts", "--update", cwd=workspace)
    assert broken.returncode == 1 and "updated" not in broken.stdout.replace(", 0 updated", "")
    assert yaml.safe_load(weight_only.read_text()) == case
    assert "matches no case" in failed_cleanly(run_graylane("test", "scripts", "--run", "nothing", cwd=workspace))
    assert "not a regular expression" in failed_cleanly(run_graylane("test", "scripts", "--run", "(", cwd=workspace))


def test_coverage_reports_lines_never_run_until_a_case_reaches_them(workspace):
    script = scaffold(workspace)
    testdata = script.parent / "testdata"
    script.write_text(SCRIPT)
    ok(run_graylane("test", "scripts", "--update", cwd=workspace))
    (testdata / "first_case.yaml").rename(testdata / "later.yaml.off")  # only the weight case below runs
    (testdata / "weight.yaml").write_text(WEIGHT_CASE + "expected: []\n")
    ok(run_graylane("test", "scripts", "--update", cwd=workspace))
    result = ok(run_graylane("test", "scripts", "--coverage", cwd=workspace))
    lines = SCRIPT.splitlines()
    never = [13, 14, 15, 16]  # the match branch's body
    summary = f"  scripts/{KEY}/trafficRouting.lua: 8/12 lines (66.7%), never ran: 13-16"
    assert summary in result.stdout.splitlines()
    for number in never:
        assert f"    {number:>4} | {lines[number - 1]}" in result.stdout.splitlines()
    assert result.stdout.endswith("  total: 8/12 lines (66.7%)\n1 passed, 0 failed\n")

    (testdata / "later.yaml.off").rename(testdata / "first_case.yaml")
    full = ok(run_graylane("test", "scripts", "--coverage", cwd=workspace))
    assert f"  scripts/{KEY}/trafficRouting.lua: 12/12 lines (100.0%)" in full.stdout.splitlines()


@pytest.mark.parametrize("body,limit,reason", [
    ("while true do end", "--timeout=0.2", "exceeded the time limit of 0.2s"),
    ("local ok = pcall(function() while true do end end)\nreturn obj.data", "--timeout=0.2",
     "exceeded the time limit of 0.2s"),
    ("local t = {}\nfor i = 1, 1e9 do t[i] = string.rep('x', 64) .. i end", "--max-memory=2 --timeout=10",
     "exceeded the memory limit of 2 MiB"),
    ("local f = loadstring('local function g(n) return 1 + g(n + 1) end return g')()\nf(1)", "--timeout=5",
     ": stack overflow"),
], ids=["loop", "pcall", "memory", "overflow"])
def test_limits_hold_with_coverage_on(workspace, body, limit, reason):
    """The line hook must not weaken the sandbox: a one-instruction loop used to dodge the time limit."""
    script = scaffold(workspace)
    script.write_text(body + "\n")
    result = run_graylane("test", "scripts", "--coverage", *limit.split(), cwd=workspace)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stdout + result.stderr
    assert reason in result.stdout and "[string" not in result.stdout, result.stdout
    assert f"  scripts/{KEY}/trafficRouting.lua: " in result.stdout


VS_SCRIPT = "networking.istio.io/VirtualService/trafficRouting.lua"


def kruise_only_lines() -> set[int]:
    """The VirtualService lines only Kruise reaches: a Kruise match testing one header twice (X-Lane, x-lane)
    fails in the script under Kruise, but graylane refuses that input before any script runs (GL0112), so no
    case can reach it. Run the built-in script on that ``obj`` directly, as Kruise would, and return the lines."""
    from engine.errors import ScriptError
    from engine.lua.sandbox import LuaSandbox, Script
    from engine.lua.scripts import builtin_root

    source = (Path(str(builtin_root())) / VS_SCRIPT).read_text(encoding="utf-8")
    spec = {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}
    obj = {"data": {"spec": spec}, "canaryWeight": -1, "stableWeight": 101, "canaryService": "reviews-canary",
           "stableService": "reviews",
           "matches": [{"headers": [{"type": "Exact", "name": "X-Lane", "value": "a"},
                                    {"type": "Exact", "name": "x-lane", "value": "b"}]}]}
    lines: set[int] = set()
    with pytest.raises(ScriptError, match="a match tests header x-lane twice"):
        LuaSandbox().run(Script("VirtualService", source, "builtin:" + VS_SCRIPT), obj, lines=lines)
    return lines


def test_a_header_tested_twice_is_refused_before_the_script_runs(tmp_path):
    """Why kruise_only_lines exists: graylane itself never hands the script a header tested twice."""
    rollout = tmp_path / "rollout.yaml"
    rollout.write_text(yaml.safe_dump({
        "apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout", "metadata": {"name": "reviews"},
        "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "reviews"},
                 "strategy": {"canary": {"steps": [{"matches": [{"headers": [
                     {"type": "Exact", "name": "X-Lane", "value": "a"},
                     {"type": "Exact", "name": "x-lane", "value": "b"}]}]}],
                     "trafficRoutings": [{"service": "reviews", "customNetworkRefs": [
                         {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "name": "reviews"}]}]}}}}))
    (tmp_path / "vs.yaml").write_text(yaml.safe_dump({
        "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "metadata": {"name": "reviews"},
        "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}}))
    result = run_graylane("render", "-f", str(rollout), "-f", str(tmp_path / "vs.yaml"), "--step", "1")
    assert result.returncode != 0 and "GL0112" in result.stderr and not result.stdout, result.stderr


def test_builtin_scripts_cases_run_every_line_that_can_run():
    """The built-in scripts' cases (Kruise and Argo Rollouts), with the lines only Kruise reaches
    (kruise_only_lines), run every line that can run; the failure lists the lines nothing ran."""
    from engine.lua.sandbox import LuaSandbox
    from engine.lua.scripts import builtin_root
    from engine.routing.harness import run_tree
    from engine.routing.scriptkit.coverage import ScriptCoverage, report_lines

    report = run_tree(LuaSandbox(), Path(str(builtin_root())), "builtin:", coverage=True)
    assert report.ok, [r.failures for r in report.results if not r.passed]
    assert {c.script for c in report.coverage} >= {
        "builtin:" + VS_SCRIPT, "builtin:networking.istio.io/DestinationRule/trafficRouting.lua"}
    extra = kruise_only_lines()
    merged = [ScriptCoverage(c.script, c.source, c.executable, c.executed | extra) if c.script == "builtin:" + VS_SCRIPT
              else c for c in report.coverage]
    missing = [c for c in merged if c.missed]
    assert not missing, "lines no built-in case runs:\n" + "\n".join(report_lines(missing))
    # the command reports the same, less the lines only Kruise reaches
    cli = ok(run_graylane("test", "--coverage", cwd="/"))
    vs = next(c for c in report.coverage if c.script == "builtin:" + VS_SCRIPT)
    only_kruise = sorted(vs.executable - vs.executed)
    assert only_kruise and set(only_kruise) <= extra, only_kruise
    total = sum(len(c.executable) for c in report.coverage)
    assert f"  total: {total - len(only_kruise)}/{total} lines" in cli.stdout, cli.stdout
    assert re.search(r"DestinationRule/trafficRouting.lua: (\d+)/\1 lines \(100\.0%\)$", cli.stdout, re.M), cli.stdout


CONSTRUCTS = """\
local t = {1, 2, 3}
local n = 0
for i = 1, #t do n = n + t[i] end
for _, v in ipairs(t) do
  if v > 1 then
    n = n + v
  else
    n = n - v
  end
end
while n > 100 do n = n - 1 end
repeat n = n + 1 until n > 0
local function add(a)
  return function(b) return a + b end
end
local big = {%s}
local s = (n > 3 and "big") or "small"
local ok = pcall(function() error("caught") end)
if not ok then n = add(n)(1) end
return {spec = {n = n, s = s, size = #big}}
""" % ", ".join(str(i) for i in range(120))


def test_line_hook_and_executable_lines_agree():
    """A run through every branch executes exactly the lines that can run; a branch not taken is missed."""
    from engine.lua.coverage import executable_lines
    from engine.lua.sandbox import LuaSandbox, Script

    sandbox = LuaSandbox()
    lines: set[int] = set()
    sandbox.run(Script("k", CONSTRUCTS, "constructs.lua"), {"data": {}}, lines=lines)
    assert lines == executable_lines(CONSTRUCTS, "constructs.lua")
    assert 7 not in lines and 9 not in lines and 13 not in lines  # else, end, local function: no code

    branch = CONSTRUCTS.replace("return {spec", "if obj.never then\n  n = 0\nend\nreturn {spec")
    lines = set()
    sandbox.run(Script("k", branch, "branch.lua"), {"data": {}}, lines=lines)
    assert executable_lines(branch, "branch.lua") - lines == {21}


def test_script_types_is_valid_lua_and_names_every_field_scripts_get(workspace):
    types = ok(run_graylane("script", "types")).stdout
    runtime = lua51.LuaRuntime()
    assert runtime.eval("function(s) local f, err = loadstring(s); return err end")(types) is None
    classes: dict[str, set[str]] = {}
    current = None
    for line in types.splitlines():
        if line.startswith("---@class "):
            current = classes.setdefault(line.split()[1], set())
        elif line.startswith("---@field ") and current is not None:
            current.add(line.split()[1].rstrip("?"))
    entries = json.loads(ok(run_graylane("script", "input", "-f", "routing.yaml", "-f", "route.yaml",
                                         cwd=workspace)).stdout)
    obj = entries[0]["obj"]
    assert set(obj) == classes["graylane.ScriptInput"]  # this obj holds every optional field too
    assert set(obj["data"]) <= classes["graylane.ObjectData"]
    assert set(obj["matches"][0]) <= classes["graylane.Match"]
    assert set(obj["matches"][0]["headers"][0]) == classes["graylane.NamedMatch"]
    assert set(obj["requestHeaderModifier"]) <= classes["graylane.RequestHeaderModifier"]
    assert {"spec", "labels", "annotations"} == classes["graylane.ScriptResult"]
    assert "---@type graylane.ScriptInput\nobj = nil" in types


def test_configmap_round_trip_is_exact_and_check_refuses_failing_cases(workspace):
    script = scaffold(workspace)
    tricky = SCRIPT.replace("local spec", "-- tabs\tand trailing spaces   \n-- ünïcödé: 灰度\nlocal spec") + "\n\n"
    script.write_text(tricky)
    ingress = workspace / "scripts" / "trafficrouting_ingress"
    ingress.mkdir()
    (ingress / "nginx.lua").write_text("return obj.annotations")
    ok(run_graylane("test", "scripts", "--update", cwd=workspace))

    manifest = ok(run_graylane("script", "configmap", "scripts", "--check", cwd=workspace)).stdout
    configmap = yaml.safe_load(manifest)
    assert configmap["metadata"] == {"name": "kruise-rollout-configuration", "namespace": "kruise-rollout"}
    assert configmap["data"] == {"lua.traffic.routing.Route.example.io": tricky,
                                 "lua.traffic.routing.ingress.nginx": "return obj.annotations"}
    (workspace / "cm.yaml").write_text(manifest)
    args = ["-f", "routing.yaml", "-f", "route.yaml"]
    from_dir = ok(run_graylane("render", *args, "--lua-dir", "scripts", cwd=workspace)).stdout
    from_cm = ok(run_graylane("render", *args, "--lua-configmap", "cm.yaml", cwd=workspace)).stdout
    assert from_cm == from_dir and "weight: 10" in from_dir
    named = yaml.safe_load(ok(run_graylane("script", "configmap", "scripts", "-n", "rollouts", "--name", "mine",
                                           cwd=workspace)).stdout)
    assert named["metadata"] == {"name": "mine", "namespace": "rollouts"} and named["data"] == configmap["data"]

    script.write_text(SCRIPT.replace("obj.canaryWeight)", "obj.canaryWeight + 1)"))
    refused = failed_cleanly(run_graylane("script", "configmap", "scripts", "--check", cwd=workspace))
    assert "FAIL scripts/example.io/Route/testdata/first_case.yaml" in refused and "--check" in refused
    ok(run_graylane("script", "configmap", "scripts", cwd=workspace))  # without --check it packages as is
    assert "no <group>/<Kind>/trafficRouting.lua" in failed_cleanly(
        run_graylane("script", "configmap", str(SAMPLES), cwd=workspace))


def test_script_errors_show_the_line_a_caret_the_input_and_the_scripts_frames(workspace):
    script = scaffold(workspace)
    script.write_text("local spec = obj.data.spec\n"
                      "local function firstHost(s)\n"
                      "  return s.hosts[1]\n"
                      "end\n"
                      "local function describe(s)\n"
                      "  return 'host ' .. firstHost(s)\n"
                      "end\n"
                      "spec.description = describe(spec)\n"
                      "return {spec = spec}\n")
    stderr = failed_cleanly(run_graylane("render", "-f", "routing.yaml", "-f", "route.yaml", "--lua-dir", "scripts",
                                         cwd=workspace))
    path = f"scripts/{KEY}/trafficRouting.lua"
    assert stderr.splitlines() == [
        f"error: route.yaml: document 1: Route prod/shop: script {path}:3: attempt to index field 'hosts' (a nil value)",
        "  routed by TrafficRouting/shop-tr",
        "      3 |   return s.hosts[1]",
        "        |            ^",
        "  traceback (the script's own frames, innermost first):",
        f"    {path}:3: in function 'firstHost'",
        f"    {path}:6: in function 'describe'",
        f"    {path}:8: in main chunk",
    ]
    tested = run_graylane("test", "scripts", cwd=workspace)
    assert tested.returncode == 1
    assert f"error: script {path}:3" not in tested.stdout  # the harness prints failures without "error:"
    assert f"script {path}:3: attempt to index field 'hosts'" in tested.stdout
    assert f"scripts/example.io/Route/testdata/first_case.yaml, step 1: script {path}:3" in tested.stdout
    assert "|            ^" in tested.stdout

    script.write_text("local x = 1\nlocal y = = 2\n")
    syntax = failed_cleanly(run_graylane("render", "-f", "routing.yaml", "-f", "route.yaml", "--lua-dir", "scripts",
                                         cwd=workspace)).splitlines()
    assert syntax[0] == f"error: route.yaml: document 1: Route prod/shop: script {path}:2: unexpected symbol near '='"
    assert syntax[2:] == ["      2 | local y = = 2", "        |           ^"]  # the second '=', where it stopped
    covered = run_graylane("test", "scripts", "--coverage", cwd=workspace)
    assert covered.returncode == 1 and "Traceback" not in covered.stderr
    assert "unexpected symbol near '='" in covered.stdout and covered.stdout.endswith("0 passed, 1 failed\n")


# --- the README walkthrough -----------------------------------------------------------------------------

def walkthrough_blocks() -> list[tuple[str, str]]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Writing your own script\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```(sh|console)\n(.*?)^```$", section, re.M | re.S)


def test_readme_walkthrough_runs_as_written(tmp_path):
    blocks = walkthrough_blocks()
    assert [kind for kind, _ in blocks].count("console") >= 5 and len(blocks) >= 9
    env = {key: value for key, value in os.environ.items() if key != "GRAYLANE_LUA_PATH"}
    env["PATH"] = f"{Path(graylane_command()[0]).parent}{os.pathsep}{env['PATH']}" \
        if shutil.which("graylane") else env["PATH"]
    for kind, body in blocks:
        if kind == "sh":
            result = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=tmp_path, env=env,
                                    capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, body + result.stdout + result.stderr
            continue
        for command, expected in re.findall(r"^\$ (.*)\n((?:(?!\$ ).*\n)*)", body, re.M):
            result = subprocess.run(["bash", "-c", command + " 2>&1"], cwd=tmp_path, env=env,
                                    capture_output=True, text=True, timeout=120)
            assert result.stdout == expected, f"$ {command}\n{result.stdout}"
