"""Helpers for the cluster-mode e2e tests: run the real ``graylane`` command, load samples into a namespace,
and read/write objects with the official client (the test's own hands, not graylane's)."""
from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
PLURALS = {"VirtualService": "virtualservices", "DestinationRule": "destinationrules",
           "TrafficRouting": "trafficroutings", "Rollout": "rollouts", "Gateway": "gateways"}
ORIGINAL = "rollouts.kruise.io/original-spec-configuration"


def graylane_command() -> list[str]:
    """The installed ``graylane`` console script of this interpreter's environment."""
    beside = Path(sys.executable).parent / "graylane"
    found = str(beside) if beside.exists() else shutil.which("graylane")
    assert found, "the graylane command is not installed (pip install -e .)"
    return [found]


def cluster_args(kube_env) -> list[str]:
    return ["--kubeconfig", str(kube_env.kubeconfig), "--context", kube_env.context]


def graylane(kube_env, *args: str, env: Optional[dict] = None, timeout: float = 120,
             cluster: bool = True) -> subprocess.CompletedProcess:
    argv = [*graylane_command(), *args, *(cluster_args(kube_env) if cluster else [])]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def load(path: Path, namespace: str, kinds: Optional[tuple] = None) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    result = []
    for doc in docs:
        if kinds and doc["kind"] not in kinds:
            continue
        doc = copy.deepcopy(doc)
        doc["metadata"]["namespace"] = namespace
        result.append(doc)
    return result


def write_yaml(path: Path, docs: list[dict]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


class Kube:
    """The test's direct API access (CustomObjectsApi), for setup, concurrent edits and assertions."""

    def __init__(self, kube_env):
        from kubernetes import client
        self.api = kube_env.api_client()
        self.custom = client.CustomObjectsApi(self.api)
        self.client = client

    @staticmethod
    def _gv(body_or_api_version) -> tuple[str, str]:
        api_version = body_or_api_version if isinstance(body_or_api_version, str) \
            else body_or_api_version["apiVersion"]
        group, _, version = api_version.rpartition("/")
        return group, version

    def create(self, body: dict) -> dict:
        group, version = self._gv(body)
        return self.custom.create_namespaced_custom_object(group, version, body["metadata"]["namespace"],
                                                           PLURALS[body["kind"]], body)

    def get(self, kind: str, namespace: str, name: str, api_version: str = "networking.istio.io/v1beta1") \
            -> Optional[dict]:
        from kubernetes.client.exceptions import ApiException
        group, version = self._gv(api_version)
        try:
            return self.custom.get_namespaced_custom_object(group, version, namespace, PLURALS[kind], name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def replace(self, body: dict) -> dict:
        group, version = self._gv(body)
        meta = body["metadata"]
        return self.custom.replace_namespaced_custom_object(group, version, meta["namespace"],
                                                            PLURALS[body["kind"]], meta["name"], body)

    def delete(self, kind: str, namespace: str, name: str, api_version: str = "networking.istio.io/v1beta1"):
        group, version = self._gv(api_version)
        return self.custom.delete_namespaced_custom_object(group, version, namespace, PLURALS[kind], name)

    def edit(self, kind: str, namespace: str, name: str, change: Callable[[dict], Any],
             api_version: str = "networking.istio.io/v1beta1") -> dict:
        """Read-modify-write with retries on conflict (the way a person or GitOps tool edits)."""
        from kubernetes.client.exceptions import ApiException
        for _ in range(20):
            body = self.get(kind, namespace, name, api_version)
            change(body)
            try:
                return self.replace(body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                time.sleep(0.05)
        raise AssertionError(f"could not edit {kind}/{name}")


def state(body: dict) -> dict:
    """What graylane may change: spec, labels, annotations."""
    meta = body.get("metadata") or {}
    return {"spec": body.get("spec"), "labels": meta.get("labels") or {}, "annotations": meta.get("annotations") or {}}


def wait_for(predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
