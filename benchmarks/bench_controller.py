"""``graylane controller`` at scale against a real kube-apiserver: time, API requests and memory for 200, 1,000,
3,000 and 10,000 TrafficRoutings, converging from a cold start and again after a strategy change, plus the
idle load once converged.

Run: python benchmarks/bench_controller.py [--counts 200,1000,3000,10000] [--workers 4] [--qps 100 --burst 200]
     python benchmarks/bench_controller.py --counts 1000 --matrix      (the effect of --workers and QPS/burst)
(prints a table; nothing is asserted: speed is measured, not tested)

Each size gets a fresh throwaway etcd + kube-apiserver (tests/e2e/kubeenv.py, built from Go modules on first
use) whose audit log records every request to graylane's kinds: requests are counted there, by the
controller's user agent, so the figures are the API server's, not the controller's own bookkeeping. For each
size: COUNT VirtualService/DestinationRule pairs and one TrafficRouting per pair (header match + gray
subset) are created, the controller is started, and the time until every TrafficRouting is Progressing for
its generation with every object routed is taken (cold start: Python start-up, leader election and the
initial lists included). Then every strategy is changed and the time to follow is taken again. Then 20 idle
seconds. Peak RSS is the controller process's VmHWM.
"""
from __future__ import annotations

import argparse
import collections
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

GROUPS = ("networking.istio.io", "rollouts.kruise.io")
AUDIT_EVERYTHING = {  # every request to graylane's kinds and Leases, at Metadata level
    "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata", "resources": [{"group": g} for g in GROUPS]
               + [{"group": "coordination.k8s.io", "resources": ["leases"]}]},
              {"level": "None"}],
}
IDLE_SECONDS = 20


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
        time.sleep(max(0.25, count / 2000))  # each poll lists every object: keep its load on the server small
    raise SystemExit(f"not converged after {timeout}s")


def requests_by_controller(env: kubeenv.KubeEnv, since: str, until: str = "~") -> collections.Counter:
    """Requests the controller sent in [since, until), by verb (watches counted when they start)."""
    counts: collections.Counter = collections.Counter()
    for event in env.audit_events():
        if "graylane/" not in (event.get("userAgent") or ""):
            continue
        if (event.get("objectRef") or {}).get("resource") == "leases":
            continue
        if event.get("stage") not in ("ResponseComplete", "ResponseStarted", "Panic"):
            continue
        if event.get("verb") == "watch" and event.get("stage") != "ResponseStarted":
            continue
        if since <= event.get("requestReceivedTimestamp", "") < until:
            counts[event.get("verb")] += 1
    return counts


def now() -> str:
    from datetime import datetime, timezone
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_size(count: int, workers: int, qps: float, burst: int) -> dict:
    from kubernetes import client
    env = kubeenv.start(audit_policy=AUDIT_EVERYTHING)
    controller = None
    try:
        namespace = env.create_namespace("bench-")
        with env.api_client() as api:
            custom = client.CustomObjectsApi(api)
            for index in range(count):
                for body in objects(namespace, index):
                    custom.create_namespaced_custom_object("networking.istio.io", "v1beta1", namespace,
                                                           body["kind"].lower() + "s", body)
                custom.create_namespaced_custom_object("rollouts.kruise.io", "v1alpha1", namespace,
                                                       "trafficroutings", routing(namespace, index))
            log = Path(tempfile.mkdtemp(prefix="bench-controller-")) / "controller.log"
            command = [str(Path(sys.executable).parent / "graylane"), "controller", "--kubeconfig",
                       str(env.kubeconfig), "--context", env.context, "-n", namespace, "--workers", str(workers),
                       "--kube-api-qps", str(qps), "--kube-api-burst", str(burst)]
            cold_start = now()
            controller = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                          env=dict(os.environ), preexec_fn=kubeenv._die_with_parent)
            cold = wait_converged(custom, namespace, count, 1, "canary", 3600)
            cold_requests = requests_by_controller(env, cold_start)

            change_start = now()
            t0 = time.monotonic()
            for index in range(count):
                body = custom.get_namespaced_custom_object("rollouts.kruise.io", "v1alpha1", namespace,
                                                           "trafficroutings", f"tr-{index}")
                body["spec"]["strategy"] = routing(namespace, index, "gray")["spec"]["strategy"]
                custom.replace_namespaced_custom_object("rollouts.kruise.io", "v1alpha1", namespace,
                                                        "trafficroutings", f"tr-{index}", body)
            edits = time.monotonic() - t0
            change = wait_converged(custom, namespace, count, 2, "gray", 3600)
            time.sleep(2)
            change_requests = requests_by_controller(env, change_start)

            idle_start = now()
            time.sleep(IDLE_SECONDS)
            idle_requests = requests_by_controller(env, idle_start)
            rss = peak_rss_mib(controller.pid)
        return {"count": count, "workers": workers, "qps": qps, "burst": burst, "cold": cold,
                "cold_requests": sum(cold_requests.values()), "edits": edits, "change": change,
                "change_requests": sum(change_requests.values()), "change_verbs": dict(change_requests),
                "idle_requests": sum(v for k, v in idle_requests.items() if k != "watch"), "rss": rss}
    finally:
        if controller is not None and controller.poll() is None:
            controller.send_signal(signal.SIGTERM)
            controller.wait(60)
        env.stop()


def table(rows: list[dict]) -> str:
    lines = ["| TrafficRoutings | workers | QPS/burst | cold start s | requests/TR | change s (after last edit) "
             "| requests/TR | idle requests/s | peak RSS MiB |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['count']:,} | {r['workers']} | {r['qps']:g}/{r['burst']} | {r['cold']:.1f} "
                     f"| {r['cold_requests'] / r['count']:.2f} | {r['change']:.1f} "
                     f"| {r['change_requests'] / r['count']:.2f} | {r['idle_requests'] / IDLE_SECONDS:.2f} "
                     f"| {r['rss']:.0f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="200,1000,3000,10000")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--qps", type=float, default=100.0)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--matrix", action="store_true",
                        help="for each count, also workers 1 and 8, and QPS 20/30 and unlimited")
    args = parser.parse_args()
    rows = []
    for count in (int(c) for c in args.counts.split(",")):
        settings = [(args.workers, args.qps, args.burst)]
        if args.matrix:
            settings += [(1, args.qps, args.burst), (8, args.qps, args.burst), (args.workers, 20.0, 30),
                         (args.workers, 0.0, 1)]
        for workers, qps, burst in settings:
            row = run_size(count, workers, qps, burst)
            rows.append(row)
            print(f"{count} TrafficRoutings, {workers} workers, QPS {qps:g}/{burst}: cold {row['cold']:.1f}s "
                  f"({row['cold_requests']} requests), change {row['change']:.1f}s ({row['change_verbs']}), idle "
                  f"{row['idle_requests']} requests in {IDLE_SECONDS}s, peak RSS {row['rss']:.0f} MiB",
                  file=sys.stderr, flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
