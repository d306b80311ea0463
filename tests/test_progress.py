"""Progress on stderr for long work: shown when stderr is a terminal, nothing in pipes. Runs the real graylane
with its stderr on a pseudo-terminal, as a person's shell would (the controller's initial sync is tested against
a real kube-apiserver in tests/e2e/test_controller_progress.py)."""
from __future__ import annotations

import os
from pathlib import Path

from helpers import run_graylane, run_with_terminal_stderr

PLAN = ["plan", "-f", "samples/weighted-canary"]
ALL_STEPS = ["render", "--all-steps", "-f", "samples/argo-rollouts/header-mirror", "--output-dir"]


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


def test_render_all_steps_shows_steps_and_objects_on_a_terminal(tmp_path: Path) -> None:
    status, _, terminal = run_with_terminal_stderr(*ALL_STEPS, str(tmp_path / "on-terminal"))
    assert status == 0
    # The sample's Rollout has 9 steps: each is rendered, then each step's object is written.
    assert "rendering steps: 1 Rollout/checkout step 1/9" in terminal
    assert "writing objects: 0/9" in terminal
    assert "writing objects: 9/9 step-9/VirtualService.shop.checkout.yaml" in terminal
    # Each progress line is cleared before the next line of the command, which stays whole on the terminal.
    last = terminal.split("\r")
    assert last[-2:] == ["wrote 9 object(s) in 9 step folder(s) under " + str(tmp_path / "on-terminal"), "\n"]
    assert not last[-3].strip()


def test_render_all_steps_is_quiet_in_a_pipe_and_writes_the_same_files(tmp_path: Path) -> None:
    run_with_terminal_stderr(*ALL_STEPS, str(tmp_path / "on-terminal"))
    result = run_graylane(*ALL_STEPS, str(tmp_path / "piped"))
    assert result.returncode == 0
    assert result.stderr == f"wrote 9 object(s) in 9 step folder(s) under {tmp_path / 'piped'}\n"
    written = {p.relative_to(tmp_path / "piped"): p.read_bytes() for p in (tmp_path / "piped").rglob("*.yaml")}
    assert len(written) == 9
    assert written == {p.relative_to(tmp_path / "on-terminal"): p.read_bytes()
                       for p in (tmp_path / "on-terminal").rglob("*.yaml")}


def test_the_build_scripts_list_what_a_cold_build_would_build_without_building(tmp_path: Path) -> None:
    """What the test session says before its background build (tests/conftest.py), from an empty cache."""
    import subprocess

    from helpers import REPO
    env = {**os.environ, "GRAYLANE_CACHE": str(tmp_path)}
    missing = subprocess.run(["bash", str(REPO / "tests" / "peers" / "build.sh"), "missing"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 0, missing.stderr
    peers = sorted(p.parent.name for p in (REPO / "tests" / "peers").glob("*/go.mod"))
    lines = missing.stdout.splitlines()
    assert lines[0].startswith("kube-apiserver v1.") and lines[1].startswith("etcd v3.")
    assert sorted(lines[2:]) == [f"peer {name}" for name in peers]
    assert missing.stderr == "" and list(tmp_path.iterdir()) == []  # nothing built, nothing written
