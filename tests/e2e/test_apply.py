"""graylane apply / restore / status against a real kube-apiserver (issue #5, part 1 and 3).

Every test runs the installed ``graylane`` command as a user would, with --kubeconfig/--context pointing
at the throwaway API server, and checks the objects with the official client.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from clusterlib import (ORIGINAL, SAMPLES, Kube, cluster_args, graylane, graylane_command, load, state,
                        wait_for, write_yaml)

pytestmark = pytest.mark.e2e

FULLLINK = SAMPLES / "fulllink"
NETWORK = ("VirtualService", "DestinationRule")


@pytest.fixture
def kube(kube_env):
    return Kube(kube_env)


def setup_fulllink(kube: Kube, namespace: str, tmp_path: Path) -> tuple[Path, dict]:
    """mocka/mockb VirtualServices and DestinationRules in the namespace; returns the TrafficRouting file
    and the objects as created (by name)."""
    created = {}
    for name in ("mocka.yaml", "mockb.yaml"):
        for body in load(FULLLINK / name, namespace, NETWORK):
            created[body["metadata"]["name"]] = kube.create(body)
    routing = write_yaml(tmp_path / "tr.yaml", load(FULLLINK / "trafficrouting.yaml", namespace))
    return routing, created


def setup_reviews(kube: Kube, namespace: str, tmp_path: Path) -> tuple[Path, dict]:
    (vs,) = load(SAMPLES / "weighted-canary" / "reviews.yaml", namespace, ("VirtualService",))
    vs["spec"]["http"][0]["route"][0]["destination"]["host"] = f"reviews.{namespace}.svc.cluster.local"
    created = kube.create(vs)
    rollout = write_yaml(tmp_path / "rollout.yaml", load(SAMPLES / "weighted-canary" / "reviews.yaml", namespace,
                                                         ("Rollout",)))
    return rollout, created


def lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.strip()]


def canary_weight(vs: dict) -> int:
    for rule in vs["spec"]["http"]:
        for route in rule["route"]:
            if route["destination"]["host"].startswith("reviews-canary"):
                return route["weight"]
    raise AssertionError("no canary route")


def test_apply_second_apply_status_restore_round_trip(kube, kube_env, kube_namespace, tmp_path):
    ns = kube_namespace
    routing, created = setup_fulllink(kube, ns, tmp_path)

    first = graylane(kube_env, "apply", "-f", str(routing))
    assert first.returncode == 0, first.stderr
    assert lines(first) == [f"{kind}.networking.istio.io/{name} configured" for kind, name in
                            [("virtualservice", "vs-mocka"), ("destinationrule", "dr-mocka"),
                             ("virtualservice", "vs-mockb"), ("destinationrule", "dr-mockb")]]

    # Same objects and same stored-original JSON as the offline render of the same inputs.
    exported = tmp_path / "exported.yaml"
    write_yaml(exported, [{k: v for k, v in body.items() if k != "status"} | {
        "metadata": {"name": body["metadata"]["name"], "namespace": ns}} for body in created.values()])
    rendered = graylane(kube_env, "render", "-f", str(exported), "-f", str(routing), cluster=False)
    assert rendered.returncode == 0, rendered.stderr
    for expected in yaml.safe_load_all(rendered.stdout):
        live = kube.get(expected["kind"], ns, expected["metadata"]["name"])
        assert live["spec"] == expected["spec"]
        assert live["metadata"]["annotations"][ORIGINAL] == expected["metadata"]["annotations"][ORIGINAL]
        assert json.loads(live["metadata"]["annotations"][ORIGINAL]) == {"spec": created[
            expected["metadata"]["name"]]["spec"]}

    versions = {name: kube.get(body["kind"], ns, name)["metadata"]["resourceVersion"]
                for name, body in created.items()}
    second = graylane(kube_env, "apply", "-f", str(routing))
    assert second.returncode == 0, second.stderr
    assert all(line.endswith(" unchanged") for line in lines(second)) and len(lines(second)) == 4
    assert versions == {name: kube.get(body["kind"], ns, name)["metadata"]["resourceVersion"]
                        for name, body in created.items()}, "a second apply must not write"

    status = graylane(kube_env, "status", "-f", str(routing), "-o", "json")
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)["items"]
    assert [row["originalStored"] for row in rows] == [True] * 4
    vs_row = rows[0]
    assert vs_row["canaryWeight"] is None
    assert vs_row["matches"] == [{"headers": {"my-request-id": {"exact": "canary"}}}]
    assert rows[1]["graySubset"] == {"name": "canary", "labels": {"istio.service.tag": "gray"}}
    text = graylane(kube_env, "status", "-f", str(routing))
    assert "original stored: yes" in text.stdout and "header my-request-id exact 'canary'" in text.stdout

    # Only TrafficRoutings in the inputs: restore goes to the cluster without --cluster.
    restored = graylane(kube_env, "restore", "-f", str(routing))
    assert restored.returncode == 0, restored.stderr
    assert all(line.endswith(" restored") for line in lines(restored)) and len(lines(restored)) == 4
    for name, body in created.items():
        live = kube.get(body["kind"], ns, name)
        assert state(live) == state(body), f"{name} was not restored exactly"

    again = graylane(kube_env, "restore", "-f", str(routing))
    assert again.returncode == 0, again.stderr
    assert all(line.endswith("unchanged: no stored original") for line in lines(again))
    status = json.loads(graylane(kube_env, "status", "-f", str(routing), "-o", "json").stdout)["items"]
    assert [row["originalStored"] for row in status] == [False] * 4


def test_rollout_steps_run_on_the_stored_original(kube, kube_env, kube_namespace, tmp_path):
    ns = kube_namespace
    rollout, created = setup_reviews(kube, ns, tmp_path)
    for step, weight in ((2, 50), (1, 5), (3, 100)):
        result = graylane(kube_env, "apply", "-f", str(rollout), "--step", str(step))
        assert result.returncode == 0, result.stderr
        live = kube.get("VirtualService", ns, "reviews")
        assert canary_weight(live) == weight, "each step starts from the stored original, not the last step"
        assert json.loads(live["metadata"]["annotations"][ORIGINAL]) == {"spec": created["spec"]}
        status = json.loads(graylane(kube_env, "status", "-f", str(rollout), "-o", "json").stdout)
        assert status["canaryWeight"] == weight
    restored = graylane(kube_env, "restore", "--cluster", "-f", str(rollout))
    assert restored.returncode == 0, restored.stderr
    assert state(kube.get("VirtualService", ns, "reviews")) == state(created)


def test_original_stored_by_kruise_is_honoured_both_ways(kube, kube_env, kube_namespace, tmp_path):
    """An object Kruise already touched (original stored, spec modified) is applied from Kruise's stored
    original, and graylane's restore gives back that original."""
    ns = kube_namespace
    (vs,) = load(FULLLINK / "mocka.yaml", ns, ("VirtualService",))
    original_spec = vs["spec"]
    kruise_original = json.dumps({"spec": original_spec}, separators=(",", ":"), sort_keys=True)
    touched = json.loads(json.dumps(vs))
    touched["metadata"]["annotations"] = {ORIGINAL: kruise_original}
    touched["spec"]["http"].insert(0, {"match": [{"headers": {"x-old": {"exact": "1"}}}],
                                       "route": [{"destination": {"host": "mocka", "subset": "canary"}}]})
    kube.create(touched)
    (tr,) = [d for d in load(FULLLINK / "trafficrouting.yaml", ns) if d["metadata"]["name"] == "mocka-tr"]
    tr["spec"]["objectRef"][0]["customNetworkRefs"] = tr["spec"]["objectRef"][0]["customNetworkRefs"][:1]
    routing = write_yaml(tmp_path / "tr.yaml", [tr])
    # the DestinationRule is not in the cluster here, so the canary subset is undefined (GL0402): beside the point
    result = graylane(kube_env, "apply", "-f", str(routing), "--force")
    assert result.returncode == 0, result.stderr
    assert "[GL0402 RenderedSubsetUndefined]" in result.stderr
    live = kube.get("VirtualService", ns, "vs-mocka")
    assert live["metadata"]["annotations"][ORIGINAL] == kruise_original, "the stored original is kept as is"
    assert not any("x-old" in json.dumps(rule) for rule in live["spec"]["http"]), \
        "the script ran on the stored original, not on Kruise's modified spec"
    assert graylane(kube_env, "restore", "-f", str(routing)).returncode == 0
    assert kube.get("VirtualService", ns, "vs-mocka")["spec"] == original_spec


def test_dry_run_client_and_server_write_nothing(kube, kube_env, kube_namespace, tmp_path):
    ns = kube_namespace
    rollout, created = setup_reviews(kube, ns, tmp_path)
    version = created["metadata"]["resourceVersion"]
    client_run = graylane(kube_env, "apply", "-f", str(rollout), "--dry-run=client")
    assert client_run.returncode == 0, client_run.stderr
    assert "virtualservice.networking.istio.io/reviews configured (dry run)" in client_run.stdout
    assert "+        host: reviews-canary." in client_run.stdout, client_run.stdout
    server_run = graylane(kube_env, "apply", "-f", str(rollout), "--dry-run=server")
    assert server_run.returncode == 0, server_run.stderr
    assert lines(server_run) == ["virtualservice.networking.istio.io/reviews configured (server dry run)"]
    assert kube.get("VirtualService", ns, "reviews")["metadata"]["resourceVersion"] == version


def test_concurrent_edit_between_read_and_write_is_retried_on_fresh_data(kube, kube_env, kube_namespace,
                                                                         tmp_path):
    """The test edits the VirtualService while graylane waits between its GET and its PUT (a file barrier,
    $GRAYLANE_TEST_BARRIER): the PUT gets a real 409, graylane re-reads, re-runs the script on the edited
    object and keeps the edit."""
    ns = kube_namespace
    rollout, _created = setup_reviews(kube, ns, tmp_path)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    (barrier / "before-write.VirtualService.reviews.wait").touch()
    argv = [*graylane_command(), "apply", "-f", str(rollout), *cluster_args(kube_env)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "GRAYLANE_TEST_BARRIER": str(barrier)})
    try:
        wait_for(lambda: (barrier / "before-write.VirtualService.reviews.reached").exists(), 60,
                 what="graylane to reach the barrier")

        def edit(body):
            body["spec"]["http"][0]["timeout"] = "20s"
        kube.edit("VirtualService", ns, "reviews", edit)
        (barrier / "before-write.VirtualService.reviews.wait").unlink()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "virtualservice.networking.istio.io/reviews configured after 2 attempts" in out, out
    live = kube.get("VirtualService", ns, "reviews")
    assert canary_weight(live) == 5
    assert all(rule.get("timeout") == "20s" for rule in live["spec"]["http"]), "the concurrent edit was kept"
    assert json.loads(live["metadata"]["annotations"][ORIGINAL])["spec"]["http"][0]["timeout"] == "20s"


def _deny_canary_subsets(kube: Kube, namespace: str) -> None:
    """A ValidatingAdmissionPolicy (CEL, enforced by the API server itself) that rejects DestinationRules
    with a canary subset in this namespace: a real server-side failure for the second object's write."""
    from kubernetes import client
    admission = client.AdmissionregistrationV1Api(kube.api)
    name = f"deny-canary-{namespace}"
    admission.create_validating_admission_policy({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail",
                 "matchConstraints": {"resourceRules": [{"apiGroups": ["networking.istio.io"], "apiVersions": ["*"],
                                                         "operations": ["UPDATE"],
                                                         "resources": ["destinationrules"]}]},
                 "validations": [{"expression": "!has(object.spec.subsets) || "
                                                "object.spec.subsets.all(s, s.name != 'canary')",
                                  "message": "canary subsets are frozen here"}]}})
    admission.create_validating_admission_policy_binding({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {
                     "kubernetes.io/metadata.name": namespace}}}}})


def test_failure_on_second_object_puts_the_first_back(kube, kube_env, kube_namespace, tmp_path):
    ns = kube_namespace
    routing, created = setup_fulllink(kube, ns, tmp_path)
    (tr,) = [d for d in load(FULLLINK / "trafficrouting.yaml", ns) if d["metadata"]["name"] == "mocka-tr"]
    routing = write_yaml(tmp_path / "mocka.yaml", [tr])
    _deny_canary_subsets(kube, ns)

    def denied():  # the policy is enforced once the API server has loaded it
        result = graylane(kube_env, "apply", "-f", str(routing), "--dry-run=server")
        return "canary subsets are frozen here" in result.stdout
    wait_for(denied, 60, 0.5, "the admission policy to take effect")

    result = graylane(kube_env, "apply", "-f", str(routing))
    assert result.returncode != 0
    out = lines(result)
    assert out[0] == "virtualservice.networking.istio.io/vs-mocka rolled back: put back to its state before this call"
    assert out[1].startswith("destinationrule.networking.istio.io/dr-mocka failed: updating "), out
    assert "canary subsets are frozen here" in out[1]
    assert "1 object(s) changed by this call were put back" in result.stderr
    for name in ("vs-mocka", "dr-mocka"):
        assert state(kube.get(created[name]["kind"], ns, name)) == state(created[name])


def test_failure_while_planning_changes_nothing(kube, kube_env, kube_namespace, tmp_path):
    """A missing object or a failing script is found before anything is written."""
    ns = kube_namespace
    routing, created = setup_fulllink(kube, ns, tmp_path)
    kube.delete("DestinationRule", ns, "dr-mockb")
    result = graylane(kube_env, "apply", "-f", str(routing))
    assert result.returncode == 1
    assert f"destinationrule.networking.istio.io/dr-mockb missing: not found in namespace {ns}" in result.stdout
    assert "virtualservice.networking.istio.io/vs-mocka not changed: another referenced object failed" \
        in result.stdout
    assert "1 of 4 object(s) failed; nothing was changed" in result.stderr

    scripts = tmp_path / "lua" / "networking.istio.io" / "DestinationRule"
    scripts.mkdir(parents=True)
    (scripts / "trafficRouting.lua").write_text('error("subset labels unknown")\n')
    kube.create(load(FULLLINK / "mockb.yaml", ns, ("DestinationRule",))[0])
    result = graylane(kube_env, "apply", "-f", str(routing), "--lua-dir", str(tmp_path / "lua"))
    assert result.returncode == 1
    assert "destinationrule.networking.istio.io/dr-mocka failed: script" in result.stdout
    assert "subset labels unknown" in result.stdout
    for name, body in created.items():
        live = kube.get(body["kind"], ns, name)
        assert ORIGINAL not in (live["metadata"].get("annotations") or {})


def test_restore_skips_missing_objects(kube, kube_env, kube_namespace, tmp_path):
    ns = kube_namespace
    routing, created = setup_fulllink(kube, ns, tmp_path)
    assert graylane(kube_env, "apply", "-f", str(routing)).returncode == 0
    kube.delete("DestinationRule", ns, "dr-mocka")
    result = graylane(kube_env, "restore", "-f", str(routing))
    assert result.returncode == 0, result.stderr
    assert f"destinationrule.networking.istio.io/dr-mocka missing: not found in namespace {ns}; skipped" \
        in result.stdout
    assert state(kube.get("VirtualService", ns, "vs-mocka")) == state(created["vs-mocka"])
    assert state(kube.get("DestinationRule", ns, "dr-mockb")) == state(created["dr-mockb"])


def test_status_by_trafficrouting_name_and_kubectl_style_namespaces(kube, kube_env, kube_namespace, tmp_path):
    ns = kube_namespace
    routing, _created = setup_fulllink(kube, ns, tmp_path)
    for tr in load(FULLLINK / "trafficrouting.yaml", ns):
        kube.create(tr)
    # A kubeconfig (via $KUBECONFIG) whose current context's namespace is the test namespace, and
    # TrafficRoutings without a namespace: like kubectl, the context's namespace is used.
    config = yaml.safe_load(Path(kube_env.kubeconfig).read_text())
    config["contexts"].append({"name": "team", "context": {**config["contexts"][0]["context"], "namespace": ns}})
    config["current-context"] = "team"
    kubeconfig = write_yaml(tmp_path / "kubeconfig", [config])
    bare = load(FULLLINK / "trafficrouting.yaml", ns)
    for doc in bare:
        del doc["metadata"]["namespace"]
    bare_file = write_yaml(tmp_path / "bare.yaml", bare)
    env = {"KUBECONFIG": str(kubeconfig)}
    result = graylane(kube_env, "apply", "-f", str(bare_file), env=env, cluster=False)
    assert result.returncode == 0, result.stderr

    status = graylane(kube_env, "status", "mocka-tr", "-o", "json", env=env, cluster=False)
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)["items"]
    assert [row["object"] for row in rows] == ["virtualservice.networking.istio.io/vs-mocka",
                                               "destinationrule.networking.istio.io/dr-mocka"]
    assert all(row["originalStored"] and row["namespace"] == ns for row in rows)

    # -n wins over the context for objects without a namespace; a conflicting one is refused.
    other = graylane(kube_env, "status", "-f", str(bare_file), "-n", "default", "-o", "json", env=env, cluster=False)
    assert other.returncode == 1 and not any(row["found"] for row in json.loads(other.stdout)["items"])
    clash = graylane(kube_env, "apply", "-f", str(routing), "-n", "default")
    assert clash.returncode == 1 and f'pass --namespace={ns}' in clash.stderr
    missing = graylane(kube_env, "status", "nope", "-n", ns)
    assert missing.returncode == 1 and f"TrafficRouting nope not found in namespace {ns}" in missing.stderr
    bad_context = graylane(kube_env, "status", "mocka-tr", "--context", "nope", env=env, cluster=False)
    assert bad_context.returncode == 1 and "kubeconfig:" in bad_context.stderr


def test_invalid_script_output_is_refused(kube, kube_env, kube_namespace, tmp_path):
    """The output is validated (schemas and route-weight rules) before anything is written."""
    ns = kube_namespace
    rollout, created = setup_reviews(kube, ns, tmp_path)
    scripts = tmp_path / "lua" / "networking.istio.io" / "VirtualService"
    scripts.mkdir(parents=True)
    (scripts / "trafficRouting.lua").write_text(
        "local spec = obj.data.spec\n"
        "spec.http[1].route[1].weight = 70\n"
        'table.insert(spec.http[1].route, {destination = {host = "reviews-canary"}, weight = 50})\n'
        "return {spec = spec}\n")
    result = graylane(kube_env, "apply", "-f", str(rollout), "--lua-dir", str(tmp_path / "lua"))
    assert result.returncode == 1
    assert "virtualservice.networking.istio.io/reviews failed:" in result.stdout
    assert "is invalid" in result.stdout, result.stdout
    assert kube.get("VirtualService", ns, "reviews")["metadata"]["resourceVersion"] == \
        created["metadata"]["resourceVersion"]
