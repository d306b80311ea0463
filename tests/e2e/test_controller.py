"""``graylane controller`` as a real subprocess against a real kube-apiserver (issue #5, parts 2 and 3)."""
from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from clusterlib import (DEPLOY, ORIGINAL, TR_API, create_all, free_port, graylane_command, has_canary_rule,
                        has_gray_subset, network_objects, phase, round_trip, routing, service_account_kubeconfig,
                        start_as_deployed, state, stopped_cleanly, tr, wait_for)

pytestmark = pytest.mark.e2e



def test_reconciles_create_change_drift_empty_strategy_and_delete(kube, kube_namespace, controllers):
    ns = kube_namespace
    created = network_objects(kube, ns, "mocka.yaml")
    controller = controllers(ns)
    kube.create(routing(ns))

    wait_for(lambda: phase(kube, ns, generation=1) == "Progressing", what="phase Progressing")
    body = tr(kube, ns)
    assert body["status"]["message"] == "TrafficRouting is Progressing"
    assert body["metadata"]["finalizers"] == ["graylane.io/restore"]
    assert has_canary_rule(kube.get("VirtualService", ns, "vs-mocka"))
    assert has_gray_subset(kube.get("DestinationRule", ns, "dr-mocka"))

    # A strategy change is followed.
    def to_gray(body):
        body["spec"]["strategy"]["matches"][0]["headers"][0]["value"] = "gray"
    kube.edit("TrafficRouting", ns, "mocka-tr", to_gray, TR_API)
    wait_for(lambda: has_canary_rule(kube.get("VirtualService", ns, "vs-mocka"), "gray"), what="new match")
    wait_for(lambda: phase(kube, ns, generation=2) == "Progressing", what="observedGeneration 2")
    assert sum(1 for rule in kube.get("VirtualService", ns, "vs-mocka")["spec"]["http"] if rule.get("match")) == 1

    # A GitOps sync puts the VirtualService back: the controller re-asserts.
    def gitops(body):
        body["spec"] = created["vs-mocka"]["spec"]
        body["metadata"].pop("annotations", None)
    kube.edit("VirtualService", ns, "vs-mocka", gitops)
    wait_for(lambda: has_canary_rule(kube.get("VirtualService", ns, "vs-mocka"), "gray"), what="re-assert")
    assert "changed by someone else" in controller.text()

    # An empty strategy ends the gray release: objects restored, phase Healthy.
    def empty(body):
        body["spec"]["strategy"] = {}
    kube.edit("TrafficRouting", ns, "mocka-tr", empty, TR_API)
    wait_for(lambda: phase(kube, ns, generation=3) == "Healthy", what="phase Healthy")
    for name in ("vs-mocka", "dr-mocka"):
        assert state(kube.get(created[name]["kind"], ns, name)) == state(created[name])

    def canary_again(body):
        body["spec"]["strategy"] = routing(ns)["spec"]["strategy"]
    kube.edit("TrafficRouting", ns, "mocka-tr", canary_again, TR_API)
    wait_for(lambda: phase(kube, ns, generation=4) == "Progressing", what="Progressing again")

    # Delete: the finalizer restores every referenced object first, then lets the TrafficRouting go.
    kube.delete("TrafficRouting", ns, "mocka-tr", TR_API)
    wait_for(lambda: tr(kube, ns) is None, what="the TrafficRouting to be gone")
    for name in ("vs-mocka", "dr-mocka"):
        assert state(kube.get(created[name]["kind"], ns, name)) == state(created[name])


def test_failing_configmap_script_is_reported_and_reload_fixes_it(kube, kube_env, kube_namespace, controllers):
    from kubernetes import client
    ns = kube_namespace
    core = client.CoreV1Api(kube.api)
    key = "lua.traffic.routing.VirtualService.networking.istio.io"
    core.create_namespaced_config_map(ns, {"metadata": {"name": "graylane-scripts"},
                                           "data": {key: 'error("boom from the configmap")'}})
    created = network_objects(kube, ns, "mocka.yaml")
    controllers(ns, "--scripts-configmap", f"{ns}/graylane-scripts")
    kube.create(routing(ns))

    def message():
        return ((tr(kube, ns) or {}).get("status") or {}).get("message") or ""
    wait_for(lambda: "boom from the configmap" in message(), what="the script error in status.message")
    text = message()
    assert text.startswith("TrafficRouting is not applied: 1 of 2 object(s) failed; nothing was changed")
    assert "ConfigMap key lua.traffic.routing.VirtualService.networking.istio.io" in text
    assert phase(kube, ns) == "Initial"
    for name in ("vs-mocka", "dr-mocka"):
        assert state(kube.get(created[name]["kind"], ns, name)) == state(created[name]), "nothing may change"

    fixed = ('local data = obj.data\n'
             'data.annotations = data.annotations or {}\n'
             'data.annotations["graylane.io/script"] = "configmap"\n'
             'return {spec = data.spec, labels = data.labels, annotations = data.annotations}\n')
    core.patch_namespaced_config_map("graylane-scripts", ns, {"data": {key: fixed}})
    wait_for(lambda: phase(kube, ns) == "Progressing", what="Progressing after the reload")
    vs = kube.get("VirtualService", ns, "vs-mocka")
    assert vs["metadata"]["annotations"]["graylane.io/script"] == "configmap"
    assert vs["spec"] == created["vs-mocka"]["spec"]
    assert has_gray_subset(kube.get("DestinationRule", ns, "dr-mocka")), "other kinds keep the built-in script"


def test_killed_between_writes_then_restarted_converges(kube, kube_namespace, controllers, tmp_path):
    """SIGKILL right after the first object's write (a file barrier holds the controller there), with the
    second object left the way Kruise leaves it when killed between storing the original and updating the
    spec. A fresh controller converges both, keeping the stored original."""
    ns = kube_namespace
    created = network_objects(kube, ns, "mocka.yaml")
    kruise_original = json.dumps({"spec": created["dr-mocka"]["spec"]}, separators=(",", ":"))

    def original_only(body):
        body["metadata"]["annotations"] = {ORIGINAL: kruise_original}
    kube.edit("DestinationRule", ns, "dr-mocka", original_only)

    barrier = tmp_path / "barrier"
    barrier.mkdir()
    (barrier / "after-write.VirtualService.vs-mocka.wait").touch()
    first = controllers(ns, env={"GRAYLANE_TEST_BARRIER": str(barrier)})
    kube.create(routing(ns))
    wait_for(lambda: (barrier / "after-write.VirtualService.vs-mocka.reached").exists(), what="the barrier")
    first.kill()
    assert has_canary_rule(kube.get("VirtualService", ns, "vs-mocka"))
    assert not has_gray_subset(kube.get("DestinationRule", ns, "dr-mocka")), "killed before the second write"

    (barrier / "after-write.VirtualService.vs-mocka.wait").unlink()
    controllers(ns)  # waits for the dead leader's Lease to expire, then takes over
    wait_for(lambda: has_gray_subset(kube.get("DestinationRule", ns, "dr-mocka")), 30, what="convergence")
    wait_for(lambda: phase(kube, ns, generation=1) == "Progressing", what="phase Progressing")
    dr = kube.get("DestinationRule", ns, "dr-mocka")
    assert dr["metadata"]["annotations"][ORIGINAL] == kruise_original
    assert has_canary_rule(kube.get("VirtualService", ns, "vs-mocka"))
    kube.delete("TrafficRouting", ns, "mocka-tr", TR_API)
    wait_for(lambda: tr(kube, ns) is None, what="deletion")
    for name in ("vs-mocka", "dr-mocka"):
        assert state(kube.get(created[name]["kind"], ns, name)) == state(created[name])


def test_leader_election_and_label_selector(kube, kube_namespace, controllers):
    ns = kube_namespace
    network_objects(kube, ns, "mocka.yaml", "mockb.yaml")
    from kubernetes import client
    leases = client.CoordinationV1Api(kube.api)
    flags = ("-l", "graylane.io/controller=yes")
    replicas = {name: controllers(ns, "--identity", name, *flags) for name in ("replica-a", "replica-b")}

    def holder():
        try:
            return leases.read_namespaced_lease("graylane-controller", ns).spec.holder_identity
        except client.exceptions.ApiException:
            return None
    leader = wait_for(holder, what="a leader")
    follower = next(name for name in replicas if name != leader)

    ignored = routing(ns, "mockb-tr")  # not selected: left to someone else (e.g. Kruise)
    kube.create(ignored)
    selected = routing(ns)
    selected["metadata"]["labels"] = {"graylane.io/controller": "yes"}
    kube.create(selected)
    wait_for(lambda: phase(kube, ns) == "Progressing", what="the selected TrafficRouting")
    assert "became the leader" not in replicas[follower].text()
    assert not tr(kube, ns, "mockb-tr").get("status") and not tr(kube, ns, "mockb-tr")["metadata"].get("finalizers")
    assert ORIGINAL not in (kube.get("VirtualService", ns, "vs-mockb")["metadata"].get("annotations") or {})

    assert replicas[leader].terminate() == 0, replicas[leader].text()
    assert "released Lease" in replicas[leader].text()
    wait_for(lambda: holder() == follower, 10, what="the follower to take over")

    def label(body):
        body["metadata"]["labels"] = {"graylane.io/controller": "yes"}
    kube.edit("TrafficRouting", ns, "mockb-tr", label, TR_API)
    wait_for(lambda: phase(kube, ns, "mockb-tr") == "Progressing", what="the new leader to reconcile")
    assert "became the leader" in replicas[follower].text()


def test_deploy_manifests_grant_exactly_enough(kube, kube_env, kube_namespace, tmp_path):
    """deploy/controller applied to the real server; the controller runs with the ServiceAccount's own token
    (RBAC enforced) exactly as the Deployment starts it, does its whole job without a single 403, and answers
    the Deployment's probes."""
    import urllib.request

    import yaml
    from kubernetes import client, config
    for name in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml", "deployment.yaml"):
        create_all(kube.api, DEPLOY / name)
    kubeconfig = service_account_kubeconfig(kube, kube_env, tmp_path)

    with config.new_client_from_config(config_file=str(kubeconfig), context="sa") as sa_api:
        reviews = client.AuthorizationV1Api(sa_api)

        def allowed(verb, group, resource, namespace=kube_namespace, name=None):
            review = {"spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource,
                                                      "namespace": namespace, "name": name}}}
            return reviews.create_self_subject_access_review(review).status.allowed
        assert allowed("patch", "networking.istio.io", "virtualservices")  # server-side apply
        assert allowed("update", "networking.istio.io", "destinationrules")  # restore, roll back
        assert not allowed("delete", "networking.istio.io", "virtualservices")
        assert not allowed("create", "networking.istio.io", "destinationrules")
        assert not allowed("patch", "rollouts.kruise.io", "trafficroutings")
        assert not allowed("get", "", "secrets")
        assert not allowed("get", "", "configmaps")  # only its own scripts ConfigMap
        assert allowed("get", "", "configmaps", "graylane-system", "graylane-scripts")
        assert not allowed("update", "coordination.k8s.io", "leases", kube_namespace, "graylane-controller")

    ns = kube_namespace
    created = network_objects(kube, ns, "mocka.yaml")
    core = client.CoreV1Api(kube.api)
    core.create_namespaced_config_map("graylane-system", {"metadata": {"name": "graylane-scripts"},
                                                          "data": {"unrelated": "x"}}) \
        if not core.list_namespaced_config_map("graylane-system",
                                               field_selector="metadata.name=graylane-scripts").items else None
    container = yaml.safe_load((DEPLOY / "deployment.yaml").read_text())["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    port = free_port()
    log = tmp_path / "sa-controller.log"
    proc = start_as_deployed(kubeconfig, log, ("$(POD_NAME)", "rbac-test"),
                             ("--health-port=8081", f"--health-port={port}"))

    def probes_answer():
        for path in ("healthz", "readyz"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=5) as response:
                assert response.status == 200 and response.read() == b"ok\n"
    try:
        round_trip(kube, ns, created, probes_answer)
    finally:
        text = stopped_cleanly(proc, log)
    assert "rbac-test became the leader (Lease graylane-system/graylane-controller)" in text
    assert "released Lease graylane-system/graylane-controller" in text


def test_controller_runs_scripts_packaged_by_graylane_script_configmap(kube, kube_namespace, controllers, tmp_path):
    """A script directory, packaged by ``graylane script configmap`` and created as is, is what the controller runs."""
    from kubernetes import client
    ns = kube_namespace
    script = tmp_path / "scripts" / "networking.istio.io" / "VirtualService" / "trafficRouting.lua"
    script.parent.mkdir(parents=True)
    script.write_text('local data = obj.data\n'
                      'data.annotations = data.annotations or {}\n'
                      'data.annotations["graylane.io/script"] = "packaged " .. obj.canaryService\n'
                      'return data\n')
    packaged = subprocess.run([*graylane_command(), "script", "configmap", str(tmp_path / "scripts"), "-n", ns,
                               "--name", "graylane-scripts"], capture_output=True, text=True, timeout=60)
    assert packaged.returncode == 0, packaged.stderr
    configmap = yaml.safe_load(packaged.stdout)
    assert configmap["data"] == {"lua.traffic.routing.VirtualService.networking.istio.io": script.read_text()}
    client.CoreV1Api(kube.api).create_namespaced_config_map(ns, configmap)
    created = network_objects(kube, ns, "mocka.yaml")
    controllers(ns, "--scripts-configmap", f"{ns}/graylane-scripts")  # the ConfigMap is in the watched namespace
    kube.create(routing(ns))
    wait_for(lambda: phase(kube, ns) == "Progressing", what="Progressing with the packaged script")
    vs = kube.get("VirtualService", ns, "vs-mocka")
    assert vs["metadata"]["annotations"]["graylane.io/script"] == "packaged mocka"
    assert vs["spec"] == created["vs-mocka"]["spec"]
