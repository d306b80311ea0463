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
import concurrent.futures
import os
import signal
import subprocess
import sys
import tempfile
import threading
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
IDLE_SECONDS = 20  # --idle


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


class StatusWatch:
    """Every TrafficRouting's (phase, observedGeneration), kept by one list and then a watch in a thread, so
    waiting for convergence costs the API server a few events instead of a full list every poll (at 10,000
    objects, polling with lists took a visible share of the 2 cores the controller runs on)."""

    def __init__(self, api, namespace: str):
        from kubernetes import client
        self.custom, self.namespace = client.CustomObjectsApi(api), namespace
        self.status: dict[str, tuple] = {}
        self.changed = threading.Condition()
        self.stopped = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            self._follow()
        except Exception:  # the API server stops at the end of a size: the watch breaks then
            if not self.stopped:
                raise

    def _follow(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException
        args = ("rollouts.kruise.io", "v1alpha1", self.namespace, "trafficroutings")
        while not self.stopped:
            listing = self.custom.list_namespaced_custom_object(*args)
            with self.changed:
                self.status = {tr["metadata"]["name"]: self._key(tr) for tr in listing["items"]}
                self.changed.notify_all()
            try:
                for event in watch.Watch().stream(self.custom.list_namespaced_custom_object, *args,
                                                  resource_version=listing["metadata"]["resourceVersion"],
                                                  timeout_seconds=300, allow_watch_bookmarks=False):
                    tr = event["object"]
                    with self.changed:
                        if event["type"] == "DELETED":
                            self.status.pop(tr["metadata"]["name"], None)
                        elif event["type"] in ("ADDED", "MODIFIED"):
                            self.status[tr["metadata"]["name"]] = self._key(tr)
                        self.changed.notify_all()
                    if self.stopped:
                        return
            except ApiException as error:  # 410 Gone: list again
                if error.status != 410:
                    raise

    @staticmethod
    def _key(tr: dict) -> tuple:
        status = tr.get("status") or {}
        return status.get("phase"), status.get("observedGeneration")

    def wait(self, count: int, generation: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while sum(1 for key in self.status.values() if key == ("Progressing", generation)) < count:
                if not self.changed.wait(max(0.0, deadline - time.monotonic())) and time.monotonic() > deadline:
                    raise SystemExit(f"not converged after {timeout}s")


def wait_converged(watcher: StatusWatch, custom, namespace: str, count: int, generation: int, value: str,
                   timeout: float) -> float:
    """Seconds until every TrafficRouting is Progressing for ``generation`` and every VirtualService carries
    the lane for ``value`` (the status is written after the objects, so one list of them usually suffices)."""
    start = time.monotonic()
    watcher.wait(count, generation, timeout)
    while time.monotonic() - start < timeout:
        services = custom.list_namespaced_custom_object("networking.istio.io", "v1beta1", namespace,
                                                        "virtualservices")["items"]
        routed = sum(1 for vs in services if (vs["spec"]["http"][0].get("match") or [{}])[0]
                     .get("headers", {}).get("x-gray", {}).get("exact") == value)
        if routed == count:
            return time.monotonic() - start
        time.sleep(1)
    raise SystemExit(f"not converged after {timeout}s")


def in_parallel(env: kubeenv.KubeEnv, calls, threads: int = 8) -> None:
    """Run ``call(custom_objects_api)`` for every call on ``threads`` clients, so the benchmark's own client is
    not what limits creating 30,000 objects or changing 10,000 strategies."""
    from kubernetes import client
    local = threading.local()
    clients = []

    def run(call):
        if not hasattr(local, "custom"):
            local.api = env.api_client()
            clients.append(local.api)
            local.custom = client.CustomObjectsApi(local.api)
        call(local.custom)

    try:
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            for future in [pool.submit(run, call) for call in calls]:
                future.result()
    finally:
        for api in clients:
            api.close()


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


def creations(namespace: str, count: int) -> list:
    calls = []
    for index in range(count):
        for body in objects(namespace, index):
            calls.append(lambda custom, body=body: custom.create_namespaced_custom_object(
                "networking.istio.io", "v1beta1", namespace, body["kind"].lower() + "s", body))
        calls.append(lambda custom, index=index: custom.create_namespaced_custom_object(
            "rollouts.kruise.io", "v1alpha1", namespace, "trafficroutings", routing(namespace, index)))
    return calls


def strategy_changes(namespace: str, count: int, value: str) -> list:
    """One merge patch of ``spec.strategy`` per TrafficRouting (one request, as ``kubectl patch`` sends)."""
    return [lambda custom, index=index: custom.patch_namespaced_custom_object(
        "rollouts.kruise.io", "v1alpha1", namespace, "trafficroutings", f"tr-{index}",
        {"spec": {"strategy": routing(namespace, index, value)["spec"]["strategy"]}},
        _content_type="application/merge-patch+json") for index in range(count)]


def run_size(count: int, workers: int, qps: float, burst: int, idle_seconds: float = IDLE_SECONDS) -> dict:
    from kubernetes import client
    env = kubeenv.start(audit_policy=AUDIT_EVERYTHING)
    controller = None
    try:
        namespace = env.create_namespace("bench-")
        t0 = time.monotonic()
        in_parallel(env, creations(namespace, count))
        setup = time.monotonic() - t0
        with env.api_client() as api:
            custom = client.CustomObjectsApi(api)
            watcher = StatusWatch(env.api_client(), namespace)
            log = Path(tempfile.mkdtemp(prefix="bench-controller-")) / "controller.log"
            command = [str(Path(sys.executable).parent / "graylane"), "controller", "--kubeconfig",
                       str(env.kubeconfig), "--context", env.context, "-n", namespace, "--workers", str(workers),
                       "--kube-api-qps", str(qps), "--kube-api-burst", str(burst)]
            cold_start = now()
            controller = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                          env=dict(os.environ), preexec_fn=kubeenv._die_with_parent)
            cold = wait_converged(watcher, custom, namespace, count, 1, "canary", 3600)
            time.sleep(2)
            cold_requests = requests_by_controller(env, cold_start)

            change_start = now()
            t0 = time.monotonic()
            in_parallel(env, strategy_changes(namespace, count, "gray"))
            edits = time.monotonic() - t0
            change = wait_converged(watcher, custom, namespace, count, 2, "gray", 3600)
            time.sleep(2)
            change_requests = requests_by_controller(env, change_start)

            idle_start = now()
            time.sleep(idle_seconds)
            idle_requests = requests_by_controller(env, idle_start)
            rss = peak_rss_mib(controller.pid)
            watcher.stopped = True
        return {"count": count, "workers": workers, "qps": qps, "burst": burst, "setup": setup, "cold": cold,
                "cold_requests": sum(cold_requests.values()), "cold_verbs": dict(cold_requests), "edits": edits,
                "change": change, "change_requests": sum(change_requests.values()),
                "change_verbs": dict(change_requests), "log": str(log),
                "idle_requests": sum(v for k, v in idle_requests.items() if k != "watch"), "idle": idle_seconds,
                "rss": rss}
    finally:
        if controller is not None and controller.poll() is None:
            controller.send_signal(signal.SIGTERM)
            controller.wait(60)
        env.stop()


def table(rows: list[dict]) -> str:
    lines = ["| TrafficRoutings | workers | QPS/burst | cold start s | requests/TR | strategy change s (from the "
             "first edit; edits took) | requests/TR | idle requests/s | peak RSS MiB |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        limit = f"{r['qps']:g}/{r['burst']}" if r["qps"] > 0 else "no limit"
        lines.append(f"| {r['count']:,} | {r['workers']} | {limit} | {r['cold']:.1f} "
                     f"| {r['cold_requests'] / r['count']:.2f} | {r['edits'] + r['change']:.1f} ({r['edits']:.1f}) "
                     f"| {r['change_requests'] / r['count']:.2f} | {r['idle_requests'] / r['idle']:.2f} "
                     f"| {r['rss']:.0f} |")
    return "\n".join(lines)


MATRIX_WORKERS = (1, 4, 8)
MATRIX_LIMITS = ((20.0, 30), (100.0, 200), (0.0, 1))  # QPS/burst; QPS 0 is no limit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="200,1000,3000,10000")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--qps", type=float, default=100.0)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--idle", type=float, default=IDLE_SECONDS, help="seconds of idle load measured")
    parser.add_argument("--matrix", action="store_true",
                        help="for each count, workers 1/4/8 x QPS/burst 20/30, 100/200 and no limit "
                             "(instead of --workers/--qps/--burst)")
    args = parser.parse_args(argv)
    rows = []
    for count in (int(c) for c in args.counts.split(",")):
        settings = [(args.workers, args.qps, args.burst)]
        if args.matrix:
            settings = [(workers, qps, burst) for workers in MATRIX_WORKERS for qps, burst in MATRIX_LIMITS]
        for workers, qps, burst in settings:
            row = run_size(count, workers, qps, burst, args.idle)
            rows.append(row)
            print(f"{count} TrafficRoutings, {workers} workers, QPS {qps:g}/{burst}: objects created in "
                  f"{row['setup']:.1f}s; cold {row['cold']:.1f}s ({row['cold_verbs']}), change: edits "
                  f"{row['edits']:.1f}s + {row['change']:.1f}s ({row['change_verbs']}), idle {row['idle_requests']}"
                  f" requests in {args.idle:g}s, peak RSS {row['rss']:.0f} MiB; log {row['log']}",
                  file=sys.stderr, flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
