"""How long one ``graylane controller`` takes to reconcile 200 TrafficRoutings against a real kube-apiserver.

Run: python benchmarks/bench_controller.py [--count 200] [--workers 4]
(prints the timings; nothing is asserted: speed is measured, not tested)

Starts a throwaway etcd + kube-apiserver (tests/e2e/kubeenv.py, built from Go modules on first use),
creates COUNT VirtualService/DestinationRule pairs and one TrafficRouting per pair (header match + gray
subset, the full-link sample's shape), then starts the controller as a subprocess and times until every
TrafficRouting reports phase Progressing for its generation and every object carries the canary route.
A second phase changes every TrafficRouting's strategy and times until all are followed again.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import kubeenv  # noqa: E402


def objects(namespace: str, index: int) -> list[dict]:
    service = f"svc{index}"
    return [
        {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
         "metadata": {"name": f"vs-{index}", "namespace": namespace},
         "spec": {"hosts": [service], "http": [{"route": [{"destination": {"host": service,
                                                                            "subset": "version-base"}}]}]}},
        {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
         "metadata": {"name": f"dr-{index}", "namespace": namespace},
         "spec": {"host": service, "subsets": [{"name": "version-base", "labels": {"version": "base"}}]}},
    ]


def routing(namespace: str, index: int, value: str = "canary") -> dict:
    return {"apiVersion": "rollouts.kruise.io/v1alpha1", "kind": "TrafficRouting",
            "metadata": {"name": f"tr-{index}", "namespace": namespace},
            "spec": {"strategy": {"matches": [{"headers": [{"type": "Exact", "name": "x-gray", "value": value}]}]},
                     "objectRef": [{"service": f"svc{index}", "customNetworkRefs": [
                         {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "name": f"vs-{index}"},
                         {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
                          "name": f"dr-{index}"}]}]}}


def wait_converged(custom, namespace: str, count: int, generation: int, value: str, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        items = custom.list_namespaced_custom_object("rollouts.kruise.io", "v1alpha1", namespace,
                                                     "trafficroutings")["items"]
        done = sum(1 for tr in items if (tr.get("status") or {}).get("phase") == "Progressing"
                   and tr["status"].get("observedGeneration") == generation)
        if done == count:
            services = custom.list_namespaced_custom_object("networking.istio.io", "v1beta1", namespace,
                                                            "virtualservices")["items"]
            routed = sum(1 for vs in services if (vs["spec"]["http"][0].get("match") or [{}])[0]
                         .get("headers", {}).get("x-gray", {}).get("exact") == value)
            if routed == count:
                return time.monotonic() - start
        time.sleep(0.1)
    raise SystemExit(f"not converged after {timeout}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    from kubernetes import client

    env = kubeenv.start()
    controller = None
    try:
        print(f"kube-apiserver + etcd up in {env.startup_seconds}s")
        namespace = env.create_namespace("bench-")
        with env.api_client() as api:
            custom = client.CustomObjectsApi(api)
            t0 = time.monotonic()
            for index in range(args.count):
                for body in objects(namespace, index):
                    plural = body["kind"].lower() + "s"
                    custom.create_namespaced_custom_object("networking.istio.io", "v1beta1", namespace, plural, body)
                custom.create_namespaced_custom_object("rollouts.kruise.io", "v1alpha1", namespace, "trafficroutings",
                                                       routing(namespace, index))
            print(f"created {args.count} TrafficRoutings and {2 * args.count} objects in "
                  f"{time.monotonic() - t0:.2f}s")

            log = Path(tempfile.mkdtemp(prefix="bench-controller-")) / "controller.log"
            command = [str(Path(sys.executable).parent / "graylane"), "controller", "--kubeconfig",
                       str(env.kubeconfig), "--context", env.context, "-n", namespace, "--workers",
                       str(args.workers)]
            controller = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                          env=dict(os.environ))
            first = wait_converged(custom, namespace, args.count, 1, "canary", 600)
            print(f"initial reconcile: {args.count} TrafficRoutings ({2 * args.count} objects) converged "
                  f"{first:.2f}s after the controller process started, Python start-up and leader election "
                  f"included ({args.count / first:.0f} TrafficRoutings/s, {args.workers} workers)")

            t1 = time.monotonic()
            for index in range(args.count):
                body = custom.get_namespaced_custom_object("rollouts.kruise.io", "v1alpha1", namespace,
                                                           "trafficroutings", f"tr-{index}")
                body["spec"]["strategy"] = routing(namespace, index, "gray")["spec"]["strategy"]
                custom.replace_namespaced_custom_object("rollouts.kruise.io", "v1alpha1", namespace,
                                                        "trafficroutings", f"tr-{index}", body)
            edits = time.monotonic() - t1
            second = wait_converged(custom, namespace, args.count, 2, "gray", 600)
            print(f"strategy change: editing all {args.count} took {edits:.2f}s; all were followed {second:.2f}s "
                  f"after the last edit ({edits + second:.2f}s after the first)")
            print(f"controller log: {log}")
    finally:
        if controller is not None and controller.poll() is None:
            controller.send_signal(signal.SIGTERM)
            controller.wait(30)
        env.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
