"""Parity with Argo Rollouts' own Istio reconciler (github.com/argoproj/argo-rollouts, tests/peers/argo).

Hundreds of generated Rollouts with their VirtualServices (and DestinationRule) are rendered step by step by
graylane and by Argo's code (SetHeaderRoute, SetMirrorRoute, UpdateHash, SetWeight on a fake dynamic client,
as the rollout controller calls them at each step). The objects must be equal (maps unordered, numbers by
value) after every step, and both must fail at the same step when Argo refuses the input. The one exception is
a documented fix, recognised by name: where Argo leaves an object Istio would not accept as meant (a rule whose
weights do not sum to 100, or the same destination twice), graylane's object is valid; those are reported as
findings about Argo.
"""
from __future__ import annotations

import collections
import copy
import json
import subprocess
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml

from argo_cases import generate
from peerlib import peer_binary

from engine.documents import Document
from engine.errors import GraylaneError
from engine.lua.scripts import ScriptLibrary, builtin_layer
from engine.routing.render import Engine, render
from engine.routing.script_input import ORIGINAL_ANNOTATION

pytestmark = pytest.mark.parity

SEEDS = (16, 1600, 2026)
CASES_PER_SEED = 120
FIX_DROPPED_DESTINATION = "argo-drop-shifts-destinations"


def run_peer(cases: list[dict]) -> dict[str, dict]:
    binary = peer_binary("argo")
    result = subprocess.run([str(binary)], input=json.dumps({"cases": cases}), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    return {item["id"]: item for item in json.loads(result.stdout)["results"]}


def normalize(value: Any) -> Any:
    """Numbers by value (Argo writes float64 weights), maps unordered (dicts compare so already)."""
    if isinstance(value, dict):
        return {key: normalize(item) for key, item in value.items()}
    if isinstance(value, list):
        return [normalize(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def comparable(body: dict) -> dict:
    metadata = body.get("metadata") or {}
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if k != ORIGINAL_ANNOTATION}
    return normalize({"kind": body.get("kind"), "name": metadata.get("name"), "namespace": metadata.get("namespace"),
                      "labels": metadata.get("labels") or {}, "annotations": annotations, "spec": body.get("spec")})


def graylane_steps(case: dict) -> tuple[list[dict[tuple, dict]], Optional[int], str]:
    """graylane's objects after each step (keyed by kind/namespace/name), and the step it fails at."""
    documents = [Document(copy.deepcopy(case["rollout"]), "rollout.yaml", 1)]
    documents += [Document(copy.deepcopy(o), "istio.yaml", i) for i, o in enumerate(case["objects"], start=1)]
    engine = Engine(ScriptLibrary([builtin_layer()]), argo_hashes={"canary": case["canaryHash"], "stable": case["stableHash"]})
    steps = []
    for step in range(1, len(case["rollout"]["spec"]["strategy"]["canary"]["steps"]) + 1):
        try:
            rendered = render(documents, engine, step)
        except GraylaneError as exc:
            return steps, step, str(exc)
        steps.append({key(item.body): comparable(item.body) for item in rendered})
    return steps, None, ""


def key(body: dict) -> tuple:
    metadata = body.get("metadata") or {}
    return body.get("kind"), metadata.get("namespace"), metadata.get("name")


def invalid_rules(objects: dict[tuple, dict]) -> list[str]:
    """Rules Istio would not take as meant: weights summing to other than 100, a destination twice."""
    problems = []
    for (kind, namespace, name), body in objects.items():
        if kind != "VirtualService":
            continue
        for protocol in ("http", "tcp", "tls"):
            for index, rule in enumerate((body["spec"] or {}).get(protocol) or []):
                route = rule.get("route") or []
                weights = [entry.get("weight", 0) for entry in route]
                seen = [json.dumps(entry.get("destination"), sort_keys=True) for entry in route]
                if len(route) > 1 and sum(weights) != 100:
                    problems.append(f"{name}.{namespace} {protocol}[{index}]: weights {weights} sum to {sum(weights)}")
                if len(set(seen)) != len(seen):
                    problems.append(f"{name}.{namespace} {protocol}[{index}]: a destination appears twice")
    return problems


def _shown(objects: dict[tuple, dict]) -> str:
    return json.dumps({"/".join(str(part) for part in k): v for k, v in objects.items()}, sort_keys=True)


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    generated = [case for seed in SEEDS for case in generate(seed, CASES_PER_SEED)]
    assert len(generated) >= 300
    return generated


@pytest.fixture(scope="module")
def argo_results(cases: list[dict]) -> dict[str, dict]:
    return run_peer(cases)


def test_graylane_renders_every_step_as_argo(cases: list[dict], argo_results: dict[str, dict]) -> None:
    mismatches, fixes, findings = [], collections.Counter(), []
    compared_steps = errors_matched = 0
    for case in cases:
        argo = argo_results[case["id"]]
        ours, our_error_step, our_error = graylane_steps(case)
        argo_steps = [{key(o): comparable(o) for o in step["objects"]} for step in argo["steps"]]
        diverged = broken = False
        for number, (theirs, mine) in enumerate(zip(argo_steps, ours), start=1):
            # Argo's snapshot holds every VirtualService/DestinationRule; graylane prints the ones it routes
            theirs = {k: v for k, v in theirs.items() if k in mine}
            problems = invalid_rules(theirs)
            if problems:
                findings.append(f"{case['id']} step {number}: " + "; ".join(problems))
            if theirs == mine:
                diverged = False  # Argo's next reconcile repaired what it had broken
            else:
                if problems and not invalid_rules(mine):
                    fixes[FIX_DROPPED_DESTINATION] += 0 if diverged else 1
                    diverged = True
                    continue
                mismatches.append(f"{case['id']} step {number}: graylane differs from Argo\n"
                                  f"  argo:     {_shown(theirs)}\n  graylane: {_shown(mine)}")
                broken = True
                break
            compared_steps += 1
        if broken or diverged:
            continue
        if argo.get("error"):
            if our_error_step != argo["errorStep"]:
                mismatches.append(f"{case['id']}: Argo fails at step {argo['errorStep']} ({argo['error']}), "
                                  f"graylane at {our_error_step} ({our_error})")
            else:
                errors_matched += 1
        elif our_error_step is not None:
            mismatches.append(f"{case['id']}: graylane fails at step {our_error_step} ({our_error}); Argo does not")
    print(f"\nArgo parity: {len(cases)} cases, {compared_steps} steps equal, {errors_matched} refusals at the same "
          f"step, cases where a documented fix applies: {dict(fixes) or 'none'}")
    print(f"Argo's own invalid outputs (findings): {len(findings)}")
    for line in findings[:20]:
        print("  " + line)
    assert not mismatches, f"{len(mismatches)} case(s) differ:\n" + "\n".join(mismatches[:5])


ARGO_PANICS = {"argo_mirror_without_weight_route_fails.yaml": "index out of range"}  # graylane refuses, Argo panics


def test_builtin_argo_testdata_cases_are_what_argo_does() -> None:
    """The built-in scripts' Argo testdata cases (``graylane test``) expect what Argo's own code does: each case's
    objects go through the peer step by step and must equal ``expected:``, or Argo must fail at the first step
    where ``expectedError:`` is expected (the one case where Argo panics instead is named in ARGO_PANICS)."""
    from engine.lua.scripts import builtin_root

    root = Path(str(builtin_root())) / "networking.istio.io"
    paths = sorted(root.glob("*/testdata/argo_*.yaml"))
    assert len(paths) >= 9
    peer_cases, cases = [], {}
    for path in paths:
        case = yaml.safe_load(path.read_text(encoding="utf-8"))
        rollout = copy.deepcopy(case["rollout"])
        rollout["metadata"]["namespace"] = "default"
        objects = [copy.deepcopy(o) for o in (case["original"], case.get("destinationRule")) if o is not None]
        if case["original"]["kind"] == "DestinationRule":  # Argo reconciles the VirtualService first: a plain one
            istio = rollout["spec"]["strategy"]["canary"]["trafficRouting"]["istio"]
            objects.insert(0, {"apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
                               "metadata": {"name": istio["virtualService"]["name"]},
                               "spec": {"hosts": ["x"], "http": [{"name": name, "route": [
                                   {"destination": {"host": "x", "subset": istio["destinationRule"][subset]}}
                                   for subset in ("stableSubsetName", "canarySubsetName")]}
                                   for name in istio["virtualService"].get("routes") or ["primary"]]}})
        for o in objects:
            o["metadata"]["namespace"] = "default"
        status = rollout.get("status") or {}
        peer_cases.append({"id": path.name, "rollout": rollout, "objects": objects,
                           "canaryHash": status.get("currentPodHash", ""), "stableHash": status.get("stableRS", "")})
        cases[path.name] = case
    problems = []
    for name, argo in run_peer(peer_cases).items():
        case = cases[name]
        if "expectedError" in case:
            wanted = ARGO_PANICS.get(name, case["expectedError"])
            if argo.get("errorStep") != 1 or wanted not in argo.get("error", ""):
                problems.append(f"{name}: Argo: {argo.get('error')!r} at step {argo.get('errorStep')}")
            continue
        original = case["original"]
        if argo.get("error") or len(argo["steps"]) != len(case["expected"]):
            problems.append(f"{name}: Argo ran {len(argo['steps'])} step(s), error {argo.get('error')!r}")
            continue
        for step, want in zip(argo["steps"], case["expected"]):
            got = next(o for o in step["objects"] if o["kind"] == original["kind"]
                       and o["metadata"]["name"] == original["metadata"]["name"])
            want = {**want, "metadata": {**want["metadata"], "namespace": "default"}}
            if comparable(got) != comparable(want):
                problems.append(f"{name} step {step['step']}: Argo {_shown({key(got): comparable(got)})}, "
                                f"expected {_shown({key(want): comparable(want)})}")
    assert not problems, "\n".join(problems)
