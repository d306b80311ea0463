"""`graylane validate`, `graylane schema` and render's output check, run as a user would."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers import SAMPLES, run_graylane

LINE = re.compile(r"^(error|warning) (GL\d{4}) (\S+)#(\d+)( \S+)?: .+$")

BAD = """\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: vs
  namespace: default
spec:
  hosts: [mocka]
  http:
  - route:
    - destination: {host: mocka, subset: v1}
      weight: 60
    - destination: {host: mocka, subset: v2}
      weight: 30
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: dr, namespace: default}
spec:
  host: mocka
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
"""

WARN_ONLY = """\
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: dr, namespace: default}
spec:
  host: mocka
  subsets:
  - name: everything
"""


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    return path


def test_samples_validate_clean():
    result = run_graylane("validate", "-f", str(SAMPLES / "fulllink"), "-f", str(SAMPLES / "weighted-canary"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert "no problems found" in result.stderr


def test_errors_print_one_line_each_and_exit_1(bad_file: Path):
    result = run_graylane("validate", "-f", str(bad_file))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert all(LINE.match(line) for line in lines), lines
    assert f"error GL0101 {bad_file}#1 spec.http[0].route: route weights sum to 90 (60 + 30), not 100" in lines
    assert any(line.startswith(f"warning GL0204 {bad_file}#2 spec.subsets[1]:") for line in lines)
    assert "1 error, 1 warning in 2 documents" in result.stderr


def test_warnings_alone_pass_unless_strict(tmp_path: Path):
    path = tmp_path / "warn.yaml"
    path.write_text(WARN_ONLY)
    relaxed = run_graylane("validate", "-f", str(path))
    assert relaxed.returncode == 0
    assert relaxed.stdout.startswith(f"warning GL0204 {path}#1 spec.subsets[0]: ")
    strict = run_graylane("validate", "-f", str(path), "--strict")
    assert strict.returncode == 1
    assert strict.stdout == relaxed.stdout


def test_json_output(bad_file: Path):
    result = run_graylane("validate", "-f", str(bad_file), "-o", "json")
    assert result.returncode == 1
    findings = json.loads(result.stdout)
    assert {"code": "GL0101", "severity": "error", "source": str(bad_file), "document": 1,
            "path": "spec.http[0].route", "check": "WeightSum",
            "object": "VirtualService default/vs"}.items() <= findings[0].items()
    assert [f["code"] for f in findings] == ["GL0101", "GL0204"]
    clean = run_graylane("validate", "-f", str(SAMPLES / "fulllink"), "-o", "json")
    assert clean.returncode == 0 and json.loads(clean.stdout) == []


def test_stdin_and_ignore():
    result = run_graylane("validate", "-f", "-", "--ignore", "GL0101,gl0204", input=BAD)
    assert result.returncode == 0, result.stdout
    assert result.stdout == ""
    unknown = run_graylane("validate", "-f", "-", "--ignore", "GL9999", input=BAD)
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert unknown.stderr.startswith("error: --ignore: unknown code(s) GL9999")


def test_traffic_routing_alone_reports_missing_references():
    result = run_graylane("validate", "-f", str(SAMPLES / "fulllink" / "trafficrouting.yaml"))
    assert result.returncode == 1
    assert result.stdout.count("GL0301") == 4


def test_cross_file_checks(tmp_path: Path):
    routing = tmp_path / "tr.yaml"
    routing.write_text((SAMPLES / "fulllink" / "trafficrouting.yaml").read_text().replace("service: mockb",
                                                                                          "service: mockc"))
    result = run_graylane("validate", "-f", str(routing), "-f", str(SAMPLES / "fulllink" / "mocka.yaml"),
                          "-f", str(SAMPLES / "fulllink" / "mockb.yaml"))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(f"GL0302 {routing}#2 spec.objectRef[0].service: service mockc" in line for line in lines), lines
    assert any(f"GL0303 {routing}#2 spec.objectRef[0].customNetworkRefs[1]" in line for line in lines), lines


def test_unreadable_input_is_one_error_line_and_nothing_on_stdout(tmp_path: Path):
    missing = run_graylane("validate", "-f", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip().count("\n") == 0 and missing.stderr.startswith("error: ")
    empty = run_graylane("validate", "-f", "-", input="---\n")
    assert empty.returncode == 1 and empty.stdout == "" and "no Kubernetes objects" in empty.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [\n")
    result = run_graylane("validate", "-f", str(broken))
    assert result.returncode == 1 and result.stdout == "" and "Traceback" not in result.stderr


def test_schema_command_lists_and_prints_every_schema():
    listing = run_graylane("schema")
    assert listing.returncode == 0
    names = [line.split()[0] for line in listing.stdout.splitlines()]
    assert {"trafficrouting", "rollout", "virtualservice", "destinationrule", "envoyfilter"} <= set(names)
    for name in names:
        result = run_graylane("schema", name)
        assert result.returncode == 0, result.stderr
        schema = json.loads(result.stdout)
        assert schema["$schema"].startswith("https://json-schema.org/")
    unknown = run_graylane("schema", "nope")
    assert unknown.returncode == 1 and unknown.stdout == "" and "unknown schema" in unknown.stderr


def _lua_dir(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "lua" / "networking.istio.io" / "VirtualService" / "trafficRouting.lua"
    script.parent.mkdir(parents=True)
    script.write_text(body)
    return tmp_path / "lua"


def test_render_refuses_script_output_with_bad_weights(tmp_path: Path):
    lua = _lua_dir(tmp_path, """
local spec = obj.data.spec
for _, rule in ipairs(spec.http) do
  rule.route[1].weight = obj.stableWeight
  table.insert(rule.route, {destination = {host = obj.canaryService}, weight = obj.canaryWeight + 1})
end
return {spec = spec, labels = obj.data.labels, annotations = obj.data.annotations}
""")
    result = run_graylane("render", "-f", str(SAMPLES / "weighted-canary"), "--lua-dir", str(lua))
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "reviews.yaml: document 3: spec.http[0].route:" in result.stderr
    assert "route weights sum to 101 (95 + 6), not 100 [GL0101 WeightSum]" in result.stderr


def test_render_refuses_script_output_that_fails_the_schema(tmp_path: Path):
    lua = _lua_dir(tmp_path, """
local spec = obj.data.spec
spec.httpRoutes = spec.http
return {spec = spec}
""")
    result = run_graylane("render", "-f", str(SAMPLES / "weighted-canary"), "--lua-dir", str(lua))
    assert result.returncode == 1 and result.stdout == ""
    assert 'spec.httpRoutes: the traffic-routing script\'s output for VirtualService bookinfo/reviews is invalid: ' \
           'unknown field "httpRoutes"' in result.stderr


def test_render_accepts_valid_builtin_output():
    result = run_graylane("render", "-f", str(SAMPLES / "weighted-canary"), "--step", "2")
    assert result.returncode == 0, result.stderr


def test_schema_draft_07_for_editors_gives_the_same_verdicts():
    from jsonschema import Draft7Validator, Draft202012Validator
    from test_analyzers import VALID_OF_EVERY_KIND
    from engine.checks.schemas import schema_for

    for body in VALID_OF_EVERY_KIND:
        name = schema_for(body["apiVersion"], body["kind"])
        result = run_graylane("schema", name, "--draft", "07")
        assert result.returncode == 0, result.stderr
        converted = json.loads(result.stdout)
        assert converted["$schema"] == "http://json-schema.org/draft-07/schema#"
        assert '"$ref": "#/$defs/' not in result.stdout
        Draft7Validator.check_schema(converted)
        original = json.loads(run_graylane("schema", name).stdout)
        broken = json.loads(json.dumps(body))
        broken["spec"]["notAField"] = 1
        for document in (body, broken):
            expected = sorted(e.message for e in Draft202012Validator(original).iter_errors(document))
            assert sorted(e.message for e in Draft7Validator(converted).iter_errors(document)) == expected
