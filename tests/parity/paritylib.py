"""What the parity tests do on graylane's side: render one generated case, summarise its routing."""
from __future__ import annotations

import copy
from typing import Optional

from engine.documents import Document
from engine.errors import GraylaneError
from engine.routing.render import Engine, render
from engine.routing.strategy import plan
from kruise_cases import Case


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
