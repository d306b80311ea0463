"""``graylane controller`` as a real subprocess against a real kube-apiserver (issue #5, parts 2 and 3)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from clusterlib import ORIGINAL, SAMPLES, Kube, cluster_args, graylane_command, load, state, wait_for

pytestmark = pytest.mark.e2e

FULLLINK = SAMPLES / "fulllink"
TR_API = "rollouts.kruise.io/v1alpha1"
NETWORK = ("VirtualService", "DestinationRule")


class Controller:
    def __init__(self, kube_env, namespace: str, log: Path, *extra: str, env: dict | None = None):
        self.log = log
        argv = [*graylane_command(), "controller", *cluster_args(kube_env), "-n", namespace,
                "--lease-duration", "3", "--drift-interval", "1", "--resync", "60", *extra]
        self.handle = log.open("w")
        self.proc = subprocess.Popen(argv, stdout=self.handle, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, **(env or {})})

    def text(self) -> str:
        return self.log.read_text()

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.handle.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self.handle.close()


@pytest.fixture
def controllers(kube_env, tmp_path):
    """Start controllers with ``start(namespace, *flags)``; each must stop cleanly (exit 0) on SIGTERM."""
    started: list[Controller] = []

    def start(namespace: str, *extra: str, env: dict | None = None) -> Controller:
        controller = Controller(kube_env, namespace, tmp_path / f"controller-{len(started)}.log", *extra, env=env)
        started.append(controller)
        return controller
    yield start
    for controller in started:
        if controller.proc.poll() is None:
            code = controller.terminate()
            assert code == 0, f"controller did not stop cleanly ({code}):\n{controller.text()[-3000:]}"


@pytest.fixture
def kube(kube_env):
    return Kube(kube_env)


def network_objects(kube: Kube, namespace: str, *files: str) -> dict:
    created = {}
    for name in files:
        for body in load(FULLLINK / name, namespace, NETWORK):
            created[body["metadata"]["name"]] = kube.create(body)
    return created


def routing(namespace: str, name: str = "mocka-tr") -> dict:
    return next(d for d in load(FULLLINK / "trafficrouting.yaml", namespace) if d["metadata"]["name"] == name)


def tr(kube: Kube, namespace: str, name: str = "mocka-tr") -> dict | None:
    return kube.get("TrafficRouting", namespace, name, TR_API)


def has_canary_rule(vs: dict, value: str = "canary") -> bool:
    first = vs["spec"]["http"][0]
    return first.get("match") == [{"headers": {"my-request-id": {"exact": value}}}] \
        and first["route"][0]["destination"].get("subset") == "canary"


def has_gray_subset(dr: dict) -> bool:
    return any(s["name"] == "canary" for s in dr["spec"]["subsets"])


def phase(kube: Kube, namespace: str, name: str = "mocka-tr", generation: int | None = None):
    body = tr(kube, namespace, name)
    status = (body or {}).get("status") or {}
    if generation is not None and status.get("observedGeneration") != generation:
        return None
    return status.get("phase")


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
    controllers(ns, "--scripts-configmap", "graylane-scripts")
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


def test_leader_election_and_label_selector(kube, kube_env, kube_namespace, controllers):
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


def _create_all(api, path: Path) -> None:
    """Create every manifest in the file (already existing objects are fine: the server is session-wide)."""
    import yaml
    from kubernetes import utils
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc:
            continue
        try:
            utils.create_from_dict(api, doc)
        except utils.FailToCreateError as exc:
            if any(getattr(e, "status", None) != 409 for e in exc.api_exceptions):
                raise


def test_deploy_manifests_grant_exactly_enough(kube, kube_env, kube_namespace, controllers, tmp_path):
    """deploy/controller applied to the real server; the controller runs with the ServiceAccount's own token
    (RBAC enforced) exactly as the Deployment starts it, and does its whole job without a single 403."""
    import yaml
    from kubernetes import client, config
    deploy = Path(__file__).resolve().parents[2] / "deploy" / "controller"
    for name in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml", "deployment.yaml"):
        _create_all(kube.api, deploy / name)
    core = client.CoreV1Api(kube.api)
    token = core.create_namespaced_service_account_token(
        "graylane-controller", "graylane-system", {"spec": {"expirationSeconds": 3600}}).status.token
    admin = yaml.safe_load(Path(kube_env.kubeconfig).read_text())
    kubeconfig = tmp_path / "sa-kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": admin["clusters"], "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": admin["clusters"][0]["name"], "user": "sa",
                                                "namespace": "graylane-system"}}]}))

    with config.new_client_from_config(config_file=str(kubeconfig), context="sa") as sa_api:
        reviews = client.AuthorizationV1Api(sa_api)

        def allowed(verb, group, resource, namespace=kube_namespace, name=None):
            review = {"spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource,
                                                      "namespace": namespace, "name": name}}}
            return reviews.create_self_subject_access_review(review).status.allowed
        assert allowed("update", "networking.istio.io", "virtualservices")
        assert not allowed("delete", "networking.istio.io", "virtualservices")
        assert not allowed("patch", "networking.istio.io", "destinationrules")
        assert not allowed("get", "", "secrets")
        assert not allowed("get", "", "configmaps")  # only its own scripts ConfigMap
        assert allowed("get", "", "configmaps", "graylane-system", "graylane-scripts")
        assert not allowed("update", "coordination.k8s.io", "leases", kube_namespace, "graylane-controller")

    ns = kube_namespace
    created = network_objects(kube, ns, "mocka.yaml")
    core.create_namespaced_config_map("graylane-system", {"metadata": {"name": "graylane-scripts"},
                                                          "data": {"unrelated": "x"}}) \
        if not core.list_namespaced_config_map("graylane-system",
                                               field_selector="metadata.name=graylane-scripts").items else None
    deployment = yaml.safe_load((deploy / "deployment.yaml").read_text())
    args = [a.replace("$(POD_NAME)", "rbac-test") for a in deployment["spec"]["template"]["spec"]["containers"][0]
            ["args"]]
    argv = [*graylane_command(), *args, "--kubeconfig", str(kubeconfig), "--lease-duration", "3"]
    log = (tmp_path / "sa-controller.log").open("w")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        body = routing(ns)
        body["metadata"]["labels"] = {"graylane.io/controller": "enabled"}
        kube.create(body)
        wait_for(lambda: phase(kube, ns) == "Progressing", what="reconcile under the ServiceAccount")
        kube.delete("TrafficRouting", ns, "mocka-tr", TR_API)
        wait_for(lambda: tr(kube, ns) is None, what="restore and finalizer removal")
        for name in ("vs-mocka", "dr-mocka"):
            assert state(kube.get(created[name]["kind"], ns, name)) == state(created[name])
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log.close()
    text = (tmp_path / "sa-controller.log").read_text()
    assert code == 0, text
    assert "Forbidden" not in text and "403" not in text, text
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
    controllers(ns, "--scripts-configmap", "graylane-scripts")
    kube.create(routing(ns))
    wait_for(lambda: phase(kube, ns) == "Progressing", what="Progressing with the packaged script")
    vs = kube.get("VirtualService", ns, "vs-mocka")
    assert vs["metadata"]["annotations"]["graylane.io/script"] == "packaged mocka"
    assert vs["spec"] == created["vs-mocka"]["spec"]
