"""Start-up cost of the ``graylane`` command, beyond the Python interpreter's own (issue 12's target: under
0.15 s for ``graylane --help`` and for ``graylane render`` of one small file).

    python benchmarks/bench_startup.py [--runs 20] [--importtime]

Runs each command many times (after warm-up runs, as hyperfine does) and prints mean, median, min and
standard deviation, and the overhead: the command's median minus the median of ``python -c pass`` measured
in the same run with the same interpreter. ``--importtime`` adds the slowest imports of each command
(``python -X importtime``, cumulative microseconds). ``--against DIR`` adds the same commands run from another
checkout (``PYTHONPATH=DIR``; e.g. a worktree of main) for a before/after in one run. The commands take
turns run by run, so a change of load during the benchmark falls on all of them alike. A benchmark, not a
test: it asserts nothing.

The commands run as a user's would, with bytecode caches: ``PYTHONDONTWRITEBYTECODE`` (set in some
environments, this project's sessions among them) is dropped and the caches go to a temporary
``PYTHONPYCACHEPREFIX``, written by the warm-up runs. Without them every run compiles graylane's ~50 modules
from source, which cost about 100 ms more per command on the project machine.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMALL_INPUT = """\
apiVersion: rollouts.kruise.io/v1alpha1
kind: TrafficRouting
metadata: {name: reviews-tr, namespace: default}
spec:
  objectRef:
  - service: reviews
    customNetworkRefs:
    - {apiVersion: networking.istio.io/v1beta1, kind: VirtualService, name: reviews}
    - {apiVersion: networking.istio.io/v1beta1, kind: DestinationRule, name: reviews}
  strategy: {weight: 5}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: stable, labels: {version: v1}}
"""
TARGET = 0.150


def graylane_command() -> list[str]:
    """The installed console script next to this interpreter (a virtualenv's bin/), else the one on PATH."""
    beside = Path(sys.executable).parent / "graylane"
    found = str(beside) if beside.exists() else shutil.which("graylane")
    if not found:
        sys.exit("bench_startup: no graylane command found; pip install -e . first")
    return [found]


def command_environment(pycache: str, pythonpath: str | None = None) -> dict[str, str]:
    """The environment a user's shell would give: bytecode caches on (in ``pycache``)."""
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    environment["PYTHONPYCACHEPREFIX"] = pycache
    if pythonpath:
        environment["PYTHONPATH"] = pythonpath
    return environment


def run_once(command: list[str], environment: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall-clock seconds and CPU seconds (user + system, which other load on the machine disturbs less) of one
    run; the CPU of the command's children (the forked Lua worker) included."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    completed = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        sys.exit(f"bench_startup: {' '.join(command)} failed: {completed.stderr.decode()[:300]}")
    return elapsed, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def interleaved_runs(cases: list[tuple[list[str], dict[str, str]]], runs: int,
                     warmup: int) -> list[tuple[list[float], list[float]]]:
    """(wall seconds, CPU seconds) of each case, the cases taking turns run by run, so a change of load on the
    machine during the benchmark falls on all of them alike."""
    results: list[tuple[list[float], list[float]]] = [([], []) for _ in cases]
    for index in range(warmup + runs):
        for (command, environment), (walls, cpus) in zip(cases, results):
            wall, cpu = run_once(command, environment)
            if index >= warmup:
                walls.append(wall)
                cpus.append(cpu)
    return results


def slowest_imports(command: list[str], environment: dict[str, str], count: int = 8) -> list[tuple[int, str]]:
    """(cumulative µs, module) of the slowest top-level imports, from ``-X importtime``."""
    script = command[0]
    completed = subprocess.run([sys.executable, "-X", "importtime", script, *command[1:]],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment)
    rows = []
    for line in completed.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self, cumulative, name = (part.strip() for part in line[len("import time:"):].split("|", 2))
        if not name.startswith("  "):  # top-level imports only (nested ones are indented by two spaces)
            rows.append((int(cumulative), name.strip()))
    return sorted(rows, reverse=True)[:count]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--importtime", action="store_true", help="also list the slowest imports")
    parser.add_argument("--against", metavar="DIR", help="also run the commands from this checkout (PYTHONPATH)")
    args = parser.parse_args(argv)

    graylane = graylane_command()
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / "small.yaml"
        small.write_text(SMALL_INPUT, encoding="utf-8")
        here = command_environment(str(Path(tmp) / "pycache"))
        cases = [("python -c pass (baseline)", [sys.executable, "-c", "pass"], here)]
        commands = [("graylane --help", ["--help"]), ("graylane render -f small.yaml", ["render", "-f", str(small)]),
                    ("graylane version", ["version"])]
        cases += [(label, [*graylane, *rest], here) for label, rest in commands]
        if args.against:
            there = command_environment(str(Path(tmp) / "pycache-against"), str(Path(args.against).resolve()))
            cases += [(f"{label} ({args.against})", [*graylane, *rest], there) for label, rest in commands]
        measured = interleaved_runs([(command, environment) for _label, command, environment in cases],
                                    args.runs, args.warmup)
        results = [(label, command, walls, cpus, environment)
                   for (label, command, environment), (walls, cpus) in zip(cases, measured)]

        base_wall, base_cpu = statistics.median(results[0][2]), statistics.median(results[0][3])
        print(f"{args.runs} runs each after {args.warmup} warm-up runs; {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f}; Python {sys.version.split()[0]}")
        print()
        print("| command | wall median | wall min | wall stdev | CPU median | overhead: wall | overhead: CPU |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for label, _command, walls, cpus, _environment in results:
            wall, cpu = statistics.median(walls), statistics.median(cpus)
            overheads = ["", ""] if label.startswith("python") else [
                f"{(value - base) * 1000:.0f} ms{'' if value - base < TARGET else ' (over 150 ms)'}"
                for value, base in ((wall, base_wall), (cpu, base_cpu))]
            print(f"| `{label}` | {wall * 1000:.1f} ms | {min(walls) * 1000:.1f} ms | "
                  f"{statistics.stdev(walls) * 1000:.1f} ms | {cpu * 1000:.1f} ms | {overheads[0]} | {overheads[1]} |")
        if args.importtime:
            for label, command, _walls, _cpus, environment in results[1:]:
                print(f"\nslowest imports of `{label}` (cumulative):")
                for micros, name in slowest_imports(command, environment):
                    print(f"  {micros / 1000:7.1f} ms  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
