"""Peer programs for parity and oracle tests: Go programs built from Kruise's, Argo's and Istio's own modules.

A peer that cannot be built fails the test (never skips it) when GRAYLANE_REQUIRE_E2E is set, as in CI; on a
machine without Go the test is skipped with the reason.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from helpers import wait_telling

PEERS = Path(__file__).resolve().parent / "peers"


@functools.lru_cache(maxsize=None)
def _build(name: str) -> tuple[Path | None, str]:
    if shutil.which("go") is None:
        return None, f"no Go toolchain to build the '{name}' peer from its Go module"
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        build = subprocess.Popen(["bash", str(PEERS / "build.sh"), name], stdout=out, stderr=err, text=True)
        status = wait_telling(build, f"waiting for the '{name}' peer to be built from its Go module (a first, cold "
                                     "build takes minutes)")
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if status != 0:
        return None, f"building the '{name}' peer failed:\n{stderr[-4000:]}"
    return Path(stdout.strip().splitlines()[-1]), ""


def peer_binary(name: str) -> Path:
    """The built peer program ``name`` (tests/peers/<name>/), building it if needed."""
    binary, reason = _build(name)
    if binary is None:
        if os.environ.get("GRAYLANE_REQUIRE_E2E") or shutil.which("go") is not None:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return binary
