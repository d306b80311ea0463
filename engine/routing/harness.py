"""``graylane test``: runs every script's ``testdata/*.yaml`` cases (Kruise's case format).

A case holds ``trafficRouting:`` (v1alpha1) or ``rollout:`` (with steps), ``original:`` (the network
object) and ``expected:`` (one object per step). Services, weights and matches come from the same
strategy code that ``render`` uses, and the script input from the same builder.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import yaml

from engine.documents import Document, dump_yaml, load_yaml_text
from engine.errors import GraylaneError
from engine.routing.render import network_result
from engine.lua.sandbox import LuaSandbox, Script
from engine.routing.script_input import OriginalState, build_script_input, original_of
from engine.lua.scripts import SCRIPT_FILE, read_script
from engine.routing.strategy import plan, rollout_steps

CASE_SUFFIXES = (".yaml", ".yml")


@dataclass
class ScriptCases:
    script: Path
    cases: list[Path]


@dataclass
class CaseResult:
    case: Path
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def discover(root: Union[str, Path]) -> list[ScriptCases]:
    """Every trafficRouting.lua below ``root`` with the case files in the testdata/ beside it."""
    root = Path(root)
    scripts = sorted(p for p in root.rglob(SCRIPT_FILE) if p.is_file()) if root.is_dir() else \
        ([root] if root.name == SCRIPT_FILE and root.is_file() else [])
    found = []
    for script in scripts:
        testdata = script.parent / "testdata"
        cases = sorted(p for p in testdata.iterdir() if p.suffix in CASE_SUFFIXES and p.is_file()) \
            if testdata.is_dir() else []
        found.append(ScriptCases(script, cases))
    return found


def _expected_state(expected: dict) -> OriginalState:
    metadata = expected.get("metadata") or {}
    return OriginalState(expected.get("spec"), dict(metadata.get("labels") or {}),
                         dict(metadata.get("annotations") or {}))


def _text(state: OriginalState) -> str:
    return dump_yaml([{"spec": state.spec, "labels": state.labels, "annotations": state.annotations}])


def run_case(sandbox: LuaSandbox, script: Script, case_path: Path) -> CaseResult:
    result = CaseResult(case_path)
    try:
        case = load_yaml_text(case_path.read_text(encoding="utf-8"), str(case_path))
        if not isinstance(case, dict):
            raise GraylaneError(f"{case_path}: a case must be a map with trafficRouting or rollout, "
                                "original and expected")
        routing_body = case.get("trafficRouting") or case.get("rollout")
        if not isinstance(routing_body, dict):
            raise GraylaneError(f"{case_path}: needs trafficRouting: or rollout:")
        if not isinstance(case.get("original"), dict):
            raise GraylaneError(f"{case_path}: original: must be the network object")
        expected = case.get("expected")
        if not isinstance(expected, list) or not all(isinstance(e, dict) for e in expected):
            raise GraylaneError(f"{case_path}: expected: must be a list of objects")
        routing = Document(routing_body, str(case_path), 1)
        steps = [None] if "trafficRouting" in case else list(range(1, len(rollout_steps(routing)) + 1))
        if len(expected) != len(steps):
            raise GraylaneError(f"{case_path}: expected has {len(expected)} object(s) for {len(steps)} step(s)")
        original, _ = original_of(case["original"])
        for step, want in zip(steps, expected):
            routing_plan = plan(routing, step)
            target = routing_plan.targets[0]
            obj = build_script_input(original, routing_plan.strategy, target.stable_service, target.canary_service)
            got = network_result(script, sandbox.run(script, obj).value)
            got_text, want_text = _text(got), _text(_expected_state(want))
            if got_text != want_text:
                label = f"step {step}" if step else "trafficRouting"
                diff = difflib.unified_diff(want_text.splitlines(), got_text.splitlines(),
                                            f"expected ({label})", f"got ({label})", lineterm="")
                result.failures.append("\n".join(diff))
    except (GraylaneError, ValueError, yaml.YAMLError) as exc:
        result.failures.append(str(exc))
    return result


@dataclass
class HarnessReport:
    results: list[CaseResult]
    scripts_without_cases: list[Path]

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed + len(self.scripts_without_cases)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and bool(self.results)


def run_tree(sandbox: LuaSandbox, root: Union[str, Path], origin_root: Optional[str] = None) -> HarnessReport:
    results: list[CaseResult] = []
    missing: list[Path] = []
    for entry in discover(root):
        script = Script(str(entry.script.parent.relative_to(root)) if Path(root).is_dir() else entry.script.name,
                        read_script(entry.script, str(entry.script)),
                        str(entry.script) if origin_root is None else f"{origin_root}{entry.script.relative_to(root)}")
        if not entry.cases:
            missing.append(entry.script)
        for case in entry.cases:
            results.append(run_case(sandbox, script, case))
    return HarnessReport(results, missing)
