"""The controller's initial sync shows progress on a terminal and nothing in a pipe (issue #13, part 3): the real
``graylane controller`` against a real kube-apiserver, with its stderr on a pseudo-terminal as in a person's shell,
and on a file as in a pod's log."""
from __future__ import annotations

import re
import subprocess

import pytest

from clusterlib import cluster_args, graylane_command, numbered, phase, wait_for
from helpers import TerminalStderr

pytestmark = pytest.mark.e2e

COUNT = 12
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR) ")


def controller_argv(kube_env, namespace: str) -> list[str]:
    return [*graylane_command(), "controller", *cluster_args(kube_env), "-n", namespace, "--lease-namespace", namespace,
            "--lease-duration", "3", "--resync", "60"]


def all_progressing(kube, namespace: str, names: list[str]) -> bool:
    return all(phase(kube, namespace, name) == "Progressing" for name in names)


def test_initial_sync_shows_progress_on_a_terminal(kube, kube_env, kube_namespace):
    names = numbered(kube, kube_namespace, COUNT)
    terminal = TerminalStderr()
    process = subprocess.Popen(controller_argv(kube_env, kube_namespace), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=terminal.follower)
    terminal.started()
    try:
        wait_for(lambda: all_progressing(kube, kube_namespace, names), 60, what="every TrafficRouting reconciled")
        wait_for(lambda: f"syncing TrafficRoutings: {COUNT}/{COUNT}" in terminal.so_far(), 10,
                 what="the progress line to show the sync done")
    finally:
        process.terminate()
        assert process.wait(30) == 0
    text = terminal.text()
    assert f"syncing TrafficRoutings: 0/{COUNT}" in text
    assert f"syncing TrafficRoutings: {COUNT}/{COUNT}" in text
    after = text.rsplit(f"syncing TrafficRoutings: {COUNT}/{COUNT}", 1)[1]
    assert re.match(r" *\r +\r", after), after  # cleared once the sync is done
    # The log lines written meanwhile stay whole: each starts on a cleared line, never glued to the progress.
    lines = [line.removesuffix("\r").rsplit("\r", 1)[-1] for line in text.split("\n") if line.strip("\r ")]
    assert lines and all(LOG_LINE.match(line) for line in lines), lines
    assert any("reconciling TrafficRoutings in namespace" in line for line in lines)
    assert "stopped" in lines[-1]


def test_initial_sync_is_quiet_in_a_log_file(kube, kube_env, kube_namespace, tmp_path):
    names = numbered(kube, kube_namespace, COUNT)
    log = tmp_path / "controller.log"
    with log.open("w") as handle:
        process = subprocess.Popen(controller_argv(kube_env, kube_namespace), stdin=subprocess.DEVNULL,
                                   stdout=handle, stderr=handle)
        try:
            wait_for(lambda: all_progressing(kube, kube_namespace, names), 60, what="every TrafficRouting reconciled")
        finally:
            process.terminate()
            assert process.wait(30) == 0
    text = log.read_text()
    assert "syncing" not in text and "\r" not in text
    assert all(LOG_LINE.match(line) for line in text.splitlines()), text
