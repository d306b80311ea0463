"""Prove the e2e control plane is a real API server: the semantics graylane relies on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.e2e

ISTIO = ("networking.istio.io", "v1")
KRUISE = ("rollouts.kruise.io", "v1alpha1")


@pytest.fixture
def objs(kube_env: Any) -> Iterator[client.CustomObjectsApi]:
    with kube_env.api_client() as api:
        yield client.CustomObjectsApi(api)


def virtual_service(name: str, weight: int = 100) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {
            "hosts": ["reviews"],
            "http": [
                {"route": [{"destination": {"host": "reviews"}, "weight": weight}]}
            ],
        },
    }


def test_server_version_is_the_built_release(kube_env: Any) -> None:
    with kube_env.api_client() as api:
        info = client.VersionApi(api).get_code()
    assert info.git_version.startswith("v1.") and info.minor
    assert kube_env.kubeconfig.exists() and kube_env.context == "graylane-e2e"


def test_stale_resource_version_is_a_conflict(
    objs: client.CustomObjectsApi, kube_namespace: str
) -> None:
    vs = objs.create_namespaced_custom_object(
        *ISTIO, kube_namespace, "virtualservices", virtual_service("r")
    )
    fresh = {**vs, "spec": {**vs["spec"], "hosts": ["reviews", "ratings"]}}
    objs.replace_namespaced_custom_object(
        *ISTIO, kube_namespace, "virtualservices", "r", fresh
    )
    stale = {
        **vs,
        "spec": {**vs["spec"], "hosts": ["stale"]},
    }  # still carries the old resourceVersion
    with pytest.raises(ApiException) as err:
        objs.replace_namespaced_custom_object(
            *ISTIO, kube_namespace, "virtualservices", "r", stale
        )
    assert err.value.status == 409
    # Multi-version CRD: the same object is served under the older Istio API versions too.
    old = objs.get_namespaced_custom_object(
        "networking.istio.io", "v1alpha3", kube_namespace, "virtualservices", "r"
    )
    assert old["spec"]["hosts"] == ["reviews", "ratings"]


def test_server_side_dry_run_does_not_persist(
    objs: client.CustomObjectsApi, kube_namespace: str
) -> None:
    out = objs.create_namespaced_custom_object(
        *ISTIO, kube_namespace, "virtualservices", virtual_service("dry"), dry_run="All"
    )
    assert out["metadata"]["name"] == "dry"
    with pytest.raises(ApiException) as err:
        objs.get_namespaced_custom_object(
            *ISTIO, kube_namespace, "virtualservices", "dry"
        )
    assert err.value.status == 404


def test_finalizer_holds_deletion_until_removed(
    objs: client.CustomObjectsApi, kube_namespace: str
) -> None:
    dr = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "held", "finalizers": ["graylane.io/e2e"]},
        "spec": {
            "host": "reviews",
            "subsets": [{"name": "canary", "labels": {"v": "2"}}],
        },
    }
    objs.create_namespaced_custom_object(*ISTIO, kube_namespace, "destinationrules", dr)
    objs.delete_namespaced_custom_object(
        *ISTIO, kube_namespace, "destinationrules", "held"
    )
    held = objs.get_namespaced_custom_object(
        *ISTIO, kube_namespace, "destinationrules", "held"
    )
    assert held["metadata"]["deletionTimestamp"]
    objs.patch_namespaced_custom_object(
        *ISTIO,
        kube_namespace,
        "destinationrules",
        "held",
        {"metadata": {"finalizers": None}},
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            objs.get_namespaced_custom_object(
                *ISTIO, kube_namespace, "destinationrules", "held"
            )
        except ApiException as exc:
            assert exc.status == 404
            return
        time.sleep(0.1)
    pytest.fail("object still present after its last finalizer was removed")


def test_watch_sees_added_then_modified(
    objs: client.CustomObjectsApi, kube_namespace: str
) -> None:
    start_rv = objs.list_namespaced_custom_object(
        *ISTIO, kube_namespace, "virtualservices"
    )["metadata"]["resourceVersion"]
    objs.create_namespaced_custom_object(
        *ISTIO, kube_namespace, "virtualservices", virtual_service("w")
    )
    objs.patch_namespaced_custom_object(
        *ISTIO,
        kube_namespace,
        "virtualservices",
        "w",
        {"spec": {"http": [{"route": [{"destination": {"host": "x"}}]}]}},
    )
    seen = []
    w = watch.Watch()
    for event in w.stream(
        objs.list_namespaced_custom_object,
        *ISTIO,
        kube_namespace,
        "virtualservices",
        resource_version=start_rv,
        timeout_seconds=10,
    ):
        seen.append((event["type"], event["object"]["metadata"]["name"]))
        if len(seen) == 2:
            w.stop()
    assert seen == [("ADDED", "w"), ("MODIFIED", "w")]


def test_trafficrouting_unknown_fields_are_pruned(
    objs: client.CustomObjectsApi, kube_namespace: str
) -> None:
    tr = {
        "apiVersion": "rollouts.kruise.io/v1alpha1",
        "kind": "TrafficRouting",
        "metadata": {"name": "tr"},
        "spec": {
            "objectRef": [
                {
                    "service": "reviews",
                    "customNetworkRefs": [
                        {
                            "apiVersion": "networking.istio.io/v1",
                            "kind": "VirtualService",
                            "name": "r",
                            "bogusRefField": 1,
                        }
                    ],
                }
            ],
            "strategy": {
                "weight": 10,
                "matches": [{"headers": [{"name": "x-canary", "value": "1"}]}],
            },
            "bogusSpecField": "dropped",
        },
    }
    out = objs.create_namespaced_custom_object(
        *KRUISE, kube_namespace, "trafficroutings", tr
    )
    assert "bogusSpecField" not in out["spec"]
    assert "bogusRefField" not in out["spec"]["objectRef"][0]["customNetworkRefs"][0]
    assert (
        out["spec"]["strategy"]["matches"][0]["headers"][0]["type"] == "Exact"
    )  # schema default applied
    with pytest.raises(
        ApiException
    ) as err:  # and Strict validation rejects them outright
        objs.create_namespaced_custom_object(
            *KRUISE,
            kube_namespace,
            "trafficroutings",
            {**tr, "metadata": {"name": "strict"}},
            field_validation="Strict",
        )
    assert err.value.status == 400 and "bogusSpecField" in err.value.body
