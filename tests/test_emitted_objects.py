"""Objects graylane makes itself (color's EnvoyFilter, chain's TrafficRoutings and Rollouts, new's objects) are
checked as `graylane validate` would check them: one with an error stops the command (one line naming where it
came from, the object, the field and the code; exit 1; nothing on stdout), and what is printed validates clean."""
from __future__ import annotations

import pytest
import yaml
from helpers import SAMPLES, run_graylane

FULLLINK = SAMPLES / "fulllink" / "fulllink.yaml"


def refused(result, *expected: str) -> str:
    """The one error line of a refusal, after checking the command's contract (exit 1, nothing on stdout)."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def validates_clean(text: str, *others: str) -> None:
    """What a command printed passes `graylane validate` (with the ``others`` files it refers to) with no error."""
    result = run_graylane("validate", "-f", "-", *(a for path in others for a in ("-f", path)), input=text)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------------------------- color

@pytest.mark.parametrize("flags, field, code", [
    (["--selector", "app=my gateway"], "spec.workloadSelector.labels.app", "GL0205"),   # space in a label value
    (["--selector", "app=gw*"], "spec.workloadSelector.labels.app", "GL0205"),          # Istio: no wildcards
    (["--selector", "a*=gw"], 'spec.workloadSelector.labels["a*"]', "GL0205"),          # Istio: no wildcards
    (["--selector=-bad/key=gw"], 'spec.workloadSelector.labels["-bad/key"]', "GL0205"),
    (["--selector", f"app={'x' * 64}"], "spec.workloadSelector.labels.app", "GL0205"),  # longer than 63
    (["--name", "Lane_Coloring"], "metadata.name", "GL0001"),
    (["-n", "Istio System"], "metadata.namespace", "GL0001"),
])
def test_color_refuses_an_envoyfilter_istio_or_the_api_server_would_reject(flags, field, code):
    line = refused(run_graylane("color", "--lane-header", "x-lane", *flags),
                   "error: command line: the EnvoyFilter ", f"{field}: ", f"[{code} ")
    assert "would be refused" in line


def test_color_prints_an_envoyfilter_that_validates_clean():
    result = run_graylane("color", "--lane-header", "x-lane", "--selector", "app=gateway", "--selector",
                          "example.com/tier=edge", "--rule", "header:agent=pc", "--rule", "percent:5:header:user")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["spec"]["workloadSelector"]["labels"] == {
        "app": "gateway", "example.com/tier": "edge"}
    validates_clean(result.stdout)


def _spec_with(old: str, new: str, tmp_path) -> str:
    text = FULLLINK.read_text()
    assert old in text
    path = tmp_path / "fulllink.yaml"
    path.write_text(text.replace(old, new))
    return str(path)


def test_color_from_a_spec_names_the_spec_and_validate_finds_the_same_problem(tmp_path):
    spec = _spec_with("istio: ingressgateway", "istio: ingress gateway", tmp_path)
    refused(run_graylane("color", "-f", spec),
            f"error: {spec}: document 1: FullLinkGray default/mock-chain: the EnvoyFilter "
            "istio-system/mock-chain-coloring made from it would be refused: spec.workloadSelector.labels.istio: ",
            "[GL0205 InvalidLabel]")
    found = run_graylane("validate", "-f", spec)
    assert found.returncode == 1
    assert f"error GL0205 {spec}#1 spec.gateway.selector.istio: " in found.stdout


def test_color_from_the_sample_spec_validates_clean():
    result = run_graylane("color", "-f", str(FULLLINK))
    assert result.returncode == 0, result.stderr
    validates_clean(result.stdout)


# ------------------------------------------------------------------------------------------------- chain

@pytest.mark.parametrize("old, new, made, field", [
    ("trafficRouting: mocka-tr", "trafficRouting: Mocka_TR", "TrafficRouting default/Mocka_TR", "metadata.name"),
    ("rollout: rollouts-a", "rollout: rollouts_a", "Rollout default/rollouts_a", "metadata.name"),
    ("envoyFilterName: mock-chain-coloring", "envoyFilterName: Coloring", "EnvoyFilter istio-system/Coloring",
     "metadata.name"),
])
def test_chain_refuses_objects_with_invalid_names_and_validate_of_the_spec_agrees(old, new, made, field, tmp_path):
    spec = _spec_with(old, new, tmp_path)
    refused(run_graylane("chain", "-f", spec),
            f"error: {spec}: document 1: FullLinkGray default/mock-chain: the {made} made from it would be "
            f"refused: {field}: ", "[GL0001 SchemaViolation]")
    found = run_graylane("validate", "-f", spec)
    assert found.returncode == 1 and "error GL0001" in found.stdout, found.stdout


def test_chain_refuses_a_gateway_selector_no_pod_can_carry(tmp_path):
    spec = _spec_with("istio: ingressgateway", "istio: ingress gateway", tmp_path)
    refused(run_graylane("chain", "-f", spec), "the EnvoyFilter istio-system/mock-chain-coloring",
            "spec.workloadSelector.labels.istio: ", "[GL0205 InvalidLabel]")


def test_chain_output_validates_clean():
    result = run_graylane("chain", "-f", str(FULLLINK))
    assert result.returncode == 0, result.stderr
    assert [o["kind"] for o in yaml.safe_load_all(result.stdout)] == [
        "EnvoyFilter", "TrafficRouting", "Rollout", "TrafficRouting", "Rollout"]
    validates_clean(result.stdout, *(str(SAMPLES / "fulllink" / name) for name in ("mocka.yaml", "mockb.yaml",
                                                                                     "gateway.yaml", "gray.yaml")))


# -------------------------------------------------------------------------------------------------- new

@pytest.mark.parametrize("flags, field, code", [
    (["--header-regex", "x-lane=" + "a" * 1025], "spec.strategy.matches[0].headers[0].value", "GL0111"),
    (["--header", "x-lane=gray", "--header", "X-Lane=blue"], "spec.strategy.matches[0].headers[1].name", "GL0112"),
])
def test_new_refuses_an_object_validate_would_find_an_error_in(flags, field, code):
    refused(run_graylane("new", "trafficrouting", "lane", "--service", "cart", "--ref", "VirtualService/edge", *flags),
            "error: command line: the TrafficRouting lane made from it would be refused: ", f"{field}: ", f"[{code} ")


def test_kruise_rollout_labels_for_the_canary_pods_are_checked():
    rollout = {"apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout",
               "metadata": {"name": "cart", "namespace": "shop"},
               "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "cart"},
                        "strategy": {"canary": {"steps": [{"traffic": "10%"}],
                                                "patchPodTemplateMetadata": {"labels": {"lane": "gray lane"}}}}}}
    found = run_graylane("validate", "-f", "-", input=yaml.safe_dump(rollout))
    assert found.returncode == 1
    assert "error GL0205 <stdin>#1 spec.strategy.canary.patchPodTemplateMetadata.labels.lane: " in found.stdout


# ------------------------------------------------------------------------------------------ script configmap

def test_script_configmap_refuses_what_the_api_server_would(tmp_path):
    scripts = tmp_path / "lua" / "networking.istio.io" / "VirtualService"
    scripts.mkdir(parents=True)
    (scripts / "trafficRouting.lua").write_text("return obj.data\n")
    root = str(tmp_path / "lua")
    refused(run_graylane("script", "configmap", root, "--name", "Kruise_Config"),
            "error: --name: 'Kruise_Config' is not a valid Kubernetes name")
    refused(run_graylane("script", "configmap", root, "-n", "Kruise Rollout"),
            "error: --namespace: 'Kruise Rollout' is not a valid namespace name")
    good = run_graylane("script", "configmap", root)
    assert good.returncode == 0 and yaml.safe_load(good.stdout)["kind"] == "ConfigMap", good.stderr
    (scripts / "trafficRouting.lua").write_text("-- " + "x" * (1024 * 1024) + "\nreturn obj.data\n")
    refused(run_graylane("script", "configmap", root), "a ConfigMap holds at most 1048576 (1 MiB)")


def test_color_refuses_an_envoyfilter_too_large_for_the_api_server(tmp_path):
    spec = _spec_with("      exact: pc ", "      exact: " + "p" * (1600 * 1024) + " ", tmp_path)
    refused(run_graylane("color", "-f", spec), "the EnvoyFilter istio-system/mock-chain-coloring made from it would "
            "be refused: the object is ", "the API server stores at most 1572864 (1.5 MiB) per object",
            "[GL0003 ObjectTooLarge]")
    assert run_graylane("validate", "-f", spec).returncode == 0  # the spec itself is not applied
