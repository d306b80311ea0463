"""Every built-in trafficRouting.lua against the testdata/ cases beside it (the same harness as `graylane test`)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import run_graylane

from engine.routing.harness import discover, run_case
from engine.lua.sandbox import LuaSandbox, Script
from engine.lua.scripts import builtin_root

ROOT = Path(str(builtin_root()))
SCRIPTS = discover(ROOT)
CASES = [(entry.script, case) for entry in SCRIPTS for case in entry.cases]
SANDBOX = LuaSandbox()


def test_builtin_tree_has_scripts():
    keys = {str(entry.script.parent.relative_to(ROOT)) for entry in SCRIPTS}
    assert {"networking.istio.io/VirtualService", "networking.istio.io/DestinationRule"} <= keys


@pytest.mark.parametrize("entry", SCRIPTS, ids=lambda e: str(e.script.parent.relative_to(ROOT)))
def test_every_script_has_cases(entry):
    assert entry.cases, f"{entry.script} has no testdata/*.yaml cases"


@pytest.mark.parametrize("script_path,case", CASES, ids=lambda v: v.name if v.name != "trafficRouting.lua" else "")
def test_case(script_path: Path, case: Path):
    script = Script(str(script_path.parent.relative_to(ROOT)), script_path.read_text(), str(script_path))
    result = run_case(SANDBOX, script, case)
    assert result.passed, "\n".join(result.failures)


# ---------------------------------------------------------------------------------------------- host forms

HOSTS = {"short": "reviews", "fqdn": "reviews.bookinfo.svc.cluster.local", "ns": "reviews.bookinfo",
         "svc": "reviews.bookinfo.svc", "other-namespace": "reviews.other.svc.cluster.local",
         "external": "reviews.example.com", "wildcard-vs-host": "reviews"}


def _host_forms_input(names=tuple(HOSTS)) -> list[dict]:
    refs = [{"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "name": name} for name in names]
    rollout = {"apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout",
               "metadata": {"name": "reviews", "namespace": "bookinfo"},
               "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "reviews"},
                        "strategy": {"canary": {"steps": [{"traffic": "10%"}], "trafficRoutings": [
                            {"service": "reviews", "customNetworkRefs": refs}]}}}}
    services = [{"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                 "metadata": {"name": name, "namespace": "bookinfo"},
                 "spec": {"hosts": ["*.bookinfo.svc.cluster.local" if name == "wildcard-vs-host" else "reviews"],
                          "http": [{"route": [{"destination": {"host": host}}]}]}}
                for name, host in HOSTS.items() if name in names]
    return [rollout, *services]


def test_render_splits_the_host_forms_istio_resolves_and_refuses_the_others(tmp_path):
    """Weights split the routes whose host Istio resolves to Service reviews (the short name, in the
    VirtualService's namespace, and the FQDN; the canary host written in the same form); a VirtualService whose only
    route is reviews.bookinfo, reviews.bookinfo.svc, another namespace's FQDN or an external host routes no Service
    reviews of the Rollout's namespace, so render refuses it, as validate reports it (GL0302)."""
    resolved = ("short", "fqdn", "wildcard-vs-host")
    (tmp_path / "in.yaml").write_text(yaml.safe_dump_all(_host_forms_input(resolved)))
    result = run_graylane("render", "-f", str(tmp_path / "in.yaml"), "-o", "json", "--force")
    assert result.returncode == 0, result.stderr
    routes = {item["metadata"]["name"]: item["spec"]["http"][0]["route"] for item in json.loads(result.stdout)["items"]
              if item["kind"] == "VirtualService"}

    def split(host: str, canary: str) -> list:
        return [{"destination": {"host": host}, "weight": 90}, {"destination": {"host": canary}, "weight": 10}]

    assert routes["short"] == routes["wildcard-vs-host"] == split("reviews", "reviews-canary")
    assert routes["fqdn"] == split("reviews.bookinfo.svc.cluster.local", "reviews-canary.bookinfo.svc.cluster.local")
    for literal in ("ns", "svc", "other-namespace", "external"):
        (tmp_path / f"{literal}.yaml").write_text(yaml.safe_dump_all(_host_forms_input((literal,))))
        refused = run_graylane("render", "-f", str(tmp_path / f"{literal}.yaml"), "--force")
        assert refused.returncode == 1 and refused.stdout == ""
        assert (f"VirtualService bookinfo/{literal}: script builtin:networking.istio.io/VirtualService/"
                "trafficRouting.lua") in refused.stderr
        assert "no route of this VirtualService sends traffic to service reviews" in refused.stderr
        if literal in ("ns", "svc"):
            assert f"Istio takes host {HOSTS[literal]} literally" in refused.stderr
    (tmp_path / "in.yaml").write_text(yaml.safe_dump_all(_host_forms_input()))
    validated = json.loads(run_graylane("validate", "-f", str(tmp_path / "in.yaml"), "-o", "json").stdout)
    assert {f["object"] for f in validated if f["code"] == "GL0510"} == {
        "VirtualService bookinfo/ns", "VirtualService bookinfo/svc"}
    assert {f["path"] for f in validated if f["code"] == "GL0302"} == {
        "spec.strategy.canary.trafficRoutings[0].service"}
    unrouted = " ".join(f["message"] for f in validated if f["code"] == "GL0302")
    for name in ("ns", "svc", "other-namespace", "external"):
        assert f"VirtualService/{name}," in unrouted
    for name in ("short", "fqdn", "wildcard-vs-host"):
        assert f"VirtualService/{name}," not in unrouted
