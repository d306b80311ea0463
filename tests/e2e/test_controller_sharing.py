"""The controller shares its objects with other writers (issue #17, part 1), against a real kube-apiserver:
graylane re-asserts only what its strategy owns (engine.routing.ownership), folds everyone else's edits into
the stored original, recognises its own additions without the annotation, and settles with a self-healing
GitOps writer that ignores exactly what ``graylane argocd ignore-differences`` prints, as Argo CD does."""
from __future__ import annotations

import copy
import json
import threading
import time

import pytest

from argocdlib import entry_for, normalize, with_live_ignored
from clusterlib import (ORIGINAL, TR_API, has_canary_rule, network_objects, phase, routing, state, tr,
                        wait_for, write_yaml, writes_by)
from engine.routing.ownership import CANARY_SUBSET, routes_to_canary
from helpers import run_graylane

pytestmark = pytest.mark.e2e

ADMIN_RULE = {"name": "admin", "match": [{"uri": {"prefix": "/admin"}}],
              "route": [{"destination": {"host": "mocka", "subset": "version-base"}}]}
V3_SUBSET = {"name": "v3", "labels": {"version": "v3"}}


def lane_rules(vs: dict) -> int:
    return sum(1 for rule in vs["spec"]["http"] if routes_to_canary(rule, "mocka", "mocka"))


def stored_original(body: dict) -> dict:
    return json.loads(body["metadata"]["annotations"][ORIGINAL])


def test_other_writers_edits_survive_reassertion_and_deletion(kube, kube_namespace, controllers):
    ns = kube_namespace
    created = network_objects(kube, ns, "mocka.yaml")
    controller = controllers(ns, "--identity", "sharing")
    kube.create(routing(ns))
    wait_for(lambda: phase(kube, ns) == "Progressing", what="Progressing")

    def vs_edit(body):
        body["metadata"].setdefault("labels", {})["owner"] = "gitops"
        body["spec"]["http"].append(ADMIN_RULE)
    kube.edit("VirtualService", ns, "vs-mocka", vs_edit)
    kube.edit("DestinationRule", ns, "dr-mocka", lambda body: body["spec"]["subsets"].append(V3_SUBSET))

    # The drift re-assertion folds the edits into the stored original instead of removing them.
    wait_for(lambda: ADMIN_RULE in stored_original(kube.get("VirtualService", ns, "vs-mocka"))["spec"]["http"],
             what="the admin rule in the stored original")
    wait_for(lambda: V3_SUBSET in stored_original(kube.get("DestinationRule", ns, "dr-mocka"))["spec"]["subsets"],
             what="subset v3 in the stored original")
    time.sleep(2)  # several drift intervals: nothing takes the edits away
    vs, dr = kube.get("VirtualService", ns, "vs-mocka"), kube.get("DestinationRule", ns, "dr-mocka")
    assert vs["metadata"]["labels"]["owner"] == "gitops" and ADMIN_RULE in vs["spec"]["http"]
    assert V3_SUBSET in dr["spec"]["subsets"] and any(s["name"] == CANARY_SUBSET for s in dr["spec"]["subsets"])
    assert lane_rules(vs) == 1 and has_canary_rule(vs)
    assert "changed by someone else" in controller.text()
    managers = {(m["manager"], m["operation"]) for m in vs["metadata"]["managedFields"]}
    assert ("graylane", "Apply") in managers, managers  # server-side apply, visible ownership

    kube.delete("TrafficRouting", ns, "mocka-tr", TR_API)
    wait_for(lambda: tr(kube, ns) is None, what="the TrafficRouting to be gone")
    expected_vs, expected_dr = copy.deepcopy(created["vs-mocka"]), copy.deepcopy(created["dr-mocka"])
    vs_edit(expected_vs)
    expected_dr["spec"]["subsets"].append(V3_SUBSET)
    assert state(kube.get("VirtualService", ns, "vs-mocka")) == state(expected_vs)
    assert state(kube.get("DestinationRule", ns, "dr-mocka")) == state(expected_dr)


def test_a_dropped_annotation_does_not_apply_the_strategy_twice(kube, kube_namespace, controllers):
    ns = kube_namespace
    created = network_objects(kube, ns, "mocka.yaml")
    controllers(ns)
    kube.create(routing(ns))
    wait_for(lambda: phase(kube, ns) == "Progressing", what="Progressing")
    for kind, name in (("VirtualService", "vs-mocka"), ("DestinationRule", "dr-mocka")):
        kube.edit(kind, ns, name, lambda body: body["metadata"]["annotations"].pop(ORIGINAL))
    wait_for(lambda: ORIGINAL in kube.get("VirtualService", ns, "vs-mocka")["metadata"].get("annotations", {})
             and ORIGINAL in kube.get("DestinationRule", ns, "dr-mocka")["metadata"].get("annotations", {}),
             what="the annotations to be stored again")
    time.sleep(2)
    vs, dr = kube.get("VirtualService", ns, "vs-mocka"), kube.get("DestinationRule", ns, "dr-mocka")
    assert lane_rules(vs) == 1, vs["spec"]["http"]
    assert sum(1 for s in dr["spec"]["subsets"] if s["name"] == CANARY_SUBSET) == 1
    assert stored_original(vs)["spec"] == created["vs-mocka"]["spec"]
    kube.delete("TrafficRouting", ns, "mocka-tr", TR_API)
    wait_for(lambda: tr(kube, ns) is None, what="the TrafficRouting to be gone")
    for name in ("vs-mocka", "dr-mocka"):
        assert state(kube.get(created[name]["kind"], ns, name)) == state(created[name])


def argocd_entries(tmp_path, git: dict, routing_body: dict) -> list[dict]:
    """The ignoreDifferences ``graylane argocd ignore-differences`` prints for git's objects and routing."""
    source = write_yaml(tmp_path / f"git-{len(list(tmp_path.iterdir()))}.yaml", [*git.values(), routing_body])
    result = run_graylane("argocd", "ignore-differences", "-f", str(source), "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["spec"]["ignoreDifferences"]


def compared(body: dict) -> dict:
    """What a GitOps sync compares: the spec, and the labels and annotations git can set."""
    meta = body.get("metadata") or {}
    return {"metadata": {k: meta[k] for k in ("labels", "annotations") if meta.get(k)}, "spec": body.get("spec")}


class SelfHealer:
    """Argo CD with self-heal on, the ignoreDifferences of ``graylane argocd`` and RespectIgnoreDifferences:
    whenever the live object differs from git outside the ignored paths (argocdlib.normalize), it writes git's
    version with the live values at the ignored paths (argocdlib.with_live_ignored)."""

    def __init__(self, kube_env, namespace: str, git: dict, entries: list[dict]):
        from kubernetes import client
        self.api = kube_env.api_client()
        self.api.user_agent = "self-healer"
        self.custom = client.CustomObjectsApi(self.api)
        self.namespace = namespace
        self.desired = (git, entries)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        from kubernetes.client.exceptions import ApiException
        while not self.stop.wait(0.3):
            git_objects, entries = self.desired  # a git commit carries the manifests and the Application
            for git in git_objects.values():
                plural = {"VirtualService": "virtualservices", "DestinationRule": "destinationrules"}[git["kind"]]
                name = git["metadata"]["name"]
                live = self.custom.get_namespaced_custom_object("networking.istio.io", "v1beta1", self.namespace,
                                                                plural, name)
                entry = entry_for(entries, git)
                if normalize(compared(live), entry) == normalize(compared(git), entry):
                    continue
                wanted = with_live_ignored(compared(git), compared(live), entry)
                body = {**copy.deepcopy(git), "spec": wanted["spec"],
                        "metadata": {**{k: v for k, v in live["metadata"].items()
                                        if k not in ("labels", "annotations")}, **wanted["metadata"]}}
                try:
                    self.custom.replace_namespaced_custom_object("networking.istio.io", "v1beta1", self.namespace,
                                                                 plural, name, body)
                except ApiException as exc:
                    if exc.status != 409:
                        raise

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.api.close()


def test_a_self_healing_writer_and_the_controller_settle(kube, kube_env, kube_namespace, controllers, tmp_path):
    ns = kube_namespace
    created = network_objects(kube, ns, "mocka.yaml")
    git = {name: {k: v for k, v in body.items() if k in ("apiVersion", "kind", "spec")}
           | {"metadata": {"name": name, "namespace": ns}} for name, body in created.items()}
    controllers(ns, "--identity", "settle")
    kube.create(routing(ns))
    wait_for(lambda: phase(kube, ns) == "Progressing", what="Progressing")
    entries = argocd_entries(tmp_path, git, routing(ns))
    assert [(e["name"], e.get("jqPathExpressions")) for e in entries] == [
        ("dr-mocka", ['.spec.subsets[] | select(.name == "canary")']),
        ("vs-mocka", ['.spec.http[] | select(del(.route) == '
                      '{"match":[{"headers":{"my-request-id":{"exact":"canary"}}}]})'])]
    healer = SelfHealer(kube_env, ns, git, entries)
    try:
        def quiet(since: str, seconds: float = 4.0) -> tuple[list, list]:
            time.sleep(seconds)
            return writes_by(kube_env, "(settle)", ns, since), writes_by(kube_env, "self-healer", ns, since)

        start = _now(kube_env)
        assert quiet(start) == ([], []), "both leave a settled object alone"

        # A change in git: the healer writes it once, the controller folds it into the original once.
        changed = copy.deepcopy(git)
        changed["vs-mocka"]["spec"]["http"].append(ADMIN_RULE)
        changed["vs-mocka"]["spec"]["http"][0]["timeout"] = "5s"
        changed["dr-mocka"]["spec"]["subsets"].append(V3_SUBSET)
        start = _now(kube_env)
        healer.desired = (changed, argocd_entries(tmp_path, changed, routing(ns)))
        wait_for(lambda: ADMIN_RULE in stored_original(kube.get("VirtualService", ns, "vs-mocka"))["spec"]["http"],
                 what="the git change in the stored original")
        ours, theirs = quiet(start, 6.0)
        per_object = lambda writes: sorted(w["objectRef"]["name"] for w in writes  # noqa: E731
                                           if w["objectRef"]["resource"] != "trafficroutings")
        assert per_object(theirs) == ["dr-mocka", "vs-mocka"], theirs
        assert per_object(ours) == ["dr-mocka", "vs-mocka"], ours
        last = _now(kube_env)
        assert quiet(last) == ([], []), "then nobody writes"
        vs = kube.get("VirtualService", ns, "vs-mocka")
        assert lane_rules(vs) == 1 and vs["spec"]["http"][0]["timeout"] == "5s", "the lane copies the new timeout"
    finally:
        healer.close()
    kube.delete("TrafficRouting", ns, "mocka-tr", TR_API)
    wait_for(lambda: tr(kube, ns) is None, what="the TrafficRouting to be gone")
    for name in ("vs-mocka", "dr-mocka"):
        live = kube.get(created[name]["kind"], ns, name)
        assert live["spec"] == changed[name]["spec"] and ORIGINAL not in (live["metadata"].get("annotations") or {})


def _now(kube_env) -> str:
    """The API server's clock as the audit log writes it (RFC 3339 with microseconds)."""
    from datetime import datetime, timezone
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
