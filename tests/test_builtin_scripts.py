"""Every built-in trafficRouting.lua against the testdata/ cases beside it (the same harness as `graylane test`)."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.routing.harness import discover, run_case
from engine.lua.sandbox import LuaSandbox, Script
from engine.lua.scripts import builtin_root

ROOT = Path(str(builtin_root()))
SCRIPTS = discover(ROOT)
CASES = [(entry.script, case) for entry in SCRIPTS for case in entry.cases]
SANDBOX = LuaSandbox()


def test_builtin_tree_has_scripts():
    keys = {str(entry.script.parent.relative_to(ROOT)) for entry in SCRIPTS}
    assert {"networking.istio.io/VirtualService", "networking.istio.io/DestinationRule"} <= keys


@pytest.mark.parametrize("entry", SCRIPTS, ids=lambda e: str(e.script.parent.relative_to(ROOT)))
def test_every_script_has_cases(entry):
    assert entry.cases, f"{entry.script} has no testdata/*.yaml cases"


@pytest.mark.parametrize("script_path,case", CASES, ids=lambda v: v.name if v.name != "trafficRouting.lua" else "")
def test_case(script_path: Path, case: Path):
    script = Script(str(script_path.parent.relative_to(ROOT)), script_path.read_text(), str(script_path))
    result = run_case(SANDBOX, script, case)
    assert result.passed, "\n".join(result.failures)
