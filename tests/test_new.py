"""`graylane new`: whatever it prints passes `graylane validate` and `graylane render` with the sample objects."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import SAMPLES, run_graylane

FULLLINK_A = SAMPLES / "fulllink" / "mocka.yaml"
FULLLINK_GRAY = SAMPLES / "fulllink" / "gray.yaml"  # the gray pods subset canary selects (render checks it)


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def new(*args: str) -> str:
    result = run_graylane("new", *args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def validate_clean(*files: Path, warnings: tuple[str, ...] = ()) -> None:
    """graylane validate passes, with no findings but the expected warnings (their codes)."""
    args = [a for f in files for a in ("-f", str(f))]
    result = run_graylane("validate", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split()[1] for line in result.stdout.splitlines()] == list(warnings), result.stdout


def render(*files: Path, step: int | None = None, flags: tuple[str, ...] = ()) -> dict:
    args = [a for f in files for a in ("-f", str(f))] + (["--step", str(step)] if step else []) + list(flags)
    result = run_graylane("render", "-o", "json", *args)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    items = data["items"] if data.get("kind") == "List" else [data]
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in items}


@pytest.fixture
def reviews_objects(tmp_path: Path) -> Path:
    """The weighted-canary sample without its own Rollout."""
    objects = [d for d in docs((SAMPLES / "weighted-canary" / "reviews.yaml").read_text()) if d["kind"] != "Rollout"]
    return write(tmp_path, "reviews-objects.yaml", yaml.safe_dump_all(objects))


def test_trafficrouting_with_header_validates_and_renders(tmp_path: Path):
    text = new("trafficrouting", "mocka-tr", "--service", "mocka", "--ref", "VirtualService/vs-mocka",
               "--ref", "DestinationRule/dr-mocka", "--header", "My-Request-Id=canary", "-n", "default")
    routing = docs(text)[0]
    assert routing["apiVersion"] == "rollouts.kruise.io/v1alpha1" and routing["kind"] == "TrafficRouting"
    assert routing["metadata"] == {"name": "mocka-tr", "namespace": "default"}
    assert routing["spec"]["objectRef"] == [{"service": "mocka", "customNetworkRefs": [
        {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "name": "vs-mocka"},
        {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule", "name": "dr-mocka"}]}]
    assert routing["spec"]["strategy"] == {"matches": [{"headers": [
        {"type": "Exact", "name": "my-request-id", "value": "canary"}]}]}
    path = write(tmp_path, "tr.yaml", text)
    validate_clean(path, FULLLINK_A)
    objects = render(path, FULLLINK_A, FULLLINK_GRAY)
    first = objects["VirtualService/vs-mocka"]["spec"]["http"][0]
    assert first["match"] == [{"headers": {"my-request-id": {"exact": "canary"}}}]
    assert first["route"] == [{"destination": {"host": "mocka", "subset": "canary"}}]


def test_trafficrouting_or_matches_regex_query_and_header_modifier(tmp_path: Path):
    text = new("trafficrouting", "mocka-tr", "--service", "mocka", "--ref", "VirtualService/vs-mocka",
               "--ref", "DestinationRule/dr-mocka", "--header-regex", "x-user=^(alice|bob)$", "--query", "beta=1",
               "--path-prefix", "/beta", "--or", "--set-header", "x-lane=gray", "--remove-header", "x-debug",
               "-n", "default")
    strategy = docs(text)[0]["spec"]["strategy"]
    assert strategy["matches"] == [
        {"headers": [{"type": "RegularExpression", "name": "x-user", "value": "^(alice|bob)$"}]},
        {"queryParams": [{"type": "Exact", "name": "beta", "value": "1"}]},
        {"path": {"type": "PathPrefix", "value": "/beta"}}]
    assert strategy["requestHeaderModifier"] == {"set": [{"name": "x-lane", "value": "gray"}], "remove": ["x-debug"]}
    path = write(tmp_path, "tr.yaml", text)
    validate_clean(path, FULLLINK_A)
    http = render(path, FULLLINK_A, FULLLINK_GRAY)["VirtualService/vs-mocka"]["spec"]["http"]
    assert [rule.get("match") for rule in http] == [
        [{"headers": {"x-user": {"regex": "^(alice|bob)$"}}}], [{"queryParams": {"beta": {"exact": "1"}}}],
        [{"uri": {"prefix": "/beta"}}], None]
    assert http[0]["headers"] == {"request": {"set": {"x-lane": "gray"}, "remove": ["x-debug"]}}


def test_trafficrouting_anded_conditions_make_one_match():
    strategy = docs(new("trafficrouting", "t", "--service", "s", "--ref", "VirtualService/v", "--header", "a=1",
                        "--header", "b=2", "--query", "q=3", "--path-prefix", "/p"))[0]["spec"]["strategy"]
    assert strategy["matches"] == [{"headers": [{"type": "Exact", "name": "a", "value": "1"},
                                                {"type": "Exact", "name": "b", "value": "2"}],
                                    "queryParams": [{"type": "Exact", "name": "q", "value": "3"}],
                                    "path": {"type": "PathPrefix", "value": "/p"}}]


def test_trafficrouting_weight_and_full_api_version_ref(tmp_path: Path, reviews_objects: Path):
    text = new("trafficrouting", "reviews", "--service", "reviews", "--ref",
               "networking.istio.io/v1/VirtualService/reviews", "--weight", "20", "-n", "bookinfo", "-o", "json")
    routing = json.loads(text)
    assert routing["spec"]["strategy"] == {"weight": 20}
    assert routing["spec"]["objectRef"][0]["customNetworkRefs"] == [
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "name": "reviews"}]
    path = write(tmp_path, "tr.json", text)
    # passes, but warns: a TrafficRouting routes to subset "canary" and no DestinationRule is referenced
    validate_clean(path, reviews_objects, warnings=("GL0304",))
    # render refuses it: subset "canary" is not defined anywhere, so every canary request would get 503
    refused = run_graylane("render", "-f", str(path), "-f", str(reviews_objects))
    assert refused.returncode == 1 and refused.stdout == ""
    assert "[GL0402 RenderedSubsetUndefined]; --force renders it anyway" in refused.stderr
    route = render(path, reviews_objects, flags=("--force",))["VirtualService/reviews"]["spec"]["http"][0]["route"]
    assert [r["weight"] for r in route] == [80, 20]
    # a TrafficRouting routes to a subset of the stable service
    assert route[1]["destination"]["host"] == "reviews.bookinfo.svc.cluster.local"


def test_rollout_steps_whole_rollout_validates_and_renders_every_step(tmp_path: Path, reviews_objects: Path):
    text = new("rollout-steps", "--service", "reviews", "--ref", "VirtualService/reviews", "--steps", "5%,20%,50%",
               "--workload", "Deployment/reviews", "-n", "bookinfo")
    assert "&id" not in text and "*id" not in text  # no YAML anchors
    rollout = docs(text)[0]
    assert rollout["apiVersion"] == "rollouts.kruise.io/v1beta1" and rollout["kind"] == "Rollout"
    assert rollout["metadata"] == {"name": "reviews", "namespace": "bookinfo"}
    assert rollout["spec"]["workloadRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "reviews"}
    canary = rollout["spec"]["strategy"]["canary"]
    assert canary["steps"] == [{"traffic": "5%", "replicas": "5%", "pause": {}},
                               {"traffic": "20%", "replicas": "20%", "pause": {}},
                               {"traffic": "50%", "replicas": "50%"}]
    path = write(tmp_path, "rollout.yaml", text)
    validate_clean(path, reviews_objects)
    for step, weights in ((1, [95, 5]), (2, [80, 20]), (3, [50, 50])):
        route = render(path, reviews_objects, step=step)["VirtualService/reviews"]["spec"]["http"][0]["route"]
        assert [r["weight"] for r in route] == weights
        assert route[1]["destination"]["host"] == "reviews-canary.bookinfo.svc.cluster.local"


def test_rollout_steps_with_header_and_options(tmp_path: Path, reviews_objects: Path):
    text = new("rollout-steps", "--service", "reviews", "--ref", "VirtualService/reviews", "--steps", "10,100",
               "--header", "x-canary=yes", "--replicas", "1,100%", "--pause", "300", "--workload",
               "apps/v1/Deployment/reviews", "--name", "reviews-rollout", "-n", "bookinfo")
    rollout = docs(text)[0]
    assert rollout["metadata"]["name"] == "reviews-rollout"
    steps = rollout["spec"]["strategy"]["canary"]["steps"]
    assert steps[0] == {"traffic": "10%", "matches": [{"headers": [{"type": "Exact", "name": "x-canary",
                                                                    "value": "yes"}]}],
                        "replicas": 1, "pause": {"duration": 300}}
    assert steps[1]["replicas"] == "100%" and "pause" not in steps[1]
    path = write(tmp_path, "rollout.yaml", text)
    validate_clean(path, reviews_objects)
    http = render(path, reviews_objects)["VirtualService/reviews"]["spec"]["http"]
    assert http[0]["match"] == [{"headers": {"x-canary": {"exact": "yes"}}}]


def test_rollout_steps_fragment_is_the_canary_strategy(tmp_path: Path, reviews_objects: Path):
    args = ["rollout-steps", "--service", "reviews", "--ref", "VirtualService/reviews", "--steps", "5%,50%"]
    fragment = new(*args)
    assert fragment.startswith("# spec.strategy.canary")
    canary = yaml.safe_load(fragment)["canary"]
    whole = docs(new(*args, "--workload", "Deployment/reviews", "-n", "bookinfo"))[0]
    assert whole["spec"]["strategy"]["canary"] == canary
    # pasted under spec.strategy of a Rollout, it validates and renders
    rollout = {"apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout",
               "metadata": {"name": "reviews", "namespace": "bookinfo"},
               "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "reviews"},
                        "strategy": yaml.safe_load(fragment)}}
    path = write(tmp_path, "pasted.yaml", yaml.safe_dump(rollout))
    validate_clean(path, reviews_objects)
    render(path, reviews_objects, step=2)


@pytest.mark.parametrize("args,message", [
    (["trafficrouting", "t", "--service", "s", "--ref", "Widget/x", "--weight", "5"], "unknown kind 'Widget'"),
    (["trafficrouting", "t", "--service", "s", "--ref", "VirtualService/x"], "needs --weight N or a match"),
    (["trafficrouting", "t", "--service", "s", "--weight", "5"], "at least one --ref"),
    (["trafficrouting", "t", "--service", "s", "--ref", "VirtualService/x", "--weight", "101"], "from 0 to 100"),
    (["trafficrouting", "t", "--service", "s", "--ref", "VirtualService/x", "--header", "novalue"],
     "expected NAME=VALUE"),
    (["trafficrouting", "t", "--service", "s", "--ref", "VirtualService/x", "--header-regex", "x=(?=a)"],
     "not valid RE2"),
    (["trafficrouting", "t", "--service", "s", "--ref", "VirtualService/x", "--path-prefix", "/a",
      "--path-prefix", "/b"], "give --or"),
    (["trafficrouting", "t", "--service", "s", "--ref", "VirtualService/x", "--path-prefix", "a"], "start with /"),
    (["trafficrouting", "Bad_Name", "--service", "s", "--ref", "VirtualService/x", "--weight", "1"],
     "not a valid Kubernetes name"),
    (["rollout-steps", "--service", "s", "--ref", "VirtualService/x", "--steps", "5%,200%"], "more than 100%"),
    (["rollout-steps", "--service", "s", "--ref", "VirtualService/x", "--steps", "5%,x"], "not a percentage"),
    (["rollout-steps", "--service", "s", "--ref", "VirtualService/x", "--steps", "5%", "--replicas", "1,2"],
     "--replicas has 2"),
])
def test_bad_flags_are_one_error_line_and_nothing_on_stdout(args, message):
    result = run_graylane("new", *args)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_too_many_matches_refused():
    args = ["trafficrouting", "t", "--service", "s", "--ref", "VirtualService/x", "--or"]
    for index in range(17):
        args += ["--header", f"x=v{index}"]
    result = run_graylane("new", *args)
    assert result.returncode == 1 and "at most 16" in result.stderr and result.stdout == ""
