"""pytest fixtures and hooks shared by all tests; the helpers themselves live in helpers.py and peerlib.py.

Tests that need a program built from Go (marked e2e, parity or oracle) run last, and as soon as the session
knows it will run any, it starts building every such program in the background (tests/peers/build.sh all), so
the cold builds overlap the fast tests instead of following them.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import helpers
from helpers import CACHE, run_graylane, tell

SLOW_MARKERS = ("e2e", "parity", "oracle")  # in the order they run, last of all
BUILD_ALL = Path(__file__).resolve().parent / "peers" / "build.sh"


def pytest_configure(config: pytest.Config) -> None:
    helpers.PYTEST_CONFIG = config
    for marker, what in (("parity", "runs a peer's own Go code (Kruise, Argo) beside graylane"),
                         ("oracle", "runs Istio's own validation and analyzers (built from its Go module)"),
                         ("fuzz", "long property-based runs; deselected unless asked for with -m fuzz")):
        config.addinivalue_line("markers", f"{marker}: {what}")


def _slowness(item: pytest.Item) -> int:
    for rank, marker in enumerate(SLOW_MARKERS, start=1):
        if item.get_closest_marker(marker):
            return rank
    return 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_slowness)  # stable: files keep their order within each group


def pytest_collection_finish(session: pytest.Session) -> None:
    if shutil.which("go") is None or os.environ.get("GRAYLANE_NO_PREBUILD"):
        return
    if any(_slowness(item) for item in session.items):
        CACHE.mkdir(parents=True, exist_ok=True)
        log_path = CACHE / "prebuild.log"
        listed = subprocess.run(["bash", str(BUILD_ALL), "missing"], capture_output=True, text=True).stdout
        missing = [line for line in listed.splitlines() if line]
        if missing:
            tell(f"building {', '.join(missing)} from their Go modules in the background (a cold build "
                 f"of them all takes about 30 minutes on 2 cores; the tests that need them run last and wait; "
                 f"log: {log_path})")
        with open(log_path, "ab") as log:
            subprocess.Popen(["bash", str(BUILD_ALL), "all"], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                             start_new_session=True)


@pytest.fixture
def graylane():
    return run_graylane
