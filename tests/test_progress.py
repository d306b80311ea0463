"""Progress on stderr for long work: shown when stderr is a terminal, nothing in pipes. Runs the real graylane
with its stderr on a pseudo-terminal, as a person's shell would."""
from __future__ import annotations

import os
import pty
import subprocess

from helpers import REPO, graylane_command, run_graylane

PLAN = ["plan", "-f", "samples/weighted-canary"]


def run_with_terminal_stderr(*args: str) -> tuple[int, str, str]:
    """(exit status, stdout through a pipe, what appeared on the terminal that was stderr)."""
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen([*graylane_command(), *args], stdout=subprocess.PIPE, stderr=follower,
                                   stdin=subprocess.DEVNULL, cwd=REPO, text=True)
        os.close(follower)
        stdout, _ = process.communicate(timeout=120)
        terminal = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: everything has been read
                break
            if not chunk:
                break
            terminal += chunk
    finally:
        os.close(leader)
    return process.returncode, stdout, terminal.decode("utf-8", "replace")


def test_plan_shows_progress_on_a_terminal() -> None:
    status, stdout, terminal = run_with_terminal_stderr(*PLAN)
    assert status == 0
    assert "planning steps: 1 Rollout/reviews step 1/3" in terminal
    assert terminal.endswith("\r")  # the progress line is cleared at the end
    assert stdout == run_graylane(*PLAN).stdout  # stdout is the same either way


def test_plan_is_quiet_in_a_pipe() -> None:
    result = run_graylane(*PLAN)
    assert result.returncode == 0
    assert result.stderr == ""
