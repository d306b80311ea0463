"""``kubectl graylane ...``: installing graylane provides the ``kubectl-graylane`` command, and a real kubectl
finds it through its plugin discovery (PATH) and runs it.

The kubectl is the one on PATH (CI installs Debian's ``kubernetes-client`` from .ci/run when there is none).
Without one the tests fail under GRAYLANE_REQUIRE_E2E=1 (CI) and are skipped with the reason elsewhere.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from helpers import REPO, graylane_command, installed_program, run_graylane


def kubectl() -> str:
    return installed_program("kubectl", package="kubernetes-client")


def plugin_dir() -> Path:
    """Where pip put ``kubectl-graylane``: beside the ``graylane`` the tests run."""
    graylane = Path(graylane_command()[0])
    plugin = graylane.parent / "kubectl-graylane"
    assert plugin.exists(), f"{plugin} is missing: pyproject.toml's [project.scripts] must install kubectl-graylane"
    return plugin.parent


def run_kubectl(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "GRAYLANE_LUA_PATH"}
    # Only the plugin's directory, kubectl's and the system's: other copies of kubectl-graylane on a developer's
    # PATH (a pyenv shim, say) would make `kubectl plugin list` report them as overshadowed and fail.
    env["PATH"] = os.pathsep.join(dict.fromkeys([str(plugin_dir()), str(Path(kubectl()).parent), "/usr/bin", "/bin"]))
    env["KUBECONFIG"] = os.devnull  # the plugin needs no cluster; kubectl must not read a user's config
    return subprocess.run([kubectl(), *args], input=input, capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=120)


def test_kubectl_discovers_the_plugin() -> None:
    listed = run_kubectl("plugin", "list")
    assert listed.returncode == 0, listed.stderr
    assert str(plugin_dir() / "kubectl-graylane") in listed.stdout


def test_kubectl_graylane_renders_like_graylane() -> None:
    through_kubectl = run_kubectl("graylane", "render", "-f", "samples/fulllink")
    direct = run_graylane("render", "-f", "samples/fulllink")
    assert through_kubectl.returncode == 0, through_kubectl.stderr
    assert through_kubectl.stdout == direct.stdout
    assert "kind: VirtualService" in through_kubectl.stdout


def test_kubectl_graylane_names_itself_and_passes_exit_statuses() -> None:
    helped = run_kubectl("graylane", "--help")
    assert helped.returncode == 0
    assert helped.stdout.startswith("usage: kubectl graylane")
    mistaken = run_kubectl("graylane", "rendr")
    assert mistaken.returncode == 2
    assert "error: kubectl graylane: unknown command 'rendr'; did you mean render?" in mistaken.stderr
    assert mistaken.stdout == ""
    failed = run_kubectl("graylane", "render", "-f", "no-such-file.yaml")
    assert failed.returncode == 1
    assert "error: no-such-file.yaml: no such file or directory" in failed.stderr
