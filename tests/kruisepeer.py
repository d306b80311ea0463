"""Kruise's own code beside graylane: the peer program (tests/peers/kruise/) and Kruise's module source.

The peer runs OpenKruise Rollouts' custom network provider (EnsureRoutes, luamanager) on many cases per
process. Kruise loads its shipped scripts from ./lua_configuration at start-up, so the peer runs in the
github.com/openkruise/rollouts module directory of Go's module cache; the same directory gives the tests
Kruise's scripts and test data (read, never copied into the repository).
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

PEER_SOURCE = Path(__file__).resolve().parent / "peers" / "kruise"
KRUISE_MODULE = "github.com/openkruise/rollouts"


def kruise_version() -> str:
    """The Kruise release the peer is built against (tests/peers/kruise/go.mod)."""
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(KRUISE_MODULE)}\s+(v\S+)", (PEER_SOURCE / "go.mod").read_text(),
                      re.MULTILINE)
    assert match, "tests/peers/kruise/go.mod does not require " + KRUISE_MODULE
    return match.group(1)


@functools.lru_cache(maxsize=None)
def kruise_module_dir() -> Path:
    """The Kruise module's source in Go's module cache (downloaded through the module proxy if needed)."""
    env = dict(os.environ, GOFLAGS="-mod=mod", GOTOOLCHAIN="local")
    result = subprocess.run(["go", "mod", "download", "-json", f"{KRUISE_MODULE}@{kruise_version()}"],
                            cwd=PEER_SOURCE, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"go mod download {KRUISE_MODULE} failed: {result.stdout}{result.stderr}")
    return Path(json.loads(result.stdout)["Dir"])


def kruise_source() -> Path:
    """kruise_module_dir() for a test: skipped on a machine without Go, failed when Go is required (CI)."""
    import pytest
    if shutil.which("go") is None:
        reason = "no Go toolchain to fetch the github.com/openkruise/rollouts module"
        if os.environ.get("GRAYLANE_REQUIRE_E2E"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return kruise_module_dir()


def run_peer(binary: Path, cases: list[dict], mode: str = "ensure", iterations: int = 1) -> dict[str, dict]:
    """Run the peer on ``cases`` (one process); results by case id."""
    request = json.dumps({"mode": mode, "iterations": iterations, "cases": cases})
    result = subprocess.run([str(binary)], input=request, capture_output=True, text=True,
                            cwd=kruise_module_dir(), check=False)
    if result.returncode != 0:
        raise RuntimeError(f"kruise peer failed ({result.returncode}): {result.stderr[-2000:]}")
    return {item["id"]: item for item in json.loads(result.stdout)["results"]}


def peer_case(case_id: str, routing: dict, network_object: dict, step: int = 1) -> dict[str, Any]:
    """One peer input: the network object and the TrafficRouting or Rollout that routes it."""
    key = "trafficRouting" if routing["kind"] == "TrafficRouting" else "rollout"
    case: dict[str, Any] = {"id": case_id, "object": network_object, key: routing}
    if key == "rollout":
        case["step"] = step
    return case
