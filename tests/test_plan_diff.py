"""`graylane plan` and `graylane diff`, run as a user would (pipes, a terminal, NO_COLOR)."""
from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import SAMPLES, graylane_command, run_graylane

ESC = "\x1b["
# The Kruise part of the full-link sample (the directory also holds other engineers' FullLinkGray files).
FULLLINK = [arg for name in ("gateway.yaml", "mocka.yaml", "mockb.yaml", "gray.yaml", "trafficrouting.yaml")
            for arg in ("-f", f"samples/fulllink/{name}")]


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def run_on_terminal(*args: str, env: dict | None = None) -> tuple[int, str]:
    """Run graylane with stdout on a pseudo-terminal (what a user at a shell sees)."""
    master, slave = pty.openpty()
    full_env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "GRAYLANE_LUA_PATH")}
    full_env["TERM"] = "xterm"
    full_env.update(env or {})
    process = subprocess.Popen([*graylane_command(), *args], stdout=slave, stderr=subprocess.PIPE, cwd=SAMPLES.parent,
                               env=full_env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return process.wait(timeout=60), b"".join(chunks).decode().replace("\r\n", "\n")


# ---------------------------------------------------------------------------------------------- plan

def test_plan_table_shows_every_step_split_and_diff():
    result = run_graylane("plan", "-f", str(SAMPLES / "weighted-canary"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("Rollout bookinfo/reviews (")
    assert "3 steps)" in out.splitlines()[0]
    header = next(line for line in out.splitlines() if line.startswith("STEP"))
    assert header.split() == ["STEP", "STRATEGY", "OBJECT", "RULE", "MATCH", "STABLE", "CANARY"]
    rows = [line.split() for line in out.splitlines() if line[:4] in ("1/3 ", "2/3 ", "3/3 ")]
    assert [(r[0], r[-2], r[-1]) for r in rows] == [("1/3", "95%", "5%"), ("2/3", "50%", "50%"),
                                                    ("3/3", "0%", "100%")]
    assert all("VirtualService/reviews" in r for r in rows)
    for step in (1, 2, 3):
        assert f"+++ VirtualService bookinfo/reviews (step {step}/3)" in out
    assert "+    - destination:\n+        host: reviews-canary.bookinfo.svc.cluster.local" in out
    assert "original-spec-configuration" not in out  # bookkeeping is left out of the plan's diffs
    assert ESC not in out  # piped: no color


def test_plan_table_shows_which_matches_go_to_the_canary():
    result = run_graylane("plan", *FULLLINK)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    canary_rows = [line for line in lines if "header my-request-id=canary" in line and line.rstrip().endswith("100%")]
    assert len(canary_rows) == 2  # one per TrafficRouting
    assert any(line.split()[-3:] == ["*", "100%", "0%"] for line in lines)
    assert "+++ DestinationRule default/dr-mocka (rendered)" in result.stdout
    assert "+      istio.service.tag: gray" in result.stdout


def test_plan_json_has_full_objects_per_step():
    result = run_graylane("plan", "-f", str(SAMPLES / "weighted-canary"), "-o", "json")
    assert result.returncode == 0, result.stderr
    steps = json.loads(result.stdout)
    assert [(s["step"], s["stepCount"], s["strategy"]) for s in steps] == [
        (1, 3, {"weight": 5}), (2, 3, {"weight": 50}), (3, 3, {"weight": 100})]
    assert steps[0]["routing"]["kind"] == "Rollout" and steps[0]["routing"]["name"] == "reviews"
    assert steps[1]["split"] == [{"object": "VirtualService/reviews", "rule": "http[0] primary", "match": "*",
                                  "stable": 50, "canary": 50, "other": 0}]
    vs = steps[1]["objects"][0]
    assert vs["kind"] == "VirtualService"
    assert [r["weight"] for r in vs["spec"]["http"][0]["route"]] == [50, 50]


def test_plan_yaml_and_single_step():
    result = run_graylane("plan", "-f", str(SAMPLES / "weighted-canary"), "-o", "yaml", "--step", "2")
    assert result.returncode == 0, result.stderr
    steps = docs(result.stdout)
    assert len(steps) == 1 and steps[0]["step"] == 2
    assert steps[0]["description"] == "traffic 50%"


def test_plan_trafficrouting_yaml_matches_and_split():
    result = run_graylane("plan", *FULLLINK, "-o", "yaml")
    assert result.returncode == 0, result.stderr
    steps = docs(result.stdout)
    assert [s["routing"]["name"] for s in steps] == ["mocka-tr", "mockb-tr"]
    assert steps[0]["step"] is None
    assert steps[0]["split"][0] == {"object": "VirtualService/vs-mocka", "rule": "http[0]",
                                    "match": "header my-request-id=canary", "stable": 0, "canary": 100, "other": 0}
    assert {o["kind"] for o in steps[0]["objects"]} == {"VirtualService", "DestinationRule"}


def test_plan_colors_only_when_asked_or_on_a_terminal():
    forced = run_graylane("plan", "-f", str(SAMPLES / "weighted-canary"), "--color", "always", "--step", "1")
    assert "\x1b[32m+      weight: 95\x1b[0m" in forced.stdout
    status, out = run_on_terminal("plan", "-f", "samples/weighted-canary", "--step", "1")
    assert status == 0 and ESC in out


@pytest.mark.parametrize("args,message", [
    (["-f", "samples/fulllink/mocka.yaml"], "no TrafficRouting"),
    (["-f", "samples/weighted-canary", "--step", "4"], "out of range"),
    (["-f", "samples/nope.yaml"], "no such file"),
])
def test_plan_errors(args, message):
    result = run_graylane("plan", *args)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error: ") and message in result.stderr


# ---------------------------------------------------------------------------------------------- diff

def test_diff_shows_kubectl_style_changes_and_exits_1():
    result = run_graylane("diff", *FULLLINK)
    assert result.returncode == 1, result.stderr
    out = result.stdout
    name = "networking.istio.io.v1beta1.VirtualService.default.vs-mocka"
    assert out.startswith(f"diff -u -N LIVE/{name} MERGED/{name}\n--- LIVE/{name}\n+++ MERGED/{name}\n@@ ")
    assert out.count("diff -u -N ") == 4
    assert "+    rollouts.kruise.io/original-spec-configuration: " in out  # what apply would change, all of it
    assert "+        subset: canary" in out
    assert ESC not in out


def test_diff_rollout_step():
    result = run_graylane("diff", "-f", str(SAMPLES / "weighted-canary"), "--step", "2")
    assert result.returncode == 1
    assert "+      weight: 50" in result.stdout
    assert "+        host: reviews-canary.bookinfo.svc.cluster.local" in result.stdout


def test_diff_exits_0_when_render_changes_nothing(tmp_path: Path):
    rendered = run_graylane("render", *FULLLINK)
    assert rendered.returncode == 0
    (tmp_path / "rendered.yaml").write_text(rendered.stdout)
    (tmp_path / "tr.yaml").write_text((SAMPLES / "fulllink" / "trafficrouting.yaml").read_text())
    result = run_graylane("diff", "-f", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("args,message", [
    (["-f", "samples/nope.yaml"], "no such file"),
    (["-f", "samples/fulllink/mocka.yaml"], "no TrafficRouting"),
    (["-f", "samples/weighted-canary", "--step", "9"], "out of range"),
    (["-f", "samples/fulllink/trafficrouting.yaml"], "not among the inputs"),
])
def test_diff_errors_exit_2_with_nothing_on_stdout(args, message):
    result = run_graylane("diff", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr


def test_diff_exits_2_when_the_script_output_is_invalid(tmp_path: Path):
    script = tmp_path / "lua" / "networking.istio.io" / "VirtualService" / "trafficRouting.lua"
    script.parent.mkdir(parents=True)
    script.write_text("local spec = obj.data.spec\nspec.http[1].route[1].weight = 7\nreturn {spec = spec}\n")
    result = run_graylane("diff", "-f", "samples/weighted-canary", "--lua-dir", str(tmp_path / "lua"))
    assert result.returncode == 2 and result.stdout == ""
    assert "GL0101" in result.stderr


def test_diff_color_on_a_terminal_but_not_with_no_color():
    status, out = run_on_terminal("diff", *FULLLINK)
    assert status == 1
    assert "\x1b[32m+        subset: canary\x1b[0m" in out
    assert "\x1b[1mdiff -u -N LIVE/" in out
    status, plain = run_on_terminal("diff", *FULLLINK, env={"NO_COLOR": "1"})
    assert status == 1 and ESC not in plain
    status, never = run_on_terminal("diff", *FULLLINK, "--color", "never")
    assert ESC not in never
    forced = run_graylane("diff", *FULLLINK, "--color", "always")
    assert "\x1b[36m@@ " in forced.stdout


# ---------------------------------------------------------------------------------------------- pure helpers

MIXED = """\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop]
  http:
  - match:
    - uri: {prefix: /admin}
    route:
    - destination: {host: admin}
  - route:
    - destination: {host: shop}
      weight: 80
    - destination: {host: legacy}
      weight: 20
---
apiVersion: rollouts.kruise.io/v1beta1
kind: Rollout
metadata: {name: shop, namespace: default}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: shop}
  strategy:
    canary:
      steps:
      - traffic: 10%
      trafficRoutings:
      - service: shop
        customNetworkRefs:
        - {apiVersion: networking.istio.io/v1beta1, kind: VirtualService, name: shop}
"""


def test_plan_shows_traffic_to_other_services(tmp_path: Path):
    (tmp_path / "shop.yaml").write_text(MIXED)
    result = run_graylane("plan", "-f", str(tmp_path / "shop.yaml"), "-o", "json")
    assert result.returncode == 0, result.stderr
    split = json.loads(result.stdout)[0]["split"]
    assert split == [
        {"object": "VirtualService/shop", "rule": "http[0]", "match": "path /admin*", "stable": 0, "canary": 0,
         "other": 100},
        {"object": "VirtualService/shop", "rule": "http[1]", "match": "*", "stable": 72, "canary": 10, "other": 18}]
    table = run_graylane("plan", "-f", str(tmp_path / "shop.yaml"))
    assert next(line for line in table.stdout.splitlines() if line.startswith("STEP")).split()[-1] == "OTHER"


def test_describe_helpers():
    from engine.routing.plan import colorize_diff, describe_istio_match, describe_strategy, object_id
    from engine.routing.strategy import TrafficStrategy

    strategy = TrafficStrategy(5, [{"headers": [{"type": "Exact", "name": "a", "value": "1"}]},
                                   {"path": {"type": "PathPrefix", "value": "/b"},
                                    "queryParams": [{"type": "RegularExpression", "name": "q", "value": "x.*"}]}],
                               {"set": [{"name": "x-lane", "value": "gray"}], "remove": ["x-debug"]})
    assert describe_strategy(strategy) == ("traffic 5%, matches (header a=1) or (path /b* and query q~x.*), "
                                           "set header x-lane=gray, remove header x-debug")
    assert describe_strategy(TrafficStrategy()) == "no traffic change (no weight, no matches)"
    assert describe_istio_match({"uri": {"exact": "/a"}, "headers": {"h": {"regex": "v+"}},
                                 "withoutHeaders": {"n": {}}, "method": {"exact": "GET"}}) == \
        "path /a and header h~v+ and no header n present and method=GET"
    assert object_id({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}) == "v1.Service.s"
    assert colorize_diff("--- a\n+++ b\n@@ -1 +1 @@\n-x\n+y\n z\n") == (
        "\x1b[1m--- a\x1b[0m\n\x1b[1m+++ b\x1b[0m\n\x1b[36m@@ -1 +1 @@\x1b[0m\n\x1b[31m-x\x1b[0m\n"
        "\x1b[32m+y\x1b[0m\n z\n")
