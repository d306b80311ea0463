"""Parity check 1: Kruise's own scripts, run by graylane (host, obj builder, Lua runtime, conversions), give
exactly what Kruise's own Go code gives on the same inputs; and Kruise's own test data passes."""
from __future__ import annotations

import json

import pytest

from paritylib import graylane_render
from engine.routing.harness import value_diff
from engine.routing.script_input import ORIGINAL_ANNOTATION
from helpers import run_graylane
from kruise_known_differences import CONVERSION_DIFFERENCES
from kruisepeer import kruise_source

pytestmark = pytest.mark.parity


def _kruise_view(body: dict) -> dict:
    """Spec, labels, annotations, and the stored original decoded (Kruise writes its keys sorted, graylane in
    the object's own order: a documented difference; the content must agree)."""
    metadata = body.get("metadata") or {}
    annotations = dict(metadata.get("annotations") or {})
    stored = annotations.pop(ORIGINAL_ANNOTATION, None)
    return {"spec": body.get("spec"), "labels": metadata.get("labels") or {}, "annotations": annotations,
            "original": json.loads(stored) if stored else None}


def test_kruise_test_data_passes_with_kruise_scripts():
    result = run_graylane("test", str(kruise_source() / "lua_configuration"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "5 passed, 0 failed"


def test_kruise_scripts_under_graylane_give_kruise_output(kruise_cases, kruise_results, kruise_scripts_engine):
    assert len(kruise_cases) >= 500
    failures = []
    for case in kruise_cases:
        kruise = kruise_results[case.id]
        got, error = graylane_render(case, kruise_scripts_engine)
        if kruise.get("error") or error:
            same = bool(kruise.get("error")) and bool(error)
            diff = "" if same else f"kruise error: {kruise.get('error')}\ngraylane error: {error}"
        else:
            want = kruise["object"] if kruise["routed"] else case.object
            diff = value_diff(_kruise_view(want), _kruise_view(got), f"kruise {case.id}", f"graylane {case.id}")
        if diff and case.id not in CONVERSION_DIFFERENCES:
            failures.append(f"{case.id} ({', '.join(sorted(case.tags))}):\n{diff}")
        if not diff and case.id in CONVERSION_DIFFERENCES:
            failures.append(f"{case.id} is listed in CONVERSION_DIFFERENCES but now agrees with Kruise: remove it")
    assert not failures, f"{len(failures)} case(s) differ from Kruise:\n\n" + "\n\n".join(failures[:8])
