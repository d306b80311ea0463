"""``graylane test``: runs every script's ``testdata/*.yaml`` cases (Kruise's case format).

A case holds ``trafficRouting:`` (v1alpha1) or ``rollout:`` (with steps; an Argo Rollout too, its steps
folded as Argo's render folds them), ``original:`` (the network
object) and ``expected:`` (one object per step). Services, weights and matches come from the same
strategy code that ``render`` uses, and the script input from the same builder.

Results are compared as Kruise compares them, on decoded values: maps without regard to key order, lists in
order, numbers by value (``20`` equals ``20.0``, but ``true`` is not ``1``). A failing case prints a unified
diff of both sides with map keys sorted, so only real differences show.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from engine.documents import Document, dump_yaml, load_yaml_text
from engine.errors import GraylaneError, ScriptError
from engine.lua.coverage import executable_lines
from engine.routing.argo.render import StepScriptError, fold_steps, pod_hashes
from engine.routing.argo.rollout import ArgoStep, is_argo_rollout, read_rollout
from engine.routing.render import network_result
from engine.lua.sandbox import LuaSandbox, Script
from engine.routing.script_input import OriginalState, build_script_input, original_of
from engine.lua.scripts import SCRIPT_FILE, read_script
from engine.routing.scriptkit.coverage import ScriptCoverage
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
    original: Optional[dict] = None  # the case's network object
    outputs: list[OriginalState] = field(default_factory=list)  # what the script returned, step by step
    updatable: bool = False  # it ran and only its expected: differs, so --update can record the outputs

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


def same_value(left: Any, right: Any) -> bool:
    """Semantic equality of decoded YAML/JSON: maps unordered, lists ordered, numbers by value, and a
    bool equal only to a bool (Python's ``True == 1`` is not JSON's)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same_value(left[key], right[key]) for key in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(same_value(a, b) for a, b in zip(left, right))
    return type(left) is type(right) and left == right


def canonical(value: Any) -> Any:
    """``value`` with map keys sorted and whole floats as integers: the form both sides of a diff take."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def value_diff(expected: Any, got: Any, expected_label: str = "expected", got_label: str = "got") -> str:
    """A unified diff of two decoded values in canonical YAML; empty when they are the same value."""
    if same_value(expected, got):
        return ""
    want_text, got_text = dump_yaml([canonical(expected)]), dump_yaml([canonical(got)])
    if want_text == got_text:  # same text, different types (e.g. 1 and true, "1" and 1): show the types
        want_text, got_text = repr(canonical(expected)) + "\n", repr(canonical(got)) + "\n"
    return "\n".join(difflib.unified_diff(want_text.splitlines(), got_text.splitlines(), expected_label,
                                          got_label, lineterm=""))


def _comparable(state: OriginalState) -> dict:
    return {"spec": state.spec, "labels": state.labels, "annotations": state.annotations}


def run_case(sandbox: LuaSandbox, script: Script, case_path: Path, lines: Optional[set[int]] = None) -> CaseResult:
    """Run one case file; ``lines`` collects the script lines it executed (coverage)."""
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
        expected = case.get("expected") or []
        if not isinstance(expected, list) or not all(isinstance(e, dict) for e in expected):
            raise GraylaneError(f"{case_path}: expected: must be a list of objects")
        routing = Document(routing_body, str(case_path), 1)
        if is_argo_rollout(routing):
            _run_argo_case(result, sandbox, script, case, routing, expected, lines)
            return result
        steps = [None] if "trafficRouting" in case else list(range(1, len(rollout_steps(routing)) + 1))
        original, _ = original_of(case["original"])
        if "expectedError" in case:
            _expect_errors(result, sandbox, script, routing, steps, original, case["expectedError"], lines)
            return result
        result.original = case["original"]
        for step in steps:
            result.outputs.append(_run_step(sandbox, script, routing, step, original, lines))
        result.updatable = True
        _compare(result, [f"step {step}" if step else "trafficRouting" for step in steps], expected)
    except (GraylaneError, ValueError, yaml.YAMLError) as exc:
        result.failures.append("\n".join([str(exc), *exc.details()]) if isinstance(exc, GraylaneError) else str(exc))
    return result


def _run_argo_case(result: CaseResult, sandbox: LuaSandbox, script: Script, case: dict, routing: Document,
                   expected: list, lines: Optional[set[int]]) -> None:
    """An Argo Rollout case: every step folded through the script as ``render`` folds it (the same
    :func:`fold_steps`), the object being the case's ``original:`` (a VirtualService, or the DestinationRule).
    A VirtualService case of a subset-level Rollout may give ``destinationRule:`` (the object), whose host is
    where header and mirror routes send requests."""
    rollout = read_rollout(routing)
    original, _ = original_of(case["original"])
    name = ((case["original"].get("metadata") or {}).get("name"))
    entry, dr_host = None, None
    if case["original"].get("kind") == "DestinationRule":
        dr_host = str(original.spec.get("host") or "") if isinstance(original.spec, dict) else ""
    else:
        found = [vs for vs in rollout.virtual_services if vs.name == name] or rollout.virtual_services[:1]
        entry = found[0].entry
        dr = case.get("destinationRule")
        if isinstance(dr, dict) and isinstance(dr.get("spec"), dict):
            dr_host = str(dr["spec"].get("host") or "")
    hashes = pod_hashes(rollout, [], {})

    def run(obj: dict) -> OriginalState:
        return network_result(script, sandbox.run(script, obj, lines=lines).value)

    def label(step: ArgoStep) -> str:
        return f"step {step.number} ({step.description})"

    if "expectedError" in case:
        wanted = case["expectedError"]
        if not isinstance(wanted, str) or not wanted:
            raise GraylaneError(f"{result.case}: expectedError: must be the text the script error contains")
        try:
            for _ in fold_steps(rollout, original, rollout.steps, hashes, entry, dr_host, run):
                pass
        except StepScriptError as failed:
            if wanted not in str(failed.error):
                result.failures.append(f"{label(failed.step)}: expected an error containing {wanted!r}, "
                                       f"got: {failed.error}")
            return
        result.failures.append(f"expected an error containing {wanted!r}, but every step succeeded")
        return
    result.original = case["original"]
    try:
        folded = list(fold_steps(rollout, original, rollout.steps, hashes, entry, dr_host, run))
    except StepScriptError as failed:
        raise failed.error.about(f"{routing.source}, {label(failed.step)}") from None
    result.outputs = [state for _, state in folded]
    result.updatable = True
    _compare(result, [label(step) for step, _ in folded], expected)


def _compare(result: CaseResult, labels: list[str], expected: list) -> None:
    if not expected:
        raise GraylaneError(f"{result.case}: no expected: objects yet; graylane test --update records them")
    if len(expected) != len(labels):
        raise GraylaneError(f"{result.case}: expected has {len(expected)} object(s) for {len(labels)} step(s)")
    for label, want, got in zip(labels, expected, result.outputs):
        diff = value_diff(_comparable(_expected_state(want)), _comparable(got), f"expected ({label})",
                          f"got ({label})")
        if diff:
            result.failures.append(diff)


def _run_step(sandbox: LuaSandbox, script: Script, routing: Document, step: Optional[int],
              original: OriginalState, lines: Optional[set[int]]) -> OriginalState:
    routing_plan = plan(routing, step)
    target = routing_plan.targets[0]
    obj = build_script_input(original, routing_plan.strategy, target.stable_service, target.canary_service)
    try:
        return network_result(script, sandbox.run(script, obj, lines=lines).value)
    except ScriptError as error:
        raise error.about(f"{routing.source}, " + (f"step {step}" if step else "the trafficRouting"))


def _expect_errors(result: CaseResult, sandbox: LuaSandbox, script: Script, routing: Document,
                   steps: list[Optional[int]], original: OriginalState, wanted: object,
                   lines: Optional[set[int]]) -> None:
    """A graylane extension of Kruise's format: ``expectedError: TEXT`` (instead of ``expected:``) says that
    every step fails with a script error containing TEXT."""
    if not isinstance(wanted, str) or not wanted:
        raise GraylaneError(f"{result.case}: expectedError: must be the text the script error contains")
    for step in steps:
        label = f"step {step}" if step else "trafficRouting"
        try:
            _run_step(sandbox, script, routing, step, original, lines)
        except ScriptError as exc:
            if wanted not in str(exc):
                result.failures.append(f"{label}: expected an error containing {wanted!r}, got: {exc}")
            continue
        result.failures.append(f"{label}: expected an error containing {wanted!r}, but the script succeeded")


@dataclass
class HarnessReport:
    results: list[CaseResult]
    scripts_without_cases: list[Path]
    coverage: list[ScriptCoverage] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed + len(self.scripts_without_cases)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and bool(self.results)


def run_tree(sandbox: LuaSandbox, root: Union[str, Path], origin_root: Optional[str] = None,
             pattern: Optional[re.Pattern] = None, coverage: bool = False) -> HarnessReport:
    """Run the cases below ``root``: those whose path (relative to root) ``pattern`` finds, or all; with
    ``coverage``, also measure which lines of each script they executed."""
    results: list[CaseResult] = []
    missing: list[Path] = []
    coverages: list[ScriptCoverage] = []
    for entry in discover(root):
        source = read_script(entry.script, str(entry.script))
        script = Script(str(entry.script.parent.relative_to(root)) if Path(root).is_dir() else entry.script.name,
                        source,
                        str(entry.script) if origin_root is None else f"{origin_root}{entry.script.relative_to(root)}")
        cases = [case for case in entry.cases
                 if pattern is None or pattern.search(str(case.relative_to(root) if Path(root).is_dir() else case))]
        if not entry.cases and pattern is None:
            missing.append(entry.script)
        lines: Optional[set[int]] = set() if coverage else None
        for case in cases:
            results.append(run_case(sandbox, script, case, lines))
        if lines is not None and cases:
            try:
                executable = executable_lines(source, script.origin)
            except ScriptError:  # a syntax error: every case already fails with it
                continue
            coverages.append(ScriptCoverage(script.origin, source, frozenset(executable), frozenset(lines)))
    return HarnessReport(results, missing, coverages)
