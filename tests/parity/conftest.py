"""Fixtures of the Kruise parity suite: the generated cases, Kruise's results for them (one peer process)
and graylane's rendering of the same inputs."""
from __future__ import annotations

import copy
from typing import Optional

import pytest

from engine.documents import Document
from engine.errors import GraylaneError
from engine.lua.scripts import ScriptLibrary, builtin_layer, directory_layer
from engine.routing.render import Engine, render
from engine.routing.strategy import plan
from kruise_cases import Case, generate
from kruisepeer import kruise_module_dir, peer_case, run_peer
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
    return Engine(ScriptLibrary([directory_layer(str(kruise_module_dir() / "lua_configuration"))]))


@pytest.fixture(scope="session")
def builtin_engine() -> Engine:
    return Engine(ScriptLibrary([builtin_layer()]))


def graylane_render(case: Case, engine: Engine) -> tuple[Optional[dict], Optional[str]]:
    """The rendered network object, or graylane's error message."""
    documents = [Document(copy.deepcopy(case.routing), "routing.yaml", 1),
                 Document(copy.deepcopy(case.object), "object.yaml", 1)]
    try:
        return render(documents, engine, case.step)[0].body, None
    except GraylaneError as exc:
        return None, str(exc)


def strategy_summary(case: Case) -> dict:
    """What the fix recognisers need to know of the case's routing."""
    routing_plan = plan(Document(case.routing, "routing.yaml", 1), case.step)
    target = routing_plan.targets[0]
    strategy = routing_plan.strategy
    return {"weight": strategy.weight, "matches": len(strategy.matches),
            "modifier": strategy.request_header_modifier, "stable": target.stable_service,
            "canary": target.canary_service}
