"""Fixtures for e2e tests against a real kube-apiserver (see kubeenv.py).

An env that cannot be built or started FAILS the tests, never skips them: a silently
skipped e2e suite is how regressions against the real API server slip through. The one
exception is a machine with no Go toolchain and no cached binaries, where the README's test
command skips them with a reason; CI sets GRAYLANE_REQUIRE_E2E=1, which turns that into a failure.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(
    0, str(Path(__file__).resolve().parent)
)  # importable with or without __init__.py
import clusterlib
import helpers
import kubeenv


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: needs a real kube-apiserver + etcd (tests/e2e/kubeenv.py)"
    )


@pytest.fixture(scope="session")
def kube_env() -> Iterator[kubeenv.KubeEnv]:
    """One control plane per test session, with deploy/crds installed."""
    cache = Path(os.environ.get("GRAYLANE_CACHE", Path.home() / ".cache" / "graylane")) / "bin"
    if shutil.which("go") is None and not any(cache.glob("kube-apiserver-*")):
        message = "no Go toolchain to build kube-apiserver and etcd, and none cached in " + str(cache)
        if os.environ.get("GRAYLANE_REQUIRE_E2E"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        env = kubeenv.start(tell=helpers.tell)
    except Exception as exc:  # noqa: BLE001 - report any start-up failure as a test failure
        pytest.fail(f"kube env did not start: {exc}", pytrace=False)
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture
def kube_namespace(kube_env: kubeenv.KubeEnv) -> Iterator[str]:
    """A fresh namespace per test. Deletion is fire-and-forget: without kube-controller-manager
    the namespace stays Terminating, which is harmless for an isolated, throwaway etcd."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    name = kube_env.create_namespace()
    yield name
    with kube_env.api_client() as api:
        try:
            client.CoreV1Api(api).delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:  # the test may have deleted it already
                raise


@pytest.fixture
def controllers(kube_env, tmp_path):
    """Start controllers with ``start(namespace, *flags)``; each must stop cleanly (exit 0) on SIGTERM."""
    started: list[clusterlib.Controller] = []

    def start(namespace: str, *extra: str, env: dict | None = None, kubeconfig: Path | None = None
              ) -> clusterlib.Controller:
        controller = clusterlib.Controller(kube_env, namespace, tmp_path / f"controller-{len(started)}.log",
                                           *extra, env=env, kubeconfig=kubeconfig)
        started.append(controller)
        return controller
    yield start
    for controller in started:
        if controller.proc.poll() is None:
            code = controller.terminate()
            assert code == 0, f"controller did not stop cleanly ({code}):\n{controller.text()[-3000:]}"


@pytest.fixture
def kube(kube_env):
    return clusterlib.Kube(kube_env)
