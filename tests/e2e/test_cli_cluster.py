"""kubectl habits of the cluster commands, against a real kube-apiserver: ``--dry-run`` alone means client (apply
and restore --cluster), ``status`` lists a namespace or, with ``-A``, every namespace, and a mistyped
TrafficRouting name gets a suggestion."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from clusterlib import ORIGINAL, SAMPLES, Kube, graylane, load, state, write_yaml

pytestmark = pytest.mark.e2e

FULLLINK = SAMPLES / "fulllink"


@pytest.fixture
def kube(kube_env):
    return Kube(kube_env)


def setup(kube: Kube, namespace: str, tmp_path: Path, with_routings: bool = False) -> tuple[Path, dict]:
    created = {}
    for name in ("mocka.yaml", "mockb.yaml"):
        for body in load(FULLLINK / name, namespace, ("VirtualService", "DestinationRule")):
            created[body["metadata"]["name"]] = kube.create(body)
    routings = load(FULLLINK / "trafficrouting.yaml", namespace)
    if with_routings:
        for body in routings:
            kube.create(body)
    return write_yaml(tmp_path / "tr.yaml", routings), created


def test_dry_run_alone_is_client_for_apply_and_restore(kube, kube_env, kube_namespace, tmp_path):
    ns = kube_namespace
    routing, created = setup(kube, ns, tmp_path)
    dry = graylane(kube_env, "apply", "-f", str(routing), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "virtualservice.networking.istio.io/vs-mocka configured (dry run)" in dry.stdout
    assert "+            exact: canary" in dry.stdout or "exact: canary" in dry.stdout  # the diff of what would change
    assert state(kube.get("VirtualService", ns, "vs-mocka")) == state(created["vs-mocka"])

    assert graylane(kube_env, "apply", "-f", str(routing)).returncode == 0
    applied = kube.get("VirtualService", ns, "vs-mocka")
    assert ORIGINAL in applied["metadata"]["annotations"]

    restore_dry = graylane(kube_env, "restore", "--cluster", "-f", str(routing), "--dry-run")
    assert restore_dry.returncode == 0, restore_dry.stderr
    assert "virtualservice.networking.istio.io/vs-mocka" in restore_dry.stdout and "(dry run)" in restore_dry.stdout
    assert state(kube.get("VirtualService", ns, "vs-mocka")) == state(applied)  # nothing was written

    restore_server = graylane(kube_env, "restore", "--cluster", "-f", str(routing), "--dry-run=server")
    assert restore_server.returncode == 0, restore_server.stderr
    assert "(server dry run)" in restore_server.stdout
    assert state(kube.get("VirtualService", ns, "vs-mocka")) == state(applied)

    assert graylane(kube_env, "restore", "--cluster", "-f", str(routing)).returncode == 0
    assert state(kube.get("VirtualService", ns, "vs-mocka")) == state(created["vs-mocka"])


def test_status_of_a_namespace_and_of_all_namespaces(kube, kube_env, kube_namespace, tmp_path):
    ns = kube_namespace
    setup(kube, ns, tmp_path, with_routings=True)
    listed = graylane(kube_env, "status", "-n", ns, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["items"]
    assert [row["object"].split("/")[1] for row in rows] == ["vs-mocka", "dr-mocka", "vs-mockb", "dr-mockb"]
    everywhere = graylane(kube_env, "status", "-A", "-o", "json")
    assert {row["namespace"] for row in json.loads(everywhere.stdout)["items"]} >= {ns}
    assert [row for row in json.loads(everywhere.stdout)["items"] if row["namespace"] == ns] == rows

    refused = graylane(kube_env, "status", "-A", "mocka-tr")
    assert refused.returncode == 1 and "-A lists every namespace" in refused.stderr

    typo = graylane(kube_env, "status", "mocka-rt", "-n", ns)
    assert typo.returncode == 1
    assert typo.stderr.rstrip().endswith(f"TrafficRouting mocka-rt not found in namespace {ns}; did you mean mocka-tr?")
