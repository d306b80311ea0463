"""`graylane render` / `graylane restore` run as a user would, on the samples and on bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import SAMPLES, run_graylane

ANNOTATION = "rollouts.kruise.io/original-spec-configuration"


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def by_name(objects: list[dict]) -> dict[str, dict]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


def test_render_fulllink_sample_routes_lane_header_to_gray_subset():
    result = run_graylane("render", "-f", str(SAMPLES / "fulllink"))
    assert result.returncode == 0, result.stderr
    objects = by_name(docs(result.stdout))
    assert set(objects) == {"VirtualService/vs-mocka", "VirtualService/vs-mockb",
                            "DestinationRule/dr-mocka", "DestinationRule/dr-mockb"}
    first_rule = objects["VirtualService/vs-mockb"]["spec"]["http"][0]
    assert first_rule["match"] == [{"headers": {"my-request-id": {"exact": "canary"}}}]
    assert first_rule["route"] == [{"destination": {"host": "mockb", "subset": "canary"}}]
    subsets = objects["DestinationRule/dr-mocka"]["spec"]["subsets"]
    assert subsets[-1] == {"labels": {"istio.service.tag": "gray"}, "name": "canary"}
    stored = json.loads(objects["DestinationRule/dr-mocka"]["metadata"]["annotations"][ANNOTATION])
    assert stored["spec"]["subsets"] == [{"labels": {"version": "base"}, "name": "version-base"}]


@pytest.mark.parametrize("step,stable,canary", [(1, 95, 5), (2, 50, 50), (3, 0, 100)])
def test_render_rollout_steps(step, stable, canary):
    result = run_graylane("render", "-f", str(SAMPLES / "weighted-canary"), "--step", str(step), "-o", "json")
    assert result.returncode == 0, result.stderr
    vs = json.loads(result.stdout)
    route = vs["spec"]["http"][0]["route"]
    assert [r["weight"] for r in route] == [stable, canary]
    assert route[1]["destination"] == {"host": "reviews-canary.bookinfo.svc.cluster.local", "port": {"number": 9080}}


def test_render_is_idempotent_and_restore_gives_back_the_originals(tmp_path: Path):
    first = run_graylane("render", "-f", str(SAMPLES / "fulllink"))
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(first.stdout)
    trafficrouting = SAMPLES / "fulllink" / "trafficrouting.yaml"
    again = run_graylane("render", "-f", str(trafficrouting), "-f", str(rendered))
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout

    restored = run_graylane("restore", "-f", str(rendered))
    assert restored.returncode == 0, restored.stderr
    originals = {k: v for k, v in by_name(docs("\n---\n".join(p.read_text() for p in (SAMPLES / "fulllink").glob("*.yaml"))))
                 .items() if k.split("/")[0] in ("VirtualService", "DestinationRule")}
    assert by_name(docs(restored.stdout)) == originals


def test_render_reads_stdin():
    text = "\n---\n".join(p.read_text() for p in sorted((SAMPLES / "fulllink").glob("*.yaml")))
    result = run_graylane("render", "-f", "-", input=text)
    assert result.returncode == 0, result.stderr
    assert len(docs(result.stdout)) == 4


def test_user_script_directory_wins_over_builtin(tmp_path: Path):
    script_dir = tmp_path / "scripts" / "networking.istio.io" / "DestinationRule"
    script_dir.mkdir(parents=True)
    (script_dir / "trafficRouting.lua").write_text(
        'local spec = obj.data.spec\n'
        'table.insert(spec.subsets, {name = "canary", labels = {track = "gray"}})\n'
        'return {spec = spec, labels = obj.data.labels, annotations = obj.data.annotations}\n')
    for how in (["--lua-dir", str(tmp_path / "scripts")], []):
        env = None if how else {"GRAYLANE_LUA_PATH": str(tmp_path / "scripts")}
        # --force: no pod of the sample is labelled track: gray, so render would refuse (GL0403) otherwise
        result = run_graylane("render", "-f", str(SAMPLES / "fulllink"), "--force", *how, env=env)
        assert result.returncode == 0, result.stderr
        assert "[GL0403 RenderedSubsetWithoutPods]" in result.stderr
        dr = by_name(docs(result.stdout))["DestinationRule/dr-mocka"]
        assert dr["spec"]["subsets"][-1]["labels"] == {"track": "gray"}


def test_configmap_scripts_in_kruise_key_format(tmp_path: Path):
    configmap = tmp_path / "cm.yaml"
    configmap.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kruise-rollout-configuration", "namespace": "kruise-rollout"},
        "data": {"lua.traffic.routing.DestinationRule.networking.istio.io":
                 "obj.data.spec.host = 'from-configmap'\nreturn obj.data"}}))
    # --force: the DestinationRules now name another host, so no DestinationRule defines subset canary (GL0402)
    result = run_graylane("render", "-f", str(SAMPLES / "fulllink"), "--lua-configmap", str(configmap), "--force")
    assert result.returncode == 0, result.stderr
    assert "[GL0402 RenderedSubsetUndefined]" in result.stderr
    assert by_name(docs(result.stdout))["DestinationRule/dr-mockb"]["spec"]["host"] == "from-configmap"


def test_ingress_annotation_scripts_run(tmp_path: Path):
    (tmp_path / "trafficrouting_ingress").mkdir()
    (tmp_path / "trafficrouting_ingress" / "nginx.lua").write_text(
        'local a = obj.annotations\n'
        'a["nginx.ingress.kubernetes.io/canary"] = "true"\n'
        'if obj.weight ~= "-1" then a["nginx.ingress.kubernetes.io/canary-weight"] = obj.weight end\n'
        'return a\n')
    manifests = tmp_path / "in.yaml"
    manifests.write_text(yaml.safe_dump_all([
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
         "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
             "service": {"name": "web", "port": {"number": 80}}}}]}}]}},
        {"apiVersion": "rollouts.kruise.io/v1alpha1", "kind": "TrafficRouting", "metadata": {"name": "tr"},
         "spec": {"strategy": {"weight": 20}, "objectRef": [{"service": "web", "ingress": {"classType": "nginx",
                                                                                             "name": "web"}}]}},
    ]))
    result = run_graylane("render", "-f", str(manifests), "--lua-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    canary = docs(result.stdout)[0]
    assert canary["metadata"]["name"] == "web-canary"
    assert canary["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/canary": "true",
                                                 "nginx.ingress.kubernetes.io/canary-weight": "20"}
    # Kruise's TrafficRouting routes to the stable service itself (canaryService == stableService).
    assert canary["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "web"


TR = """apiVersion: rollouts.kruise.io/v1alpha1
kind: TrafficRouting
metadata:
  name: tr
spec:
  strategy:
    weight: {weight}
  objectRef:
  - service: mocka
    customNetworkRefs:
    - apiVersion: networking.istio.io/v1beta1
      kind: {kind}
      name: {name}
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "input.yaml"
    path.write_text(text)
    return str(path)


def script_dir(tmp_path: Path, body: str) -> str:
    directory = tmp_path / "lua" / "networking.istio.io" / "VirtualService"
    directory.mkdir(parents=True)
    (directory / "trafficRouting.lua").write_text(body)
    return str(tmp_path / "lua")


VS = (SAMPLES / "fulllink" / "mocka.yaml").read_text()


@pytest.mark.parametrize("make_input,extra,expected", [
    (lambda p: write(p, "kind: [unclosed\n"), [], r"input.yaml: document 1: not valid YAML \(line \d+, column \d+\)"),
    (lambda p: write(p, TR.format(weight=10, kind="VirtualService", name="nope") + "---\n" + VS), [],
     r"input.yaml: document 1: spec.objectRef\[0\].customNetworkRefs\[0\]: references VirtualService/nope"),
    (lambda p: write(p, TR.format(weight=150, kind="VirtualService", name="vs-mocka") + "---\n" + VS), [],
     r"input.yaml: document 1: spec.strategy.weight: weight must be an integer from 0 to 100, got 150"),
    (lambda p: write(p, TR.format(weight=10, kind="Sidecar", name="sc") + "---\napiVersion: networking.istio.io/v1beta1\n"
                        "kind: Sidecar\nmetadata:\n  name: sc\nspec: {}\n"), [],
     r"no traffic-routing script for networking.istio.io/Sidecar; searched: .*built-in networking.istio.io/Sidecar/trafficRouting.lua"),
    (lambda p: write(p, TR.format(weight=10, kind="VirtualService", name="vs-mocka") + "---\n" + VS),
     lambda p: ["--lua-dir", script_dir(p, "local x = nil\nreturn x.y")],
     r"script .*VirtualService/trafficRouting.lua:2: attempt to index local 'x'"),
    (lambda p: write(p, TR.format(weight=10, kind="VirtualService", name="vs-mocka") + "---\n" + VS),
     lambda p: ["--lua-dir", script_dir(p, "return 'text'")], r"output: returned string instead of a table"),
    (lambda p: write(p, TR.format(weight=10, kind="VirtualService", name="vs-mocka") + "---\n" + VS),
     lambda p: ["--lua-dir", script_dir(p, "return obj")], r"output: unexpected key\(s\)"),
    (lambda p: write(p, TR.format(weight=10, kind="VirtualService", name="vs-mocka") + "---\n" + VS),
     lambda p: ["--lua-dir", script_dir(p, "while true do end"), "--timeout", "0.2"], r"exceeded the time limit of 0.2s"),
    (lambda p: write(p, "- just\n- a list\n"), [], r"input.yaml: document 1: expected a Kubernetes object"),
    (lambda p: write(p, VS), [], r"no TrafficRouting .* or Rollout in the inputs"),
    (lambda p: str(p / "missing.yaml"), [], r"missing.yaml: no such file or directory"),
])
def test_bad_input_fails_cleanly(tmp_path, make_input, extra, expected):
    path = make_input(tmp_path)
    args = extra(tmp_path) if callable(extra) else extra
    result = run_graylane("render", "-f", path, *args)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    first, *details = result.stderr.strip().splitlines()
    # one line; script errors add indented lines pointing into the script (README, "Writing your own script")
    assert first.startswith("error: ") and all(line.startswith("  ") for line in details), result.stderr
    assert not details or " script " in first, result.stderr  # details follow script errors only
    import re
    assert re.search(expected, first), result.stderr


def test_render_step_out_of_range():
    result = run_graylane("render", "-f", str(SAMPLES / "weighted-canary"), "--step", "7")
    assert result.returncode == 1 and result.stdout == ""
    assert "--step 7 is out of range: the Rollout has 3 step(s)" in result.stderr


def test_restore_without_stored_original_is_an_error():
    result = run_graylane("restore", "-f", str(SAMPLES / "fulllink" / "mocka.yaml"))
    assert result.returncode == 1 and result.stdout == ""
    assert "nothing to restore" in result.stderr


def test_restore_objects_rendered_by_kruise():
    """Kruise stores the same JSON: graylane restores an object Kruise rendered."""
    kruise_rendered = {
        "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
        "metadata": {"name": "vs", "labels": {"added": "by-script"}, "annotations": {ANNOTATION: json.dumps(
            {"spec": {"hosts": ["a"], "http": []}, "labels": {"app": "a"}, "annotations": {"note": "x"}})}},
        "spec": {"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a-canary"}}]}]}}
    result = run_graylane("restore", "-f", "-", "-o", "json", input=json.dumps(kruise_rendered))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
        "metadata": {"name": "vs", "labels": {"app": "a"}, "annotations": {"note": "x"}},
        "spec": {"hosts": ["a"], "http": []}}


def test_stored_original_is_kruise_data_json_in_the_objects_own_order():
    from engine.routing.script_input import OriginalState, encode_original
    text = encode_original(OriginalState({"b": 1, "a": "<&>"}, {"z": "1", "a": "2"}, {}))
    assert text == '{"spec":{"b":1,"a":"<&>"},"labels":{"z":"1","a":"2"}}'
