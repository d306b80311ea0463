"""`graylane argocd ignore-differences`: the expressions, applied as Argo CD applies them (jq ``del`` of each
jqPathExpression, JSON-pointer removal), make the original (what git holds) and every step's rendered object
equal, and a change outside those paths is still seen."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from argocdlib import entry_for, normalize, with_live_ignored
from helpers import SAMPLES, run_graylane

ARGO = SAMPLES / "argo-rollouts"
CASES = {
    "argo host-level": [str(ARGO / "host-level")],
    "argo subset-level": [str(ARGO / "subset-level"), "--canary-hash", "c1", "--stable-hash", "s1"],
    "argo header and mirror routes": [str(ARGO / "header-mirror")],
    "argo tcp": [str(ARGO / "tcp")],
    "kruise weighted canary": [str(SAMPLES / "weighted-canary")],
    "kruise full-link": [str(SAMPLES / "fulllink")],
}


def _files_and_flags(args: list[str]) -> tuple[list[str], list[str]]:
    files = [a for a in args if not a.startswith("--") and "/" in a]
    flags = [a for a in args if a not in files]
    return [x for f in files for x in ("-f", f)], flags


def originals(files: list[str]) -> dict[tuple, dict]:
    found = {}
    for path in files[1::2]:
        for file in sorted(Path(path).rglob("*.yaml")) if Path(path).is_dir() else [Path(path)]:
            for doc in yaml.safe_load_all(file.read_text()):
                if doc:
                    found[(doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"])] = doc
    return found


@pytest.mark.parametrize("case", sorted(CASES))
def test_expressions_cover_every_step_and_nothing_else(case: str, tmp_path: Path):
    files, flags = _files_and_flags(CASES[case])
    result = run_graylane("argocd", "ignore-differences", *files, *flags, "-o", "json")
    assert result.returncode == 0, result.stderr
    patch = json.loads(result.stdout)
    assert patch["spec"]["syncPolicy"]["syncOptions"] == ["RespectIgnoreDifferences=true", "ApplyOutOfSyncOnly=true"]
    entries = patch["spec"]["ignoreDifferences"]
    steps = run_graylane("render", *files, *flags, "--all-steps", "--output-dir", str(tmp_path))
    assert steps.returncode == 0, steps.stderr
    git = originals(files)
    rendered = [yaml.safe_load(p.read_text()) for p in sorted(tmp_path.rglob("*.yaml"))]
    assert rendered
    for body in rendered:
        original = git[(body["kind"], body["metadata"].get("namespace"), body["metadata"]["name"])]
        assert body != original
        entry = entry_for(entries, body)
        assert normalize(body, entry) == normalize(original, entry), f"{case}: a change is not covered"
        # a self-healing sync (RespectIgnoreDifferences) of git's version leaves the step as it is
        assert with_live_ignored(original, body, entry) == {k: v for k, v in body.items() if k != "status"}
        # a change outside the ignored paths is still seen: in the spec, and in a label git sets
        changed = copy.deepcopy(original)
        changed["spec"]["hosts" if body["kind"] == "VirtualService" else "host"] = ["changed.example.com"]
        assert normalize(body, entry) != normalize(changed, entry)
        relabelled = copy.deepcopy(original)
        relabelled["metadata"].setdefault("labels", {})["team"] = "payments"
        assert normalize(body, entry) != normalize(relabelled, entry)
    assert {e["name"] for e in entries} == {b["metadata"]["name"] for b in rendered}


def test_a_header_step_is_covered_where_a_json_pointer_to_the_first_route_is_not(tmp_path: Path):
    """The Argo Rollouts guide suggests /spec/http/0; after a header step the primary route is /spec/http/1."""
    result = run_graylane("argocd", "ignore-differences", "-f", str(ARGO / "header-mirror"))
    entry = yaml.safe_load(result.stdout)["spec"]["ignoreDifferences"][0]
    assert all("/spec/http" not in pointer for pointer in entry.get("jsonPointers", []))
    assert '.spec.http[] | select(.name == "testers")' in entry["jqPathExpressions"]
    guide = {"jsonPointers": ["/spec/http/0"]}
    step = run_graylane("render", "-f", str(ARGO / "header-mirror"), "--step", "2")
    body, original = yaml.safe_load(step.stdout), originals(["-f", str(ARGO / "header-mirror")])[
        ("VirtualService", "shop", "checkout")]
    assert normalize(body, guide)["spec"] != normalize(original, guide)["spec"]
    assert normalize(body, entry) == normalize(original, entry)


def test_bad_input_is_one_line():
    result = run_graylane("argocd", "ignore-differences", "-f", str(ARGO / "host-level" / "virtualservice.yaml"))
    assert result.returncode == 1 and result.stdout == "" and result.stderr.count("\n") == 1
