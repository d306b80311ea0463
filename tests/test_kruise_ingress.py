"""Kruise's ingress flow: the canary Ingress graylane renders is the one Kruise's ingress provider converges to.

The parity test runs Kruise's six TestEnsureRoutes cases (tests/data/kruise_ingress_cases.yaml) through
``graylane render`` with the annotation scripts that Kruise's test installs, read from Kruise's own source in
Go's module cache. The other tests pin the build of a new canary Ingress with a small script of our own.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from engine.routing.harness import value_diff
from helpers import run_graylane

CASES = yaml.safe_load((Path(__file__).parent / "data" / "kruise_ingress_cases.yaml").read_text())["cases"]


def rollout(step: dict, class_type: str, service: str = "echoserver") -> dict:
    return {"apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout", "metadata": {"name": "rollout-demo"},
            "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": service},
                     "strategy": {"canary": {"steps": [step], "trafficRoutings": [
                         {"service": service, "ingress": {"name": service, "classType": class_type}}]}}}}


def render(tmp_path: Path, objects: list, lua_dir: Path) -> list[dict]:
    path = tmp_path / "in.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    result = run_graylane("render", "-f", str(path), "--lua-dir", str(lua_dir))
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def kruise_test_scripts(directory: Path) -> Path:
    """The nginx and aliyun-alb scripts of Kruise's ingress test ConfigMap, as trafficrouting_ingress/*.lua."""
    from kruisepeer import kruise_source
    source = (kruise_source() / "pkg/trafficrouting/network/ingress/ingress_test.go").read_text()
    scripts = dict(re.findall(r'"%s\.([\w-]+)", configuration\.LuaTrafficRoutingIngressTypePrefix\): `(.*?)`',
                              source, re.S))
    assert set(scripts) == {"nginx", "aliyun-alb"}, "Kruise's ingress test ConfigMap changed"
    (directory / "trafficrouting_ingress").mkdir(parents=True)
    for class_type, script in scripts.items():
        (directory / "trafficrouting_ingress" / f"{class_type}.lua").write_text(script)
    return directory


@pytest.mark.parity
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_kruise_ingress_cases(tmp_path: Path, case: dict):
    lua_dir = kruise_test_scripts(tmp_path / "lua")
    rendered = render(tmp_path, case["inputs"] + [rollout(case["step"], case["classType"])], lua_dir)
    assert [d["metadata"]["name"] for d in rendered] == ["echoserver-canary"]
    got = {"annotations": rendered[0]["metadata"].get("annotations"), "spec": rendered[0]["spec"]}
    assert not value_diff(case["expected"], got), value_diff(case["expected"], got, "Kruise expects", "graylane")


SCRIPT = """
local a = obj.annotations or {}
a["example.com/canary"] = "true"
a["example.com/weight"] = obj.weight
a["example.com/service"] = obj.canaryService
a["example.com/stable-service-passed"] = tostring(obj.stableService ~= nil)
return a
"""

STABLE = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
          "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"kubernetes.io/ingress.class": "x"}},
          "spec": {"ingressClassName": "x", "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}},
                   "rules": [{"host": "a.example.com", "http": {"paths": [
                       {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                       {"path": "/other", "pathType": "Prefix",
                        "backend": {"service": {"name": "other", "port": {"number": 80}}}}]}},
                             {"host": "b.example.com", "http": {"paths": [
                                 {"path": "/", "pathType": "Prefix",
                                  "backend": {"service": {"name": "other", "port": {"number": 80}}}}]}}]}}


@pytest.fixture
def lua_dir(tmp_path: Path) -> Path:
    (tmp_path / "lua" / "trafficrouting_ingress").mkdir(parents=True)
    (tmp_path / "lua" / "trafficrouting_ingress" / "example.lua").write_text(SCRIPT)
    return tmp_path / "lua"


def test_new_canary_ingress_is_built_as_kruise_builds_it(tmp_path: Path, lua_dir: Path):
    [canary] = render(tmp_path, [STABLE, rollout({"traffic": "20%"}, "example", "web")], lua_dir)
    assert canary["metadata"] == {"name": "web-canary", "labels": {"app": "web"}, "annotations": {
        "kubernetes.io/ingress.class": "x", "example.com/canary": "true", "example.com/weight": "20",
        "example.com/service": "web-canary", "example.com/stable-service-passed": "false"}}
    # only the paths to the stable service, pointed at the canary; no defaultBackend; rules without one dropped
    assert canary["spec"] == {"ingressClassName": "x", "rules": [{"host": "a.example.com", "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web-canary", "port": {"number": 80}}}}]}}]}


def test_no_canary_ingress_at_weight_zero(tmp_path: Path, lua_dir: Path):
    assert render(tmp_path, [STABLE, rollout({"traffic": "0%"}, "example", "web")], lua_dir) == []


def test_existing_canary_ingress_keeps_its_spec(tmp_path: Path, lua_dir: Path):
    existing = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "web-canary", "annotations": {"example.com/weight": "5", "keep": "me"}},
                "spec": {"rules": [{"http": {"paths": [{"path": "/x", "pathType": "Exact", "backend": {
                    "service": {"name": "web-canary", "port": {"number": 81}}}}]}}]}}
    [canary] = render(tmp_path, [STABLE, existing, rollout({"traffic": "0%"}, "example", "web")], lua_dir)
    assert canary["spec"] == existing["spec"]
    assert canary["metadata"]["annotations"] == {"example.com/weight": "0", "keep": "me", "example.com/canary": "true",
                                                 "example.com/service": "web-canary",
                                                 "example.com/stable-service-passed": "false"}
