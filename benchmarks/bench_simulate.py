"""How long ``graylane simulate`` takes on a large mesh, and how the time grows with services and hops.

Run: python benchmarks/bench_simulate.py   (prints tables; nothing is asserted — speed is measured, not tested)

The mesh is generated: N services, each with a Service, a base and a gray Deployment, a VirtualService (the lane
header to subset canary, everything else to subset base) and a DestinationRule; the first H services form a call
chain (each calls the next through the graylane.io/calls annotation), entered through an ingress Gateway whose
VirtualService routes to the first. The other services are there to be searched past. A lane request
(my-request-id: canary) is traced through the whole chain.

Figures: the simulation alone (documents already read), the same after rendering H TrafficRoutings first, each
also as a ratio to ``copy.deepcopy`` of the same documents measured in the same run (so the ratios hold on a
loaded machine where the milliseconds do not), and the whole command (``graylane simulate`` in a subprocess on
the mesh written to a file: Python start-up, reading and parsing the YAML, render, simulate, output), with the
time reading the file takes alone. Each is the best of a few repeats.
"""
from __future__ import annotations

import argparse
import copy
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import yaml

from bench_render import best_per_call
from bench_startup import command_environment
from engine.documents import Document
from engine.inputs import read_documents
from engine.fulllink.envoy import parse_request
from engine.fulllink.simulate.simulator import Options, rendered_state, simulate
from engine.lua.sandbox import LuaSandbox
from engine.lua.scripts import ScriptLibrary, builtin_layer
from engine.routing.render import Engine

LANE = "my-request-id"


def service_objects(index: int, calls: str | None, routed: bool) -> list[dict]:
    """A Service with base and gray Deployments, its VirtualService and DestinationRule (and TrafficRouting).
    The first service's VirtualService is the ingress gateway's (hosts "*"), as in samples/fulllink."""
    name = f"svc{index:05d}"
    annotations = {"graylane.io/calls": calls} if calls else {}
    objects = [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": name, "namespace": "default", **({"annotations": annotations} if annotations else {})},
         "spec": {"selector": {"app": name}, "ports": [{"port": 8000, "name": "http"}]}},
    ]
    for version, labels in (("base", {"version": "base"}), ("gray", {"version": "canary", "istio.service.tag": "gray"})):
        objects.append({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": f"{name}-{version}", "namespace": "default"},
                        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name, **labels}},
                                 "template": {"metadata": {"labels": {"app": name, **labels}},
                                              "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}})
    http = [{"route": [{"destination": {"host": name, "subset": "base"}}]}]
    subsets = [{"name": "base", "labels": {"version": "base"}}]
    if not routed:  # already in its rendered state: the lane rule and the canary subset written out
        http.insert(0, {"match": [{"headers": {LANE: {"exact": "canary"}}}],
                        "route": [{"destination": {"host": name, "subset": "canary"}}]})
        subsets.append({"name": "canary", "labels": {"istio.service.tag": "gray"}})
    entry = {"hosts": ["*"], "gateways": ["edge"]} if index == 0 else {"hosts": [name]}
    objects.append({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                    "metadata": {"name": name, "namespace": "default"}, "spec": {**entry, "http": http}})
    objects.append({"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
                    "metadata": {"name": name, "namespace": "default"}, "spec": {"host": name, "subsets": subsets}})
    if routed:
        objects.append({"apiVersion": "rollouts.kruise.io/v1alpha1", "kind": "TrafficRouting",
                        "metadata": {"name": f"{name}-tr", "namespace": "default"},
                        "spec": {"strategy": {"matches": [{"headers": [{"type": "Exact", "name": LANE,
                                                                          "value": "canary"}]}]},
                                 "objectRef": [{"service": name, "customNetworkRefs": [
                                     {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                                      "name": name},
                                     {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
                                      "name": name}]}]}})
    return objects


def mesh(services: int, hops: int, routed: bool) -> list[dict]:
    """The generated mesh: an ingress Gateway and ``services`` services, the first ``hops`` of them a chain
    (``routed``: the chain's objects come with TrafficRoutings to render; the others are already rendered)."""
    objects: list[dict] = [
        {"apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway",
         "metadata": {"name": "edge", "namespace": "default"},
         "spec": {"selector": {"istio": "ingressgateway"},
                  "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}},
    ]
    for index in range(services):
        calls = f"svc{index + 1:05d}" if index + 1 < hops else None
        objects.extend(service_objects(index, calls, routed and index < hops))
    return objects


def documents_of(objects: list[dict]) -> list[Document]:
    return [Document(body, "mesh.yaml", position + 1) for position, body in enumerate(objects)]


def best(function: Callable[[], object], repeats: int = 3) -> float:
    """The fastest of ``repeats`` single calls, wall-clock."""
    return best_per_call(function, calls=1, repeats=repeats)


def simulate_once(documents: list[Document], hops: int) -> None:
    request = parse_request("GET http://shop.example.com/", [f"{LANE}: canary"])
    trace = simulate(documents, request, Options(max_hops=max(32, hops + 1)))
    depth = len(trace.paths()[0].steps)
    if depth != hops or len(trace.paths()) != 1:
        raise SystemExit(f"the trace reached {depth} services, not {hops}: the benchmark mesh is wrong")


def engine() -> Engine:
    return Engine(ScriptLibrary([builtin_layer()]), LuaSandbox())


def measure(services: int, hops: int) -> dict:
    plain = documents_of(mesh(services, hops, routed=False))
    routed = documents_of(mesh(services, hops, routed=True))
    scripts = engine()

    def render_then_simulate() -> None:
        state, _names = rendered_state(routed, scripts)
        simulate_once(state, hops)

    bodies = [d.body for d in plain]
    command, command_cpu, reading = measure_command(services, hops)
    return {"services": services, "hops": hops, "documents": len(plain),
            "deepcopy": best(lambda: copy.deepcopy(bodies)),
            "simulate": best(lambda: simulate_once(plain, hops)),
            "render+simulate": best(render_then_simulate), "command": command, "command_cpu": command_cpu,
            "reading": reading}


def measure_command(services: int, hops: int) -> tuple[float, float, float]:
    """(the whole command's wall-clock time, its CPU time, reading the YAML alone in CPU time) in seconds,
    each the best of two (CPU time: what a busy machine disturbs less)."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "mesh.yaml"
        path.write_text(yaml.safe_dump_all(mesh(services, hops, routed=True), sort_keys=False))
        readings = []
        for _ in range(2):
            started = time.process_time()
            read_documents([str(path)])
            readings.append(time.process_time() - started)
        command = [sys.executable, "-m", "engine", "simulate", "-f", str(path), "--request",
                   "GET http://shop.example.com/", "-H", f"{LANE}: canary", "--max-hops", str(max(32, hops + 1)),
                   "--expect", f"svc{hops - 1:05d}=version=canary"]

        environment = command_environment(str(Path(directory) / "pycache"))  # as a user runs it: bytecode cached

        cpus = []

        def run() -> None:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            result = subprocess.run(command, capture_output=True, text=True, env=environment)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            if result.returncode != 0:
                raise SystemExit(f"graylane simulate failed ({result.returncode}): {result.stderr.strip()}")
        run()  # writes the bytecode caches
        wall = best(run, repeats=2)
        return wall, min(cpus[1:]), min(readings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="sizes up to 1,000 services")
    parser.add_argument("--sizes", help="comma-separated service counts (at the most hops); default 100,300,1000,3000")
    parser.add_argument("--hops", help="comma-separated chain lengths (at 1,000 services, or the largest size "
                                       "below it); default 5,10,20")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",")] if args.sizes else \
        [100, 300, 1000] if args.quick else [100, 300, 1000, 3000]
    hop_counts = [int(h) for h in args.hops.split(",")] if args.hops else [5, 10, 20]
    most, fewest = max(hop_counts), min(hop_counts)
    hop_size = max([n for n in sizes if n <= 1000] or [min(sizes)])
    print("| services | hops | documents | deepcopy of the documents | simulate | ratio | render + simulate | ratio "
          "| whole command (wall) | whole command (CPU) | of which reading the file (CPU) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = [measure(n, most) for n in sizes] + [measure(hop_size, h) for h in hop_counts if h != most]
    for row in sorted(rows, key=lambda r: (r["hops"], r["services"])):
        base = row["deepcopy"]
        print(f"| {row['services']:,} | {row['hops']} | {row['documents']:,} | {base * 1000:.1f} ms "
              f"| {row['simulate'] * 1000:.1f} ms | {row['simulate'] / base:.1f} "
              f"| {row['render+simulate'] * 1000:.1f} ms | {row['render+simulate'] / base:.1f} "
              f"| {row['command']:.2f} s | {row['command_cpu']:.2f} s | {row['reading']:.2f} s |")
    by_size = {r["services"]: r for r in rows if r["hops"] == most}
    by_hops = {r["hops"]: r for r in rows if r["services"] == hop_size}
    small, large = min(by_size), max(by_size)

    def ratio(row: dict) -> float:
        return row["simulate"] / row["deepcopy"]

    def growth(key: str, rows: dict, low, high) -> str:
        return f"x{rows[high][key] / rows[low][key]:.2f}"

    print(f"\ngrowth with services ({most} hops): x{large / small:.0f} services -> simulate "
          f"{growth('simulate', by_size, small, large)} (ratio to deepcopy "
          f"x{ratio(by_size[large]) / ratio(by_size[small]):.2f}), whole command "
          f"{growth('command_cpu', by_size, small, large)} (CPU)")
    if fewest != most:
        print(f"growth with hops ({hop_size:,} services): x{most / fewest:.0f} hops ({fewest} -> {most}) -> simulate "
              f"{growth('simulate', by_hops, fewest, most)} (ratio to deepcopy "
              f"x{ratio(by_hops[most]) / ratio(by_hops[fewest]):.2f}), whole command "
              f"{growth('command_cpu', by_hops, fewest, most)} (CPU)")


if __name__ == "__main__":
    main()
