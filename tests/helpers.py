"""Shared test helpers (imported as `helpers`; a module named conftest would clash with tests/e2e/conftest.py)."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
CACHE = Path(os.environ.get("GRAYLANE_CACHE", Path.home() / ".cache" / "graylane"))
PYTEST_CONFIG = None  # set by conftest.py: lets ``tell`` write past pytest's output capture


def tell(message: str) -> None:
    """A line for the person running the tests (and for CI's log), shown even while pytest captures output:
    what a long wait is for."""
    config = PYTEST_CONFIG
    reporter = config.pluginmanager.getplugin("terminalreporter") if config is not None else None
    if reporter is None:
        print(message, file=sys.stderr, flush=True)
        return
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        reporter.write("\n")  # never after a test's progress dot on the same line
        reporter.write_line(message)


def wait_telling(process: subprocess.Popen, message: str, after: float = 2.0) -> int:
    """Wait for ``process`` (a build script); if it is still running after ``after`` seconds, a build (or the
    background build it waits for) is under way: ``tell`` the message once."""
    try:
        return process.wait(after)
    except subprocess.TimeoutExpired:
        tell(message)
        return process.wait()


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


class TerminalStderr:
    """A pseudo-terminal to give a child process as its stderr (as a person's shell would), read in the
    background so a long-running child never blocks on it: ``Popen(..., stderr=terminal.follower)``, then
    ``terminal.started()``; ``text()`` once the child has exited."""

    def __init__(self) -> None:
        import pty
        import threading
        self.leader, self.follower = pty.openpty()
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)

    def started(self) -> None:
        """The child holds the terminal now: close our copy so reading ends when the child exits."""
        os.close(self.follower)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.leader, 65536)
            except OSError:  # the terminal closed: everything has been read
                break
            if not chunk:
                break
            self._chunks.append(chunk)

    def so_far(self) -> str:
        """What has appeared on the terminal up to now (the child may still be running)."""
        return b"".join(list(self._chunks)).decode("utf-8", "replace")

    def text(self, timeout: float = 30) -> str:
        self._reader.join(timeout)
        os.close(self.leader)
        return b"".join(self._chunks).decode("utf-8", "replace")


def run_with_terminal_stderr(*args: str) -> tuple[int, str, str]:
    """``graylane args`` with stderr on a pseudo-terminal: (exit status, stdout through a pipe, what appeared
    on the terminal)."""
    terminal = TerminalStderr()
    process = subprocess.Popen([*graylane_command(), *args], stdout=subprocess.PIPE, stderr=terminal.follower,
                               stdin=subprocess.DEVNULL, cwd=REPO, text=True)
    terminal.started()
    stdout, _ = process.communicate(timeout=120)
    return process.returncode, stdout, terminal.text()
