"""Fixtures of the Kruise parity suite: the generated cases, Kruise's results for them (one peer process)
and graylane's rendering of the same inputs."""
from __future__ import annotations

import pytest

from engine.lua.scripts import ScriptLibrary, builtin_layer, directory_layer
from engine.routing.render import Engine
from kruise_cases import Case, generate
from kruisepeer import kruise_source, peer_case, run_peer
from peerlib import peer_binary

CASE_COUNT = 600


@pytest.fixture(scope="session")
def kruise_cases() -> list[Case]:
    return generate(CASE_COUNT)


@pytest.fixture(scope="session")
def kruise_results(kruise_cases: list[Case]) -> dict[str, dict]:
    """Kruise's EnsureRoutes on every case, in one peer process."""
    binary = peer_binary("kruise")
    return run_peer(binary, [peer_case(c.id, c.routing, c.object, c.step) for c in kruise_cases])


@pytest.fixture(scope="session")
def kruise_scripts_engine() -> Engine:
    """graylane's host and runtime with Kruise's own shipped scripts."""
    return Engine(ScriptLibrary([directory_layer(str(kruise_source() / "lua_configuration"))]))


@pytest.fixture(scope="session")
def builtin_engine() -> Engine:
    return Engine(ScriptLibrary([builtin_layer()]))
