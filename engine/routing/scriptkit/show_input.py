"""``graylane script input`` / ``render --show-input``: the exact ``obj`` each script would receive.

The inputs are recorded while ``render`` walks the TrafficRoutings and Rollouts as it always does (same
reference resolution, same stored-original handling, same builder of ``obj``), with the scripts not run, so
what is shown is what a script gets, and it works before the script exists.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Optional

from engine.documents import Document
from engine.errors import ScriptNotFoundError
from engine.lua.sandbox import LuaSandbox
from engine.lua.scripts import ScriptLibrary, ingress_key
from engine.routing.render import Engine, render
from engine.routing.script_input import OriginalState, build_ingress_input, build_script_input
from engine.routing.strategy import TrafficStrategy


@dataclass
class _Recorded:
    key: str
    obj: dict
    returned: object = None  # what the recorder handed back (to recognise a chained ingress call)


class InputRecorder(Engine):
    """An Engine that records each script's input and hands the object back unchanged instead of running."""

    __slots__ = ("recorded",)

    def __init__(self, library: ScriptLibrary, sandbox: Optional[LuaSandbox] = None,
                 printer: Optional[Callable[[str], None]] = None, argo_hashes: Optional[dict] = None):
        super().__init__(library, sandbox, printer, argo_hashes)
        self.recorded: list[_Recorded] = []

    def run_network_script(self, key: str, original: OriginalState, strategy: TrafficStrategy,
                           stable_service: str, canary_service: str,
                           meanwhile: Optional[Callable[[], None]] = None,
                           namespace: Optional[str] = None) -> OriginalState:
        self.recorded.append(_Recorded(key, build_script_input(original, strategy, stable_service,
                                                               canary_service, namespace)))
        return copy.deepcopy(original)  # render puts it in its output; the recorded input keeps its own

    def run_ingress_script(self, class_type: str, annotations: dict, strategy: TrafficStrategy,
                           canary_service: str) -> dict:
        record = _Recorded(ingress_key(class_type), build_ingress_input(annotations, strategy, canary_service),
                           annotations)
        if self.recorded and self.recorded[-1].returned is annotations:
            # A new canary Ingress is annotated twice, as Kruise does (at weight 0 when created, then at the
            # step's weight, from the first call's result): the step's input is the one to show.
            self.recorded[-1] = record
        else:
            self.recorded.append(record)
        return annotations


def script_inputs(documents: list[Document], library: ScriptLibrary, step: Optional[int] = None) -> list[dict]:
    """One entry per network object render would change: the object, the routing and step, which script would
    run (null when there is none yet) and ``obj``."""
    recorder = InputRecorder(library)
    rendered = render(documents, recorder, step)
    entries = []
    for item, recorded in zip(rendered, recorder.recorded):
        try:
            script: Optional[str] = library.find(recorded.key).origin
        except ScriptNotFoundError:
            script = None
        routing = item.plan.document
        entries.append({
            "object": _identity(item.source),
            "routing": {**_identity(routing), "step": item.plan.step} if item.plan.step else _identity(routing),
            "scriptKey": recorded.key,
            "script": script,
            "obj": recorded.obj,
        })
    return entries


def _identity(document: Document) -> dict:
    identity = {"apiVersion": document.api_version, "kind": document.kind, "name": document.name}
    if document.namespace:
        identity["namespace"] = document.namespace
    identity["source"] = f"{document.source}#{document.index}"
    return identity
