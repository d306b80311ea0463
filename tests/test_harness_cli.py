"""`graylane test`: the script test harness, with Kruise's case format."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from helpers import REPO, run_graylane

KRUISE_STYLE_SCRIPT = """
-- a user script in the Kruise style: weight split to the canary host, header matches on top
local spec = obj.data.spec
if obj.matches then
  for _, m in ipairs(obj.matches) do
    local headers = {}
    for _, h in ipairs(m.headers) do headers[h.name] = {exact = h.value} end
    table.insert(spec.http, 1, {match = {{headers = headers}}, route = {{destination = {host = obj.canaryService}}}})
  end
elseif obj.canaryWeight ~= -1 then
  local route = spec.http[1].route
  route[1].weight = obj.stableWeight
  table.insert(route, {destination = {host = obj.canaryService}, weight = obj.canaryWeight})
end
return obj.data
"""

KRUISE_CASE = """
rollout:
  apiVersion: rollouts.kruise.io/v1alpha1
  kind: Rollout
  metadata:
    name: rollouts-demo
  spec:
    objectRef:
      workloadRef: {apiVersion: apps/v1, kind: Deployment, name: deploy-demo}
    strategy:
      canary:
        steps:
        - matches:
          - headers:
            - type: Exact
              name: user-agent
              value: pc
        - weight: 50
        trafficRoutings:
        - service: svc-demo
          customNetworkRefs:
          - apiVersion: networking.istio.io/v1alpha3
            kind: VirtualService
            name: vs-demo
original:
  apiVersion: networking.istio.io/v1alpha3
  kind: VirtualService
  metadata:
    name: vs-demo
  spec:
    hosts: ["*"]
    http:
    - route:
      - destination:
          host: svc-demo
expected:
  - apiVersion: networking.istio.io/v1alpha3
    kind: VirtualService
    metadata:
      name: vs-demo
    spec:
      hosts: ["*"]
      http:
      - match:
        - headers:
            user-agent:
              exact: pc
        route:
        - destination:
            host: svc-demo-canary
      - route:
        - destination:
            host: svc-demo
  - apiVersion: networking.istio.io/v1alpha3
    kind: VirtualService
    metadata:
      name: vs-demo
    spec:
      hosts: ["*"]
      http:
      - route:
        - destination:
            host: svc-demo
          weight: 50
        - destination:
            host: svc-demo-canary
          weight: 50
"""


def make_tree(root: Path, script: str, cases: dict[str, str]) -> Path:
    directory = root / "example.io" / "Route"
    (directory / "testdata").mkdir(parents=True)
    (directory / "trafficRouting.lua").write_text(script)
    for name, text in cases.items():
        (directory / "testdata" / name).write_text(text)
    return root


def test_builtin_scripts_pass_from_any_directory():
    result = run_graylane("test", cwd="/")
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    passed = int(last.split()[0])
    assert last == f"{passed} passed, 0 failed" and passed >= 20


def test_kruise_format_case_runs_unchanged(tmp_path):
    make_tree(tmp_path, KRUISE_STYLE_SCRIPT, {"rollout_two_steps.yaml": KRUISE_CASE})
    result = run_graylane("test", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "1 passed, 0 failed"


def test_failing_case_shows_a_diff_and_fails(tmp_path):
    make_tree(tmp_path, KRUISE_STYLE_SCRIPT, {"a_ok.yaml": KRUISE_CASE,
                                              "b_wrong.yaml": KRUISE_CASE.replace("weight: 50\n        - destination",
                                                                                  "weight: 40\n        - destination")})
    result = run_graylane("test", str(tmp_path))
    assert result.returncode == 1
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert any(line.startswith("FAIL") and line.endswith("b_wrong.yaml") for line in lines)
    assert "--- expected (step 2)" in lines and "+++ got (step 2)" in lines
    squeezed = [line.replace(" ", "") for line in lines]
    assert "-weight:40" in squeezed and "+weight:50" in squeezed
    assert result.stdout.strip().splitlines()[-1] == "1 passed, 1 failed"


def test_script_without_cases_fails(tmp_path):
    make_tree(tmp_path, KRUISE_STYLE_SCRIPT, {})
    result = run_graylane("test", str(tmp_path))
    assert result.returncode == 1
    assert "no test cases" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "0 passed, 1 failed"


def test_broken_case_file_is_reported(tmp_path):
    make_tree(tmp_path, KRUISE_STYLE_SCRIPT, {"broken.yaml": "original: [\n"})
    result = run_graylane("test", str(tmp_path))
    assert result.returncode == 1 and "not valid YAML" in result.stdout


def test_built_wheel_ships_the_scripts_and_finds_them_outside_the_checkout(tmp_path):
    """pip install . then `cd / && graylane test`: the wheel carries lua_configuration as package data."""
    wheel_dir = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(wheel_dir), str(REPO)], check=True, capture_output=True, text=True, timeout=300)
    wheel = next(wheel_dir.glob("graylane-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "engine/lua_configuration/networking.istio.io/VirtualService/trafficRouting.lua" in names
    assert any(n.startswith("engine/lua_configuration/networking.istio.io/VirtualService/testdata/") for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    result = subprocess.run([sys.executable, "-c", "import engine, sys; from engine.cli.main import main; "
                             "assert engine.__file__.startswith(sys.argv[1]), engine.__file__; sys.exit(main(['test']))",
                             str(site)], cwd="/", env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].endswith("passed, 0 failed")


ARGO_SCRIPT = """\
if obj.argo.weight > 40 then error("too much: " .. obj.argo.weight) end
local spec = obj.data.spec
spec.seen = (spec.seen or "") .. obj.argo.step .. ":" .. obj.argo.weight .. ";"
return {spec = spec}
"""

ARGO_ROLLOUT = """\
rollout:
  apiVersion: argoproj.io/v1alpha1
  kind: Rollout
  metadata: {name: web}
  spec:
    strategy:
      canary:
        canaryService: web-canary
        stableService: web
        trafficRouting:
          istio:
            virtualService: {name: web}
        steps:
        - setWeight: 10
        - pause: {}
        - setWeight: %d
original:
  apiVersion: example.io/v1
  kind: Route
  metadata: {name: web}
  spec: {}
"""


def test_argo_rollout_case_folds_every_step_as_render_does(tmp_path):
    """Each step sees the previous step's output and its own obj.argo (the weight in effect: a pause keeps it)."""
    good = ARGO_ROLLOUT % 30 + "expected:\n" + "".join(
        f"- metadata: {{name: web}}\n  spec: {{seen: '{seen}'}}\n" for seen in
        ("1:10;", "1:10;2:10;", "1:10;2:10;3:20;"))
    failing = ARGO_ROLLOUT % 50 + "expectedError: 'too much: 60'\n"
    make_tree(tmp_path, ARGO_SCRIPT, {"a_steps.yaml": good, "b_error.yaml": failing})
    result = run_graylane("test", str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "--- expected (step 3 (setWeight 30%))" in lines and "+++ got (step 3 (setWeight 30%))" in lines
    assert "-  seen: 1:10;2:10;3:20;" in lines and "+  seen: 1:10;2:10;3:30;" in lines
    assert any("step 3 (setWeight 50%): expected an error containing 'too much: 60', got:" in line
               and "too much: 50" in line for line in lines), result.stdout
    assert result.stdout.strip().splitlines()[-1] == "0 passed, 2 failed"
