"""Render cost of the built-in VirtualService script: phases, the worker process, runtimes; ratios to deepcopy.

Run: python benchmarks/bench_render.py [--quick]   (prints tables; nothing is asserted — speed is measured,
not tested)

Every figure is the best of several repeats of a timed loop, measured in the same process as its
copy.deepcopy baseline, so the ratios hold across machines while the microseconds do not.

Tables:
1. render as every command runs it (worker process, LuaJIT 2.1 with only the host's conversion compiled, all
   sandbox guarantees) against deepcopy, for a typical VirtualService, 100 and 1,000 http rules, and per rule
   (linear growth = 1.00); wall-clock time, and the CPU time of both processes.
2. where the time goes, in CPU time (which a busy machine disturbs less than wall-clock time), each phase
   measured by a script that stops after it, in one process: flattening the input (Python), lupa's
   ``table_from`` of the token list, building the tables and a fresh environment in Lua, the script itself,
   encoding the result in Lua, ``json.loads``; then what the worker process adds (pipes, ``marshal``, the
   other process), the rest of ``render_object`` (the stored original, its JSON encoding, the output
   object), and the output check ``render`` runs on each object (``check_rendered``: JSON Schema, route
   rules, Istio's admission rules), which Kruise does not do at all.
3. runtimes, in-process: PUC Lua 5.1 (the default before), LuaJIT 2.1 as graylane runs it (the JIT compiles
   the host's conversion code only; scripts run in the interpreter, where the time hook fires), and LuaJIT
   with everything compiled (not usable: the time hook does not fire inside compiled loops).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from typing import Callable

from engine.checks.validate import check_rendered
from engine.documents import Document
from engine.lua.convert import to_tokens
from engine.lua.runner import LuaState, host_source
from engine.lua.sandbox import LuaSandbox, Script
from engine.lua.scripts import ScriptLibrary, builtin_layer
from engine.routing.render import Engine, Rendered, render_object
from engine.routing.script_input import OriginalState, build_script_input
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


def best_per_call(function: Callable[[], object], calls: int, repeats: int,
                  clock: Callable[[], float] = time.perf_counter) -> float:
    timings = []
    for _ in range(repeats):
        start = clock()
        for _ in range(calls):
            function()
        timings.append((clock() - start) / calls)
    return min(timings)


def cpu_per_call(function: Callable[[], object], calls: int, repeats: int) -> float:
    """CPU time of this process: steadier than wall-clock time on a busy machine, for in-process work."""
    return best_per_call(function, calls, repeats, time.process_time)


STRATEGY = TrafficStrategy(weight=20, matches=[{"headers": [{"type": "Exact", "name": "x-canary", "value": "1"}]}])


def script_input(spec: dict) -> dict:
    return build_script_input(OriginalState(spec, {"app": "reviews"}, {}), STRATEGY, "reviews", "reviews")


def worker_cpu(sandbox: LuaSandbox) -> float:
    """CPU seconds the sandbox's worker process has used (Linux /proc; 0 where it cannot be read)."""
    pid = sandbox._worker.pid if sandbox._worker else None
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def both_cpu_per_call(sandbox: LuaSandbox, function: Callable[[], object], calls: int, repeats: int) -> float:
    """CPU time of this process and of the worker together, per call (the worker's clock ticks at 100 Hz,
    so the loop runs at least 2 s)."""
    timings = []
    for _ in range(repeats):
        start, start_worker, done = time.process_time(), worker_cpu(sandbox), 0
        wall = time.perf_counter()
        while done < calls or time.perf_counter() - wall < 2.0:
            function()
            done += 1
        timings.append((time.process_time() - start + worker_cpu(sandbox) - start_worker) / done)
    return min(timings)


class InlineRunner:
    """A LuaState driven directly (no worker), to time phases and runtimes."""

    def __init__(self, runtime: str, jit_everything: bool = False):
        prelude = host_source()
        if jit_everything:  # what graylane must not do: scripts compiled, where the time hook never fires
            prelude = prelude.replace("if jit then jit.off(true, true) end", "").replace(
                "if jit then jit.off(fn, true) end", "")
        self.state = LuaState(runtime, prelude)
        self.keys: dict = {}

    def run(self, source: str, obj: dict):
        key = self.keys.setdefault(source, len(self.keys) + 1)
        self.state.compile(key, source, "@bench")
        ok, detail, _line, message, *_rest = self.state.run(key, to_tokens(obj), 10.0, 256 * 1024 * 1024)
        assert ok, (detail, message)
        return json.loads(detail)

    def text(self, source: str, obj: dict) -> str:
        key = self.keys.setdefault(source, len(self.keys) + 1)
        self.state.compile(key, source, "@bench")
        return self.state.run(key, to_tokens(obj), 10.0, 256 * 1024 * 1024)[1]


def virtual_service(spec: dict) -> Document:
    return Document({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                     "metadata": {"name": "reviews", "namespace": "default", "labels": {"app": "reviews"}},
                     "spec": spec}, "vs.yaml", 1)


def render_call(engine: Engine, document: Document) -> Callable[[], Rendered]:
    """One render_object of ``document`` at the benchmark's strategy (what bench_kruise times too)."""
    return lambda: render_object(document, STRATEGY, "reviews", "reviews", engine, None)  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a rough figure in a few seconds)")
    quick = parser.parse_args().quick
    repeats = 2 if quick else 5
    source = ScriptLibrary([builtin_layer()]).find(KEY).source
    script = Script(KEY, source, "builtin:" + KEY)
    sandbox = LuaSandbox(timeout=10)            # what every command uses
    inline = LuaSandbox(timeout=10, isolation="inline")
    cases = [("typical VirtualService (2 rules)", typical_spec(), 2000), ("100 http rules", large_spec(100), 200),
             ("1,000 http rules", large_spec(1000), 20)]
    if quick:
        cases = [(name, spec, max(2, calls // 10)) for name, spec, calls in cases]
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start; "
          f"traffic-routing scripts run on {sandbox.runtime_name}")

    print("\n1. render (worker process, every sandbox guarantee) against copy.deepcopy")
    print(f"{'input':34} {'deepcopy µs':>12} {'render µs':>10} {'ratio':>6} {'deepcopy CPU':>13} "
          f"{'render CPU (both)':>18} {'ratio':>6}")
    rows = []
    for name, spec, calls in cases:
        obj = script_input(spec)
        sandbox.run(script, obj)
        deepcopy = best_per_call(lambda: copy.deepcopy(obj), calls, repeats)
        render = best_per_call(lambda: sandbox.run(script, obj), calls, repeats)
        deepcopy_cpu = cpu_per_call(lambda: copy.deepcopy(obj), calls, repeats)
        render_cpu = both_cpu_per_call(sandbox, lambda: sandbox.run(script, obj), calls, min(repeats, 3))
        rows.append((name, spec, calls, obj, deepcopy_cpu, render_cpu))
        print(f"{name:34} {deepcopy * 1e6:12.1f} {render * 1e6:10.1f} {render / deepcopy:6.2f} "
              f"{deepcopy_cpu * 1e6:13.1f} {render_cpu * 1e6:18.1f} {render_cpu / deepcopy_cpu:6.2f}")
    per_rule = [rows[1][5] / 100, rows[2][5] / 1000]
    print(f"per http rule (CPU): {per_rule[0] * 1e6:.2f} µs at 100 rules, {per_rule[1] * 1e6:.2f} µs at 1,000 "
          f"(growth {per_rule[1] / per_rule[0]:.2f}x; 1.00 = linear)")

    print(f"\n2. where the time goes (CPU µs per call, {sandbox.runtime_name})")
    print(f"{'input':34} {'deepcopy':>9} {'flatten':>8} {'table_from':>10} {'build':>7} {'script':>7} "
          f"{'encode':>7} {'loads':>7} {'worker':>7} {'render_object':>14} {'output check':>13}")
    phases = InlineRunner(sandbox.runtime_name)
    engine = Engine(ScriptLibrary([builtin_layer()]), inline)
    for name, spec, calls, obj, deepcopy_cpu, render_cpu in rows:
        tokens = to_tokens(obj)
        flatten = cpu_per_call(lambda: to_tokens(obj), calls, repeats)
        table_from = cpu_per_call(lambda: phases.state.runtime.table_from(tokens), calls, repeats)
        empty = cpu_per_call(lambda: phases.run("return {}", obj), calls, repeats)
        echo = cpu_per_call(lambda: phases.run("return obj", obj), calls, repeats)
        text = phases.text("return obj", obj)
        loads = cpu_per_call(lambda: json.loads(text), calls, repeats)
        whole = cpu_per_call(lambda: inline.run(script, obj), calls, repeats)
        document = virtual_service(spec)
        once = render_call(engine, document)
        rendered = once()
        render_object_cpu = cpu_per_call(once, calls, repeats)
        check = cpu_per_call(lambda: check_rendered(document, rendered.body, None, force=True),
                             max(1, calls // 4), min(repeats, 3))
        print(f"{name:34} {deepcopy_cpu * 1e6:9.1f} {flatten * 1e6:8.1f} {table_from * 1e6:10.1f} "
              f"{(empty - flatten - table_from) * 1e6:7.1f} {(whole - echo) * 1e6:7.1f} "
              f"{(echo - empty - loads) * 1e6:7.1f} {loads * 1e6:7.1f} {(render_cpu - whole) * 1e6:7.1f} "
              f"{(render_object_cpu - whole) * 1e6:14.1f} {check * 1e6:13.1f}")
    print("build = 'return {}' minus flatten and table_from (tables, key order, fresh environment, hook); script = "
          "the built-in script minus 'return obj';\nencode = 'return obj' minus 'return {}' minus json.loads; "
          "worker = both processes' CPU per render (table 1) minus the whole run in-process;\nrender_object = its "
          "CPU in-process minus the run (stored original, its JSON, the output object); output check = "
          "check_rendered of the result")

    print("\n3. runtimes, in-process (CPU µs per call, and ratio to deepcopy's CPU time)")
    runners = [("PUC Lua 5.1", InlineRunner("lua51")), ("LuaJIT, host compiled", InlineRunner("luajit")),
               ("LuaJIT, all compiled", InlineRunner("luajit", jit_everything=True))]
    print(f"{'input':34} " + " ".join(f"{label:>22}" for label, _ in runners))
    for name, spec, calls, obj, deepcopy_cpu, render_cpu in rows:
        cells = []
        for _label, runner in runners:
            runner.run(source, obj)
            cost = cpu_per_call(lambda: runner.run(source, obj), calls, repeats)
            cells.append(f"{cost * 1e6:10.1f} ({cost / deepcopy_cpu:5.2f}x)")
        print(f"{name:34} " + " ".join(f"{cell:>22}" for cell in cells))
    print("'all compiled' is not usable: the time limit's hook does not fire inside compiled loops")
    sandbox.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
