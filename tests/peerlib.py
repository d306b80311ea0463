"""Peer programs for parity and oracle tests: Go programs built from Kruise's, Argo's and Istio's own modules.

A peer that cannot be built fails the test (never skips it) when GRAYLANE_REQUIRE_E2E is set, as in CI; on a
machine without Go the test is skipped with the reason.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PEERS = Path(__file__).resolve().parent / "peers"


@functools.lru_cache(maxsize=None)
def _build(name: str) -> tuple[Path | None, str]:
    if shutil.which("go") is None:
        return None, f"no Go toolchain to build the '{name}' peer from its Go module"
    if sys.stderr.isatty():
        print(f"\n[peers] building '{name}' from its Go module (the first build takes minutes)...",
              file=sys.stderr, flush=True)
    result = subprocess.run(["bash", str(PEERS / "build.sh"), name], capture_output=True, text=True)
    if result.returncode != 0:
        return None, f"building the '{name}' peer failed:\n{result.stderr[-4000:]}"
    return Path(result.stdout.strip().splitlines()[-1]), ""


def peer_binary(name: str) -> Path:
    """The built peer program ``name`` (tests/peers/<name>/), building it if needed."""
    binary, reason = _build(name)
    if binary is None:
        if os.environ.get("GRAYLANE_REQUIRE_E2E") or shutil.which("go") is not None:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return binary
