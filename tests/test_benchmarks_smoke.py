"""``python -m benchmarks`` (issue 12: every benchmark from one command) runs, in its smoke mode: the machine
header, each part's table, a skipped part said as skipped. Figures are not checked (speed is measured, not
tested). The render parts belong to bench_render.py/bench_kruise.py and are run by their own smoke runs."""
from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import REPO


def run_benchmarks(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks", "--smoke", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600, check=False)


def test_startup_and_simulate_in_one_command():
    done = run_benchmarks("--only", "startup,kruise,simulate")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "- CPU: " in out and "cores; load average" in out and "lupa " in out and "Lua 5.1" in out
    assert "## startup" in out and "| `graylane render -f small.yaml` |" in out
    assert "## kruise" in out and "skipped in --smoke" in out
    assert "## simulate" in out and "| 40 | 5 | 201 |" in out and "growth with services" in out and " s |" in out


def test_unknown_part_is_a_usage_error():
    done = run_benchmarks("--only", "startup,nope")
    assert done.returncode == 2 and "unknown part(s) nope" in done.stderr


@pytest.mark.e2e
def test_controller_part_against_a_real_api_server():
    done = run_benchmarks("--only", "controller")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith("| 10 |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1:3] == ["4", "100/200"] and float(cells[4]) >= 4.0  # finalizer, VS, DR, status per object
    assert float(cells[6]) >= 2.0 and float(cells[7]) == 0.0  # change: VS + status; idle: no requests
