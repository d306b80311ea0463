"""Render cost of the built-in VirtualService script, as ratios to copy.deepcopy of the same input.

Run: python benchmarks/bench_render.py   (prints a table; nothing is asserted — speed is measured, not tested)

Each figure is the best of several repeats of a timed loop, measured in the same process as its
deepcopy baseline, so the ratios hold across machines while the microseconds do not.
"""
from __future__ import annotations

import copy
import statistics
import sys
import time
from typing import Callable

from engine.routing.render import Engine
from engine.lua.sandbox import LuaSandbox
from engine.routing.script_input import OriginalState, build_script_input
from engine.lua.scripts import ScriptLibrary, builtin_layer
from engine.routing.strategy import TrafficStrategy

KEY = "networking.istio.io/VirtualService"


def typical_spec() -> dict:
    """A bookinfo-like VirtualService: a header route, a default route with retries and a port."""
    return {
        "hosts": ["reviews", "reviews.bookinfo.svc.cluster.local"],
        "gateways": ["mesh", "bookinfo-gateway"],
        "http": [
            {"name": "jason", "match": [{"headers": {"end-user": {"exact": "jason"}}}],
             "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
            {"name": "primary", "route": [{"destination": {"host": "reviews", "subset": "v1",
                                                           "port": {"number": 9080}}, "weight": 100}],
             "timeout": "10s", "retries": {"attempts": 3, "perTryTimeout": "2s"}},
        ],
    }


def large_spec(rules: int) -> dict:
    http = [{"name": f"r{i}", "match": [{"uri": {"prefix": f"/api/{i}"}}],
             "route": [{"destination": {"host": f"svc{i % 50}", "port": {"number": 8080}}}]} for i in range(rules - 1)]
    http.append({"route": [{"destination": {"host": "reviews", "subset": "v1"}}]})
    return {"hosts": ["reviews"], "http": http}


def best_per_call(function: Callable[[], object], calls: int, repeats: int = 5) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        timings.append((time.perf_counter() - start) / calls)
    return min(timings)


def measure(name: str, spec: dict, engine: Engine, calls: int, repeats: int = 5) -> dict:
    strategy = TrafficStrategy(weight=20, matches=[{"headers": [{"type": "Exact", "name": "x-canary", "value": "1"}]}])
    original = OriginalState(spec, {"app": "reviews"}, {})
    script_input = build_script_input(original, strategy, "reviews", "reviews")
    script = engine.library.find(KEY)

    def render_once():
        return engine.sandbox.run(script, script_input)

    render_once()  # compile once, warm caches
    deepcopy = best_per_call(lambda: copy.deepcopy(script_input), calls, repeats)
    render = best_per_call(render_once, calls, repeats)
    return {"case": name, "deepcopy_us": deepcopy * 1e6, "render_us": render * 1e6, "ratio": render / deepcopy}


def main() -> int:
    engine = Engine(ScriptLibrary([builtin_layer()]), LuaSandbox(timeout=10))
    rows = [measure("typical VirtualService (2 rules)", typical_spec(), engine, calls=2000)]
    for rules in (100, 1000):
        rows.append(measure(f"VirtualService with {rules} http rules", large_spec(rules), engine,
                            calls=max(2, 20000 // rules), repeats=3))
    # 10,000 renders in a row: one timed loop, no best-of, to show steady state (GC, caches) over a long run.
    strategy = TrafficStrategy(weight=20)
    script = engine.library.find(KEY)
    script_input = build_script_input(OriginalState(typical_spec(), {}, {}), strategy, "reviews", "reviews")
    start = time.perf_counter()
    for _ in range(10000):
        copy.deepcopy(script_input)
    deepcopy_total = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(10000):
        engine.sandbox.run(script, script_input)
    render_total = time.perf_counter() - start
    rows.append({"case": "10,000 renders in a row (typical)", "deepcopy_us": deepcopy_total * 1e6 / 10000,
                 "render_us": render_total * 1e6 / 10000, "ratio": render_total / deepcopy_total})

    print(f"{'case':40} {'deepcopy µs':>12} {'render µs':>10} {'ratio':>6}")
    for row in rows:
        print(f"{row['case']:40} {row['deepcopy_us']:12.1f} {row['render_us']:10.1f} {row['ratio']:6.2f}")
    per_rule = [r["render_us"] / n for r, n in zip(rows[1:3], (100, 1000))]
    print(f"render cost per http rule: {per_rule[0]:.2f} µs at 100 rules, {per_rule[1]:.2f} µs at 1000 rules "
          f"(growth {per_rule[1] / per_rule[0]:.2f}x per rule; 1.00 = linear)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
