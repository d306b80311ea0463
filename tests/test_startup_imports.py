"""Start-up (issue 12): ``graylane render`` of a small file and ``graylane --help`` load only what they use.
Import lists, not timings (speed is measured in benchmarks/bench_startup.py): jsonschema (~75 ms) only
where a schema check fails or validate explains findings, re2 only for an input with a regex, the
analyzers render's output check does not run never, the cluster client never; nor what graylane itself
does without: dataclasses (with inspect, ast, dis: engine/records.py), importlib.resources (with zipfile,
tempfile), shutil (argparse's formatter width, engine/cli/main.py)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from helpers import REPO

def _bench_startup():
    spec = importlib.util.spec_from_file_location("bench_startup", REPO / "benchmarks" / "bench_startup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SMALL = _bench_startup().SMALL_INPUT  # the benchmark's small file: a TrafficRouting, its VirtualService and DR
# what graylane no longer loads on these paths itself: keep it that way (the README's "Start-up" has the costs)
AVOIDED = ("dataclasses", "inspect", "importlib.resources", "importlib.readers", "zipfile", "tempfile", "shutil",
           "threading")
NEVER = ("kubernetes", "engine.cluster", "engine.fulllink.simulate", "engine.fulllink.color",
         "engine.checks.analyzers.mesh",
         "engine.checks.analyzers.argo")


def _import_times(*args: str, stdin: str | None = None) -> set[str]:
    done = subprocess.run([sys.executable, "-X", "importtime", *args], input=stdin,
                          capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}


def imported(*args: str, stdin: str | None = None) -> set[str]:
    """What graylane imports itself: beyond what this interpreter's own start-up imports (site-packages' .pth
    files may import certifi, and with it importlib.resources, before any program runs)."""
    return _import_times("-m", "engine", *args, stdin=stdin) - _import_times("-c", "pass")


def _loaded(modules: set[str], prefix: str) -> bool:
    return any(m == prefix or m.startswith(prefix + ".") for m in modules)


def test_render_of_a_small_file_imports_only_what_it_uses():
    modules = imported("render", "-f", "-", stdin=SMALL)
    assert "engine.routing.render" in modules and "engine.checks.validate" in modules  # it did render
    for name in ("jsonschema", "re2", *AVOIDED, *NEVER):
        assert not _loaded(modules, name), f"render of a small file imports {name}"


@pytest.mark.parametrize("args", [["--help"], ["render", "--help"], ["simulate", "--help"]])
def test_help_imports_no_wing(args):
    modules = imported(*args)
    for name in ("jsonschema", "jsonschema_rs", "yaml", "lupa", "re2", "engine.routing", "engine.lua",
                 "engine.checks.validate", "engine.checks.analyzers", "engine.documents", *AVOIDED, *NEVER):
        assert not _loaded(modules, name), f"graylane {' '.join(args)} imports {name}"


def test_a_failing_output_check_still_explains_with_jsonschema():
    # A field the schema does not know: jsonschema-rs says "invalid", jsonschema finds and words the problem.
    text = SMALL.replace("    - destination: {host: reviews}", "    - destination: {host: reviews}\n      colour: red")
    done = subprocess.run([sys.executable, "-m", "engine", "validate", "-f", "-"], input=text,
                          capture_output=True, text=True, cwd=REPO, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "GL0001 <stdin>#2 spec.http[0].route[0].colour: unknown field" in output, output


@pytest.mark.parametrize("columns", [None, "", "0", "-5", "wide", "20", "79", "100", "250"])
def test_help_width_is_the_one_argparse_would_pick(columns):
    # argparse's formatter takes shutil.get_terminal_size().columns - 2; graylane's parser passes the same width
    # without importing shutil. A child process, so its stdout is no terminal, as under pytest.
    environment = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        environment["COLUMNS"] = columns
    code = ("import shutil; from engine.cli.main import help_width; "
            "print(help_width(), shutil.get_terminal_size().columns - 2)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=environment,
                          check=True)
    ours, argparses = done.stdout.split()
    assert ours == argparses
