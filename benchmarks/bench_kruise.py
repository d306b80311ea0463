"""Render cost side by side with Kruise's own Go path, and with copy.deepcopy, in one run.

Run: python benchmarks/bench_kruise.py [--quick]   (prints a table; nothing is asserted: speed is measured, not tested)

Kruise's figure comes from the Kruise peer (tests/peers/kruise/, built from the github.com/openkruise/rollouts
module): per call it decodes the stored original, builds obj, opens a fresh gopher-lua state, parses and runs
the script and converts the result back, as its custom network provider does on every reconcile. graylane's
figure is one render_object of the same VirtualService with the same script (Kruise's VirtualService
script), from the document to the rendered object; "built-in" is the same with graylane's own script;
"+ check" adds the output check ``graylane render`` runs on the result. Each figure is the median of three
timed loops. Without Go the benchmark says so and stops.
"""
from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from bench_render import large_spec, typical_spec  # noqa: E402
from kruisepeer import kruise_module_dir, peer_case, run_peer  # noqa: E402

from engine.checks.validate import check_rendered  # noqa: E402
from engine.documents import Document  # noqa: E402
from engine.lua.sandbox import LuaSandbox  # noqa: E402
from engine.lua.scripts import ScriptLibrary, builtin_layer, directory_layer  # noqa: E402
from engine.routing.render import Engine, render_object  # noqa: E402
from engine.routing.script_input import build_script_input, original_of  # noqa: E402
from engine.routing.strategy import plan  # noqa: E402

REPEATS = 3


def virtual_service(spec: dict) -> dict:
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "default", "labels": {"app": "reviews"}}, "spec": spec}


def rollout(step: dict) -> dict:
    return {"apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout",
            "metadata": {"name": "reviews", "namespace": "default"},
            "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "reviews"},
                     "strategy": {"canary": {"steps": [step], "trafficRoutings": [{"service": "reviews",
                                  "customNetworkRefs": [{"apiVersion": "networking.istio.io/v1beta1",
                                                         "kind": "VirtualService", "name": "reviews"}]}]}}}}


CASES = [
    ("small VS, one match", virtual_service(typical_spec()),
     rollout({"matches": [{"headers": [{"type": "Exact", "name": "x-canary", "value": "1"}]}]}), 400),
    ("100 http rules", virtual_service(large_spec(100)), rollout({"traffic": "20%"}), 60),
    ("1,000 http rules", virtual_service(large_spec(1000)), rollout({"traffic": "20%"}), 8),
]


def median_per_call(function: Callable[[], object], calls: int) -> float:
    timings = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        timings.append((time.perf_counter() - start) / calls)
    return statistics.median(timings)


def peer_binary() -> Path:
    if shutil.which("go") is None:
        sys.exit("bench_kruise: skipped: no Go toolchain to build Kruise's Go path (tests/peers/kruise) from "
                 "the github.com/openkruise/rollouts module; install Go to compare with Kruise")
    result = subprocess.run(["bash", str(REPO / "tests" / "peers" / "build.sh"), "kruise"], capture_output=True,
                            text=True)
    if result.returncode != 0:
        sys.exit(f"bench_kruise: building the Kruise peer failed:\n{result.stderr[-2000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def graylane_per_call(engine: Engine, network: dict, routing_body: dict, calls: int,
                      checked: bool = False) -> float:
    """One render_object; ``checked``: and the output check ``graylane render`` runs on its result."""
    document = Document(network, "vs.yaml", 1)
    routing = plan(Document(routing_body, "rollout.yaml", 1), 1)
    target = routing.targets[0]

    def once():
        rendered = render_object(document, routing.strategy, target.stable_service, target.canary_service, engine,
                                 routing)
        if checked:
            check_rendered(document, rendered.body, None, force=True)
        return rendered
    once()  # compile the script once, as a long-running graylane does
    return median_per_call(once, calls)


def deepcopy_per_call(network: dict, routing_body: dict, calls: int) -> float:
    routing = plan(Document(routing_body, "rollout.yaml", 1), 1)
    original, _ = original_of(network)
    obj = build_script_input(original, routing.strategy, "reviews", "reviews-canary")
    return median_per_call(lambda: copy.deepcopy(obj), calls)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls per loop (a rough figure)")
    quick = parser.parse_args().quick
    binary = peer_binary()
    kruise_engine = Engine(ScriptLibrary([directory_layer(str(kruise_module_dir() / "lua_configuration"))]),
                           LuaSandbox(timeout=10))
    builtin_engine = Engine(ScriptLibrary([builtin_layer()]), LuaSandbox(timeout=10))
    rows = []
    for name, network, routing_body, calls in CASES:
        calls = max(2, calls // 8) if quick else calls
        kruise_runs = [run_peer(binary, [peer_case("c", routing_body, network)], mode="time",
                                iterations=calls)["c"] for _ in range(REPEATS)]
        if any(run.get("error") for run in kruise_runs):
            sys.exit(f"bench_kruise: Kruise's Go path failed on {name}: {kruise_runs[0]['error']}")
        kruise = statistics.median(run["nsPerCall"] for run in kruise_runs) / 1e9
        graylane = graylane_per_call(kruise_engine, network, routing_body, calls)
        builtin = graylane_per_call(builtin_engine, network, routing_body, calls)
        checked = graylane_per_call(kruise_engine, network, routing_body, max(2, calls // 2), checked=True)
        deepcopy = deepcopy_per_call(network, routing_body, calls * 5)
        rows.append((name, kruise, graylane, builtin, checked, deepcopy))

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end")
    print(f"{'input':22} {'Kruise Go µs':>13} {'graylane µs':>12} {'built-in µs':>12} {'+ check µs':>11} "
          f"{'deepcopy µs':>12} {'graylane÷Kruise':>16} {'graylane÷deepcopy':>18} {'+ check÷Kruise':>15}")
    for name, kruise, graylane, builtin, checked, deepcopy in rows:
        print(f"{name:22} {kruise * 1e6:13.0f} {graylane * 1e6:12.0f} {builtin * 1e6:12.0f} {checked * 1e6:11.0f} "
              f"{deepcopy * 1e6:12.0f} {graylane / kruise:16.3f} {graylane / deepcopy:18.2f} {checked / kruise:15.3f}")
    print("graylane and built-in: one render_object (stored original, script input, the Lua run in the worker, "
          "the output object); + check: graylane's, with the output check graylane render runs on it (schema, "
          f"route and admission rules, lane leaks), which Kruise does not do;\nKruise: its provider's Lua path "
          f"per call; median of {REPEATS} loops each, same run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
