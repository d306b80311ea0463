"""Shared helpers: run the real graylane command as a user would."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"


def graylane_command() -> list[str]:
    found = shutil.which("graylane")
    if found:
        return [found]
    return [sys.executable, "-m", "engine.cli"]


def run_graylane(*args: str, input: str | None = None, cwd: Path | str | None = None,
                 env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {key: value for key, value in os.environ.items() if key != "GRAYLANE_LUA_PATH"}
    full_env.update(env or {})
    return subprocess.run([*graylane_command(), *args], input=input, capture_output=True, text=True,
                          cwd=cwd or REPO, env=full_env, timeout=120)


@pytest.fixture
def graylane():
    return run_graylane
