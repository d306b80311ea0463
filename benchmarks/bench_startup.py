"""Start-up cost of the ``graylane`` command, beyond the Python interpreter's own (issue 12's target: under
0.15 s for ``graylane --help`` and for ``graylane render`` of one small file).

    python benchmarks/bench_startup.py [--runs 20] [--importtime]

Runs each command many times (after warm-up runs, as hyperfine does) and prints mean, median, min and
standard deviation, and the overhead: the command's median minus the median of ``python -c pass`` measured
in the same run with the same interpreter. ``--importtime`` adds the slowest imports of each command
(``python -X importtime``, cumulative microseconds). A benchmark, not a test: it asserts nothing.
"""
from __future__ import annotations

import argparse
import os
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
"""
TARGET = 0.150


def graylane_command() -> list[str]:
    """The installed console script next to this interpreter (a virtualenv's bin/), else the one on PATH."""
    beside = Path(sys.executable).parent / "graylane"
    found = str(beside) if beside.exists() else shutil.which("graylane")
    if not found:
        sys.exit("bench_startup: no graylane command found; pip install -e . first")
    return [found]


def timed_runs(command: list[str], runs: int, warmup: int) -> list[float]:
    times = []
    for index in range(warmup + runs):
        start = time.perf_counter()
        completed = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - start
        if completed.returncode != 0:
            sys.exit(f"bench_startup: {' '.join(command)} failed: {completed.stderr.decode()[:300]}")
        if index >= warmup:
            times.append(elapsed)
    return times


def slowest_imports(command: list[str], count: int = 8) -> list[tuple[int, str]]:
    """(cumulative µs, module) of the slowest top-level imports, from ``-X importtime``."""
    script = command[0]
    completed = subprocess.run([sys.executable, "-X", "importtime", script, *command[1:]],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rows = []
    for line in completed.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self, cumulative, name = (part.strip() for part in line[len("import time:"):].split("|", 2))
        if not name.startswith("  "):  # top-level imports only (nested ones are indented by two spaces)
            rows.append((int(cumulative), name.strip()))
    return sorted(rows, reverse=True)[:count]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--importtime", action="store_true", help="also list the slowest imports")
    args = parser.parse_args()

    graylane = graylane_command()
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / "small.yaml"
        small.write_text(SMALL_INPUT, encoding="utf-8")
        cases = [("python -c pass (baseline)", [sys.executable, "-c", "pass"]),
                 ("graylane --help", [*graylane, "--help"]),
                 ("graylane render -f small.yaml", [*graylane, "render", "-f", str(small)]),
                 ("graylane version", [*graylane, "version"])]
        results = []
        for label, command in cases:
            times = timed_runs(command, args.runs, args.warmup)
            results.append((label, command, times))

        baseline = statistics.median(results[0][2])
        print(f"{args.runs} runs each after {args.warmup} warm-up runs; {os.cpu_count()} CPUs; "
              f"Python {sys.version.split()[0]}")
        print()
        print("| command | mean | median | min | stdev | overhead (median - baseline) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for label, _command, times in results:
            median = statistics.median(times)
            overhead = "" if label.startswith("python") else \
                f"{(median - baseline) * 1000:.0f} ms {'(target met)' if median - baseline < TARGET else '(TARGET MISSED)'}"
            print(f"| `{label}` | {statistics.mean(times) * 1000:.1f} ms | {median * 1000:.1f} ms | "
                  f"{min(times) * 1000:.1f} ms | {statistics.stdev(times) * 1000:.1f} ms | {overhead} |")
        if args.importtime:
            for label, command, _times in results[1:]:
                print(f"\nslowest imports of `{label}` (cumulative):")
                for micros, name in slowest_imports(command):
                    print(f"  {micros / 1000:7.1f} ms  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
