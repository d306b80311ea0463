"""Istio's own code as the judge: nothing graylane emits is rejected, and graylane finds what Istio's analyzers find.

The oracle (tests/peers/istio) is built from istio.io/istio 1.31 and runs the admission webhook's validation and
the config analyzers with Services, Pods, Deployments and Namespaces loaded (istioctl analyze drops those from
files). Required in CI (GRAYLANE_REQUIRE_E2E=1): a build failure fails these tests, it never skips them.
"""
from __future__ import annotations

import copy
from typing import Optional
import json
from pathlib import Path

import pytest
import yaml

from istio_cases import BROKEN, GRAYLANE_ONLY, RESOLVED_HOST_FORMS
from routing_corpus import corpus
from helpers import SAMPLES, run_graylane
from istio_oracle import run_oracle

from engine import inputs
from engine.checks.validate import check_rendered
from engine.documents import Document
from engine.errors import GraylaneError
from engine.routing.render import Engine, render

pytestmark = pytest.mark.oracle

CONTEXT_KINDS = ("Service", "Deployment", "Pod", "Namespace", "Gateway")


def _sample_context(directory: Path) -> list[dict]:
    """The Services, workloads and Gateways of a sample, for the analyzers."""
    objects = []
    for path in sorted(directory.glob("*.yaml")):
        objects += [o for o in yaml.safe_load_all(path.read_text()) if o and o.get("kind") in CONTEXT_KINDS]
    return objects


def _items(stdout: str) -> list[dict]:
    data = json.loads(stdout)
    return data["items"] if data.get("kind") == "List" else [data]


def _graylane_json(*args: str) -> list[dict]:
    result = run_graylane(*args, "-o", "json")
    assert result.returncode == 0, result.stderr
    return _items(result.stdout)


def _rollout_steps(directory: Path) -> int:
    steps = 1
    for path in directory.glob("*.yaml"):
        for body in yaml.safe_load_all(path.read_text()):
            if body and body.get("kind") == "Rollout":
                steps = max(steps, len(body["spec"]["strategy"]["canary"].get("steps", [])))
    return steps


def _sample_outputs() -> dict[str, list[dict]]:
    """Everything graylane prints for the samples: render (every Rollout step), chain --render and color (with
    --force: samples/misconfigured would fail requests, which is what it shows, and Istio still accepts it)."""
    cases: dict[str, list[dict]] = {}
    for directory in sorted(p for p in SAMPLES.rglob("*") if p.is_dir() and any(p.glob("*.yaml"))):
        context = _sample_context(directory)
        for step in range(1, _rollout_steps(directory) + 1):
            cases[f"render {directory.relative_to(SAMPLES)} --step {step}"] = [
                *_graylane_json("render", "-f", str(directory), "--step", str(step), "--force"), *context]
        spec = directory / "fulllink.yaml"
        if spec.exists():
            cases[f"chain {directory.relative_to(SAMPLES)} --render"] = [
                *_graylane_json("chain", "-f", str(directory), "--render", "--force"), *context]
            cases[f"color {directory.relative_to(SAMPLES)}"] = [*_graylane_json("color", "-f", str(spec)), *context]
    return cases


def test_istio_accepts_everything_graylane_emits_for_the_samples():
    cases = _sample_outputs()
    results = run_oracle(cases)
    checked = {name: len(result.validation) for name, result in results.items()}
    assert all(checked.values()), f"every output must hold Istio objects: {checked}"
    rejected = {name: result.rejections() for name, result in results.items() if result.rejections()}
    assert rejected == {}


def _render_corpus() -> tuple[dict[str, list[dict]], dict[str, list[dict]], int]:
    """(accepted outputs by case and step, refused outputs by case, number of strategies) over the corpus.

    render runs in-process (the functions ``graylane render`` calls) so that one refused case does not hide the
    others; refused outputs are caught before check_rendered raises, to show Istio refuses them too.
    """
    engine = Engine(inputs.script_library([], None), inputs.sandbox(None, None), None)
    accepted: dict[str, list[dict]] = {}
    refused: dict[str, list[dict]] = {}
    strategies = 0
    for name, (objects, steps) in corpus().items():
        strategies += steps
        context = [o for o in objects if o["kind"] in CONTEXT_KINDS]
        for step in range(1, steps + 1):
            caught: list[dict] = []

            def check(document: Document, body: dict, state: Optional[list] = None) -> Optional[list]:
                try:  # Istio's verdict is on each object: results that would fail requests (GL04xx) pass here
                    return check_rendered(document, body, state, force=True)
                except GraylaneError:
                    caught.append(copy.deepcopy(body))
                    raise

            documents = [Document(copy.deepcopy(o), name, i) for i, o in enumerate(objects, 1)]
            try:
                rendered = render(documents, engine, step, check)
            except GraylaneError:
                if caught:
                    refused[f"{name} step {step}"] = [*caught, *context]
                continue
            accepted[f"{name} step {step}"] = [r.body for r in rendered] + context
    return accepted, refused, strategies


def test_istio_accepts_everything_graylane_renders_from_the_generated_corpus():
    accepted, refused, strategies = _render_corpus()
    assert strategies >= 200 and len(accepted) >= 100 and len(refused) >= 20, (strategies, len(accepted),
                                                                              len(refused))
    results = run_oracle(accepted)
    rejected = {name: result.rejections() for name, result in results.items() if result.rejections()}
    assert rejected == {}
    # and graylane is not stricter than it needs to be: what render refuses, Istio's webhook rejects too
    results = run_oracle(refused)
    accepted_by_istio = [name for name, result in results.items() if not result.rejections()]
    assert accepted_by_istio == []


# Istio analyzer codes and the graylane codes that report the same mistake.
EXPECTED = {
    # referenced gateway / host:port / subset / host not found (name.ns and name.ns.svc: Istio takes them literally)
    "IST0101": {"GL0501", "GL0505", "GL0201", "GL0301", "GL0510", "GL0512"},
    "IST0109": {"GL0503"},
    "IST0112": {"GL0505"},
    "IST0132": {"GL0502", "GL0501"},  # also reported when the Gateway is missing
    "IST0151": {"GL0509"},
    "IST0173": {"GL0506"},
}


EVERY_ENVOYFILTER = "EnvoyFilter exposes internal implementation details"  # Istio warns so about every EnvoyFilter


def _object_name(finding: dict) -> str:
    kind, _, rest = finding["object"].partition(" ")
    return f"{kind}/{rest}"


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_graylane_finds_whatever_istio_finds(case, tmp_path):
    objects = BROKEN[case]
    istio = run_oracle({case: objects})[case]
    said = [(m["object"], m["code"]) for m in istio.analysis]
    said += [(item["object"], "admission error") for item in istio.validation if item["errors"]]
    said += [(item["object"], "admission warning") for item in istio.validation
             if [w for w in item["warnings"] if not w.startswith(EVERY_ENVOYFILTER)]]
    assert said, f"the broken case {case} must be one Istio complains about"
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    result = run_graylane("validate", "-f", str(path), "-o", "json")
    assert result.returncode in (0, 1), result.stderr
    findings = json.loads(result.stdout)
    for object_name, code in said:
        ours = {f["code"] for f in findings if _object_name(f) == object_name}
        if code == "admission error":
            ok = any(f["severity"] == "error" for f in findings if _object_name(f) == object_name)
        elif code == "admission warning":
            ok = bool(ours)
        else:
            assert code in EXPECTED, f"Istio reports {code} on {object_name}, which graylane has no check for"
            ok = bool(ours & EXPECTED[code])
        assert ok, f"Istio: {code} on {object_name}; graylane: {sorted(ours) or 'nothing'}\n{istio}"


@pytest.mark.parametrize("case", sorted(GRAYLANE_ONLY))
def test_graylane_finds_more_than_istio(case, tmp_path):
    objects, code = GRAYLANE_ONLY[case]
    istio = run_oracle({case: objects})[case]
    assert istio.analysis == [] and istio.rejections() == [], istio
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    findings = json.loads(run_graylane("validate", "-f", str(path), "-o", "json").stdout)
    assert code in {f["code"] for f in findings}


@pytest.mark.parametrize("case", sorted(RESOLVED_HOST_FORMS))
def test_host_forms_istio_resolves_are_clean_for_both(case, tmp_path):
    """The other side of the host cases in BROKEN: the forms Istio resolves to the Service (short in the object's
    namespace, the FQDN from anywhere, a wildcard beside it) draw no finding from Istio and none from graylane."""
    objects = RESOLVED_HOST_FORMS[case]
    istio = run_oracle({case: objects})[case]
    assert istio.analysis == [] and istio.rejections() == [], istio
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    result = run_graylane("validate", "-f", str(path), "-o", "json")
    assert result.returncode == 0 and json.loads(result.stdout) == [], result.stdout
