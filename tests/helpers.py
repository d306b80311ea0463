"""Shared test helpers (imported as `helpers`; a module named conftest would clash with tests/e2e/conftest.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"


def graylane_command() -> list[str]:
    found = shutil.which("graylane")
    if found:
        return [found]
    return [sys.executable, "-m", "engine"]


def run_graylane(*args: str, input: str | None = None, cwd: Path | str | None = None,
                 env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {key: value for key, value in os.environ.items() if key != "GRAYLANE_LUA_PATH"}
    full_env.update(env or {})
    return subprocess.run([*graylane_command(), *args], input=input, capture_output=True, text=True,
                          cwd=cwd or REPO, env=full_env, timeout=120)



def installed_program(*names: str, package: str) -> str:
    """A program the tests drive as a user would (chromium, kubectl), found on PATH. Missing, the test fails under
    GRAYLANE_REQUIRE_E2E=1 (CI, whose .ci/run installs the Debian ``package``) and is skipped elsewhere."""
    import pytest

    for name in names:
        found = shutil.which(name)
        if found:
            return found
    message = f"no {names[0]} on PATH (Debian package {package}; .ci/run installs it)"
    if os.environ.get("GRAYLANE_REQUIRE_E2E"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
