"""Every benchmark in one command, with the machine they ran on (issue 12).

    python -m benchmarks [--big] [--matrix] [--only PART,...] [--smoke]

Run from the repository's root after ``pip install -e '.[test]'``. Parts, in order, each a script in this
folder run as a subprocess with the same interpreter (its tables printed as they come):

    render      bench_render.py --quick (graylane's render against copy.deepcopy, per phase, PUC Lua/LuaJIT)
    kruise      bench_kruise.py (graylane beside Kruise's own Go path; needs Go to build it)
    startup     bench_startup.py (graylane --help, render of a small file, version, beyond the interpreter)
    simulate    bench_simulate.py --quick (simulate over a generated mesh; whole command per size)
    controller  bench_controller.py --counts 200 (a real kube-apiserver; needs its binaries built from Go)

``--big``: the controller at 200, 1,000, 3,000 and 10,000 TrafficRoutings (about an hour on 2 cores) and
the simulator up to 3,000 services. ``--matrix``: the controller's workers x QPS/burst matrix (300
TrafficRoutings unless --big). ``--smoke``: every part at a tiny size, to see that they all run (figures
meaningless). A part whose binaries cannot be had (no Go toolchain and nothing built) is skipped with a line
saying why; a part that fails is reported and the others still run; the exit status is 1 if any failed.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PARTS = ("render", "kruise", "startup", "simulate", "controller")


def machine() -> list[str]:
    """CPU model, cores, load, Python, and the libraries whose versions move the figures."""
    model = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown")
    lines = [f"CPU: {model}, {os.cpu_count()} cores; load average {_load()}",
             f"Python {platform.python_version()} ({platform.python_implementation()}) on {platform.platform()}"]
    try:
        import lupa
        import lupa.lua51
        import lupa.luajit21
        lines.append(f"lupa {lupa.__version__}: {lupa.lua51.LuaRuntime().lua_implementation}, "
                     f"{lupa.luajit21.LuaRuntime().lua_implementation}")
    except Exception as error:  # noqa: BLE001 - the report says what is missing
        lines.append(f"lupa: not importable ({error})")
    from importlib.metadata import PackageNotFoundError, version
    found = []
    for package in ("pyyaml", "jsonschema", "jsonschema-rs", "kubernetes"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            found.append(f"{package} missing")
    try:
        import yaml
        found.append("libyaml " + ("yes" if yaml.__with_libyaml__ else "no (pure-Python YAML)"))
    except ImportError:
        pass
    lines.append(", ".join(found))
    go = shutil.which("go")
    lines.append(subprocess.run([go, "version"], capture_output=True, text=True).stdout.strip() if go
                 else "Go: not installed (parts that build Go programs run only from binaries already built)")
    return lines


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _load() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def _has_quick(script: str) -> bool:
    done = subprocess.run([sys.executable, str(HERE / script), "--help"], capture_output=True, text=True, cwd=REPO)
    return "--quick" in done.stdout


def _apiserver_available() -> Optional[str]:
    """None when the controller benchmark can get a kube-apiserver and etcd, else why not."""
    if shutil.which("go"):
        return None
    built = Path.home() / ".cache" / "graylane" / "bin"
    if list(built.glob("kube-apiserver-*")) and list(built.glob("etcd-*")):
        return None
    return "no Go toolchain to build kube-apiserver and etcd, and none built in ~/.cache/graylane/bin"


def commands(args: argparse.Namespace) -> dict[str, Callable[[], tuple[Optional[list[str]], str]]]:
    """Per part: () -> (command, or None with the reason it is skipped)."""
    def render():
        return ["bench_render.py", *(["--quick"] if _has_quick("bench_render.py") else [])], ""

    def kruise():
        if args.smoke:
            return None, "skipped in --smoke (it builds and runs Kruise's Go path)"
        if shutil.which("go") is None:
            return None, "skipped: no Go toolchain to build Kruise's Go path (tests/peers/kruise)"
        return ["bench_kruise.py", *(["--quick"] if _has_quick("bench_kruise.py") else [])], ""

    def startup():
        return ["bench_startup.py", *(["--runs", "3", "--warmup", "1"] if args.smoke else [])], ""

    def simulate():
        if args.smoke:
            return ["bench_simulate.py", "--sizes", "20,40", "--hops", "3,5"], ""
        return ["bench_simulate.py", *([] if args.big else ["--quick"])], ""

    def controller():
        why = _apiserver_available()
        if why:
            return None, f"skipped: {why}"
        if args.smoke:
            return ["bench_controller.py", "--counts", "10", "--idle", "1"], ""
        counts = "200,1000,3000,10000" if args.big else ("300" if args.matrix else "200")
        return ["bench_controller.py", "--counts", counts, *(["--matrix"] if args.matrix else [])], ""

    return {"render": render, "kruise": kruise, "startup": startup, "simulate": simulate, "controller": controller}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true", help="the large sizes (controller up to 10,000: about an hour)")
    parser.add_argument("--matrix", action="store_true", help="the controller's workers x QPS/burst matrix")
    parser.add_argument("--smoke", action="store_true", help="every part at a tiny size (do they run?)")
    parser.add_argument("--only", help=f"comma-separated parts of {', '.join(PARTS)}")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",")] if args.only else list(PARTS)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; parts: {', '.join(PARTS)}")

    print("# graylane benchmarks\n")
    for line in machine():
        print(f"- {line}")
    failed = []
    plans = commands(args)
    for part in parts:
        command, why = plans[part]()
        print(f"\n## {part}\n", flush=True)
        if command is None:
            print(why, flush=True)
            continue
        print(f"`python benchmarks/{' '.join(command)}` (load average {_load()})\n", flush=True)
        started = time.monotonic()
        done = subprocess.run([sys.executable, str(HERE / command[0]), *command[1:]], cwd=REPO,
                              stdout=sys.stdout, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            failed.append(part)
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            print(f"\n{part}: FAILED (exit status {done.returncode}):\n{tail}", flush=True)
        else:
            print(f"\n({part}: {time.monotonic() - started:.0f} s; load average now {_load()})", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
