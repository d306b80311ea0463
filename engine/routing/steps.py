"""Every step of every Rollout at once, for ``render --all-steps --output-dir`` (GitOps: commit each step's
objects, or review them in a pull request).

Step N holds each routing's objects as they are at its step N; a Rollout with fewer steps stays at its last
step (as it is once finished), and a TrafficRouting, which has no steps, is the same in every step.
"""
from __future__ import annotations

from pathlib import PurePosixPath
from typing import Callable, Optional

from engine.documents import Document, dump_yaml
from engine.routing.render import Engine, OutputCheck, Rendered, render
from engine.routing.strategy import NO_ROUTING, is_routing_document, step_count
from engine.errors import InvalidInputError


def render_all_steps(documents: list[Document], engine: Engine, check: Optional[OutputCheck] = None,
                     progress: Optional[Callable[[str], None]] = None) -> list[list[Rendered]]:
    """``result[N-1]``: every rendered object at step N; ``progress`` is told each step rendered (for people)."""
    routings = [d for d in documents if is_routing_document(d)]
    others = [d for d in documents if not is_routing_document(d)]
    if not routings:
        raise InvalidInputError(NO_ROUTING)
    counts = [step_count(r) for r in routings]
    total = max([*counts, 1])
    steps: list[list[Rendered]] = [[] for _ in range(total)]
    for routing, count in zip(routings, counts):
        for number in range(1, total + 1):
            chosen = min(number, count) if count else None
            steps[number - 1].extend(render([routing, *others], engine, chosen, check))
            if progress:
                progress(f"{routing.describe()} step {number}/{total}")
    return steps


def object_file_name(body: dict) -> str:
    """``<Kind>.<namespace>.<name>.yaml`` (no namespace part when the object names none)."""
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    parts = [str(body.get("kind", "")), str(metadata.get("namespace") or ""), str(metadata.get("name", ""))]
    return ".".join(p for p in parts if p) + ".yaml"


def step_files(steps: list[list[Rendered]]) -> dict[str, str]:
    """Relative path -> YAML text: ``step-<N>/<Kind>.<namespace>.<name>.yaml``, N zero-padded so folders sort."""
    width = len(str(len(steps)))
    files: dict[str, str] = {}
    for number, rendered in enumerate(steps, start=1):
        folder = PurePosixPath(f"step-{number:0{width}d}")
        for item in rendered:
            path = str(folder / object_file_name(item.body))
            if path in files:
                raise InvalidInputError(f"two routings render {object_file_name(item.body)[:-5]} at step {number}")
            files[path] = dump_yaml([item.body])
    return dict(sorted(files.items()))
