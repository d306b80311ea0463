"""Property-based: hostile and broken input to every command, through the real CLI entry point (issue 11).

For every generated case: the exit status is 0, 1 or argparse's usage status 2 (``diff`` uses 2 for
errors, as kubectl diff), no Python traceback, nothing on stdout when the command reports an ``error:``,
and bounded time and memory. The inputs are the samples and built-in test cases, mutated (values of every
type at every path, keys deleted, documents dropped or duplicated) or broken as text (cut, characters
inserted, hostile snippets such as alias bombs, deep nesting, duplicate keys, NUL bytes).

CI runs a bounded number of examples per command (``GRAYLANE_FUZZ_EXAMPLES``, default 25); ``-m fuzz``
runs the long version (``GRAYLANE_FUZZ_LONG_EXAMPLES``, default 400).
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli.main import main

REPO = Path(__file__).resolve().parent.parent
SAMPLES = sorted((REPO / "samples").rglob("*.yaml"))
CASES = sorted((REPO / "lua_configuration").rglob("testdata/*.yaml"))
EXAMPLES = int(os.environ.get("GRAYLANE_FUZZ_EXAMPLES", "25"))
LONG_EXAMPLES = int(os.environ.get("GRAYLANE_FUZZ_LONG_EXAMPLES", "400"))
MAX_SECONDS = 30.0      # one command on one input, on a busy 2-core machine
MAX_RSS_MIB = 1536      # the test process (the scripts' worker processes have their own cap)


def _documents(path: Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


SAMPLE_STREAMS = [_documents(path) for path in SAMPLES]
# The whole full-link sample as one stream: TrafficRoutings with the objects they reference.
SAMPLE_STREAMS.append([d for path in SAMPLES if "fulllink" in str(path) for d in _documents(path)])
CASE_STREAMS = [[c.get("trafficRouting") or c.get("rollout"), c.get("original")]
                for c in (yaml.safe_load(p.read_text(encoding="utf-8")) for p in CASES)]
STREAMS = SAMPLE_STREAMS + CASE_STREAMS

HOSTILE_SNIPPETS = [
    "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n",
    "spec: " + "[" * 5000 + "]" * 5000 + "\n",
    "spec: " + "{a: " * 400 + "1" + "}" * 400 + "\n",
    "spec:\n  weight: 10\n  weight: 20\n",
    "spec: {a: .nan, b: .inf}\n",
    "spec: {n: 123456789012345678901234567890}\n",
    "spec: {b: !!binary aGVsbG8=}\n",
    'spec: {s: "\\ud800\\x00\\x1b[2J"}\n',
    "spec: &r {self: *r}\n",
    "spec: !!set {a, b}\n",
    "spec: !!omap [a: 1]\n",
    "\t- tab\n",
    "\ufeffapiVersion: v1\n",
    "--- |\n  text\n",
    "kind: List\napiVersion: v1\nitems: [1, [2], {kind: 3}]\n",
    "metadata:\n  annotations:\n    rollouts.kruise.io/original-spec-configuration: '{\"spec\": NaN}'\n",
    "metadata:\n  annotations:\n    rollouts.kruise.io/original-spec-configuration: '" + "[" * 3000 + "'\n",
]

JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2 ** 70, max_value=2 ** 70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.sampled_from(["", "canary", "100%", "-1", "0", "GET", "reviews", "a.b.svc.cluster.local", "\x00",
                     "\u202e", "\ud7ff", "50%", "Exact", "RegularExpression", "(", ".*"]),
)
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, prefix + (index,))
    return found


def _replace(value: Any, path: tuple, new: Any, delete: bool) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        if delete and not rest:
            copy.pop(head, None)
        else:
            copy[head] = _replace(value[head], rest, new, delete)
        return copy
    copy = list(value)
    if delete and not rest:
        del copy[head]
    else:
        copy[head] = _replace(value[head], rest, new, delete)
    return copy


@st.composite
def mutated_stream(draw) -> str:
    """A sample stream with some values replaced by values of any type, or deleted; as YAML or JSON."""
    stream = draw(st.sampled_from(STREAMS))
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        paths = _paths(stream)
        path = draw(st.sampled_from(paths))
        stream = _replace(stream, path, draw(JSON_VALUES), delete=bool(path) and draw(st.booleans()))
    if not isinstance(stream, list):
        stream = [stream]
    if draw(st.booleans()):
        return "\n".join(json.dumps(document) for document in stream)
    return yaml.safe_dump_all(stream, sort_keys=False)


@st.composite
def broken_text(draw) -> str:
    """Sample text cut, with characters inserted, or with a hostile snippet spliced in."""
    text = draw(st.sampled_from(SAMPLES)).read_text(encoding="utf-8")
    how = draw(st.sampled_from(["cut", "insert", "snippet", "snippet-only"]))
    if how == "cut":
        return text[: draw(st.integers(min_value=0, max_value=len(text)))]
    if how == "insert":
        at = draw(st.integers(min_value=0, max_value=len(text)))
        return text[:at] + draw(st.text(alphabet=st.sampled_from(list(":-[]{}&*!|>'\"#%@`\t\n ,?\x00\x85")),
                                        max_size=6)) + text[at:]
    snippet = draw(st.sampled_from(HOSTILE_SNIPPETS))
    if how == "snippet-only":
        return "apiVersion: v1\nkind: ConfigMap\n" + snippet
    lines = text.splitlines(keepends=True)
    at = draw(st.integers(min_value=0, max_value=len(lines)))
    return "".join(lines[:at]) + snippet + "".join(lines[at:])


INPUTS = st.one_of(mutated_stream(), broken_text())
STEP = st.one_of(st.integers(min_value=-3, max_value=5).map(str), st.sampled_from(["x", "", "1.5", "99999999999"]))
LIMIT = st.sampled_from(["1", "0.5", "nan", "-1", "0", "inf", "1e400", "abc", "5"])

COMMANDS = {
    "render": st.tuples(st.just(["render", "-f", "-"]), st.lists(st.sampled_from(
        [["--step", "1"], ["-o", "json"], ["--timeout", "2"], ["--max-memory", "16"]]), max_size=2)),
    "restore": st.tuples(st.just(["restore", "-f", "-"]), st.lists(st.just(["-o", "json"]), max_size=1)),
    "validate": st.tuples(st.just(["validate", "-f", "-"]), st.lists(st.sampled_from(
        [["-o", "json"], ["--strict"]]), max_size=2)),
    "plan": st.tuples(st.just(["plan", "-f", "-"]), st.lists(st.sampled_from(
        [["-o", "yaml"], ["-o", "json"], ["--step", "2"]]), max_size=2)),
    "diff": st.tuples(st.just(["diff", "-f", "-"]), st.lists(st.just(["--step", "1"]), max_size=1)),
    "color": st.tuples(st.just(["color", "-f", "-"]), st.lists(st.sampled_from(
        [["--lua"], ["-o", "json"]]), max_size=2)),
    "chain": st.tuples(st.just(["chain", "-f", "-"]), st.lists(st.sampled_from(
        [["--render"], ["--strict"], ["-o", "json"]]), max_size=2)),
    "simulate": st.tuples(st.just(["simulate", "-f", "-"]), st.lists(st.sampled_from(
        [["--request", "GET http://gateway.example.com/"], ["--request", "http://mocka/api"],
         ["-H", "my-request-id: canary"], ["--mesh"]]), min_size=1, max_size=3)),
}


def invoke(argv: list[str], stdin: Optional[str] = None) -> tuple[int, str, str, float]:
    """Run ``graylane ARGV`` in this process, exactly as the console script does (engine.cli.main.main)."""
    out, err = io.StringIO(), io.StringIO()
    data = (stdin or "").encode("utf-8", "surrogatepass")
    fake_stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
    saved_stdin = sys.stdin
    started = time.monotonic()
    try:
        sys.stdin = fake_stdin
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(argv)
            except SystemExit as exit_:  # argparse usage errors and --help
                status = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.stdin = saved_stdin
    return status, out.getvalue(), err.getvalue(), time.monotonic() - started


def check(argv: list[str], stdin: Optional[str] = None) -> tuple[int, str, str]:
    status, stdout, stderr, seconds = invoke(argv, stdin)
    assert status in (0, 1, 2), (argv, status, stderr)
    assert "Traceback" not in stderr, stderr
    if any(line.startswith("error:") for line in stderr.splitlines()):
        assert stdout == "", (argv, stderr)
        assert status != 0
    assert seconds < MAX_SECONDS, (argv, seconds)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < MAX_RSS_MIB * 1024
    return status, stdout, stderr


def _settings(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=examples == EXAMPLES,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def _command_property(name: str, examples: int):
    @_settings(examples)
    @given(command=COMMANDS[name], text=INPUTS)
    def prop(command, text):
        base, extra = command
        check([*base, *[part for flags in extra for part in flags]], text)
    return prop


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_survives_any_input(name):
    _command_property(name, EXAMPLES)()


@pytest.mark.fuzz
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_survives_any_input_long(name):
    _command_property(name, LONG_EXAMPLES)()


def _flags_property(examples: int):
    @_settings(examples)
    @given(command=st.sampled_from(["render", "plan", "diff", "chain"]), step=STEP, timeout=LIMIT, memory=LIMIT,
           output=st.sampled_from(["yaml", "json", "table", "text", "x"]))
    def prop(command, step, timeout, memory, output):
        argv = [command, "-f", str(REPO / "samples" / "weighted-canary"), "--timeout", timeout,
                "--max-memory", memory]
        if command in ("render", "plan", "diff"):
            argv += ["--step", step]
        if command != "diff":
            argv += ["-o", output]
        check(argv)
    return prop


def test_flags_survive_any_value():
    _flags_property(EXAMPLES * 2)()


@pytest.mark.fuzz
def test_flags_survive_any_value_long():
    _flags_property(LONG_EXAMPLES)()


def _new_property(examples: int):
    flag_value = st.one_of(st.text(max_size=12), st.sampled_from(["a=b", "=", "a=", "5%", "x/y", "a/b/c/d"]))

    @_settings(examples)
    @given(kind=st.sampled_from(["trafficrouting", "rollout-steps", "x"]), name=st.text(max_size=10),
           flags=st.lists(st.tuples(st.sampled_from(
               ["--service", "--ref", "--header", "--header-regex", "--query", "--path-prefix", "--weight",
                "--steps", "--replicas", "--pause", "--workload", "-n", "--set-header", "--remove-header"]),
               flag_value), max_size=5))
    def prop(kind, name, flags):
        argv = ["new", kind] + ([name] if kind == "trafficrouting" else [])
        for flag, value in flags:
            argv += [flag, value]
        check(argv)
    return prop


def test_new_survives_any_flags():
    _new_property(EXAMPLES * 2)()


@pytest.mark.fuzz
def test_new_survives_any_flags_long():
    _new_property(LONG_EXAMPLES)()


def _harness_property(examples: int):
    @_settings(examples)
    @given(text=INPUTS, script=st.sampled_from(["return obj.data", "return obj", "while true do end",
                                                "return {spec = obj}", "error('x')", "return 1",
                                                "local t = {} while true do t[#t + 1] = t end",
                                                "return {spec = string.rep('\\255', 10)}"]))
    def prop(text, script):
        with tempfile.TemporaryDirectory() as directory:
            tree = Path(directory) / "networking.istio.io" / "VirtualService"
            (tree / "testdata").mkdir(parents=True)
            (tree / "trafficRouting.lua").write_text(script, encoding="utf-8")
            (tree / "testdata" / "case.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
            check(["test", "--timeout", "0.5", directory])
    return prop


def test_script_test_harness_survives_any_case():
    _harness_property(EXAMPLES)()


@pytest.mark.fuzz
def test_script_test_harness_survives_any_case_long():
    _harness_property(LONG_EXAMPLES)()


# -- Fixed attacks from issue 11 that need the file system or odd streams -------------------------------------

def test_symlink_loops_and_odd_directories(tmp_path):
    lua = tmp_path / "lua"
    (lua / "networking.istio.io" / "VirtualService").mkdir(parents=True)
    (lua / "networking.istio.io" / "VirtualService" / "trafficRouting.lua").write_text("return obj.data")
    for name in ("a", "b"):
        (lua / name).symlink_to(".")  # before: an exponential walk
    (lua / "trafficRouting.lua").mkdir()  # before: a directory named like a script crashed the lookup
    status, stdout, stderr = check(["render", "-f", str(REPO / "samples" / "fulllink"), "--lua-dir", str(lua)])
    assert status == 0 and stdout
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "x.yaml").mkdir()  # a directory named like a manifest is not a file to read
    (manifests / "loop").symlink_to(".")
    (manifests / "vs.yaml").write_text((REPO / "samples" / "weighted-canary" / "reviews.yaml").read_text())
    status, stdout, stderr = check(["render", "-f", str(manifests)])
    assert status == 0 and stdout


def test_invalid_utf8_script_and_input(tmp_path):
    lua = tmp_path / "lua" / "networking.istio.io" / "VirtualService"
    lua.mkdir(parents=True)
    (lua / "trafficRouting.lua").write_bytes(b"return obj.data -- \xff\xfe")
    status, stdout, stderr = check(["render", "-f", str(REPO / "samples" / "fulllink"),
                                    "--lua-dir", str(tmp_path / "lua")])
    assert status == 1 and "not UTF-8" in stderr and "trafficRouting.lua" in stderr
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"apiVersion: v1\nkind: X\nmetadata: {name: \xff}\n")
    status, stdout, stderr = check(["validate", "-f", str(bad)])
    assert status == 1 and "bad.yaml" in stderr and "not UTF-8" in stderr


def test_duplicate_keys_name_file_document_line_and_key(tmp_path):
    manifest = tmp_path / "tr.yaml"
    manifest.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n"
                        "apiVersion: rollouts.kruise.io/v1alpha1\nkind: TrafficRouting\nmetadata: {name: t}\n"
                        "spec:\n  strategy:\n    weight: 10\n    weight: 20\n")
    for command in ("render", "validate", "plan"):
        status, stdout, stderr = check([command, "-f", str(manifest)])
        assert status == 1 and stdout == ""
        assert f"error: {manifest}: document 2: line 11: key 'weight' is given twice (first on line 10)" in stderr


@pytest.mark.parametrize("snippet,message", [
    (HOSTILE_SNIPPETS[0], "alias"),
    (HOSTILE_SNIPPETS[1], "nested more than"),
    (HOSTILE_SNIPPETS[4], "not a finite number"),
    (HOSTILE_SNIPPETS[5], "64 bits"),
    (HOSTILE_SNIPPETS[6], "binary"),
])
def test_hostile_yaml_is_a_clear_error_in_every_reading_command(snippet, message):
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n" + snippet
    for argv in (["render", "-f", "-"], ["restore", "-f", "-"], ["validate", "-f", "-"], ["plan", "-f", "-"],
                 ["diff", "-f", "-"], ["color", "-f", "-"], ["chain", "-f", "-"],
                 ["simulate", "-f", "-", "--request", "http://a/"], ["apply", "-f", "-", "--dry-run", "client"]):
        status, stdout, stderr = check(argv, text)
        assert status in (1, 2) and stdout == "" and "<stdin>: document 1" in stderr and message in stderr, \
            (argv, stderr)


def test_restore_never_prints_nan():
    body = {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "metadata": {
        "name": "r", "annotations": {"rollouts.kruise.io/original-spec-configuration": '{"spec": {"a": NaN}}'}},
        "spec": {}}
    status, stdout, stderr = check(["restore", "-f", "-", "-o", "json"], json.dumps(body))
    assert status == 1 and stdout == "" and "NaN" in stderr


def test_lua_configmap_is_read_as_safely_as_manifests(tmp_path):
    configmap = tmp_path / "cm.yaml"
    configmap.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n" + "  a: " + "[" * 200000)
    status, stdout, stderr = check(["render", "-f", str(REPO / "samples" / "fulllink"),
                                    "--lua-configmap", str(configmap)])
    assert status == 1 and "cm.yaml" in stderr and "nested more than" in stderr


def test_bad_request_urls_and_kubeconfigs(tmp_path):
    status, stdout, stderr = check(["simulate", "-f", str(REPO / "samples" / "fulllink"),
                                    "--request", "GET http://[::1/"])
    assert status == 1 and stdout == "" and stderr.startswith("error:")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_bytes(bytes(range(256)) * 4)
    status, stdout, stderr = check(["apply", "-f", str(REPO / "samples" / "fulllink"), "--kubeconfig",
                                    str(kubeconfig)])
    assert status == 1 and stdout == "" and "kubeconfig" in stderr


WRONG_TYPES = [("Rollout", ("spec", "strategy"), "abc"), ("VirtualService", ("spec", "gateways"), True),
               ("VirtualService", ("spec", "http"), "abc"), ("VirtualService", ("spec", "http", 0), 5),
               ("VirtualService", ("spec", "hosts"), {"a": 1}), ("Service", ("spec",), "abc"),
               ("Service", ("spec", "ports"), "x"), ("Service", ("spec", "selector"), [1]),
               ("Gateway", ("spec",), [1, 2]), ("Gateway", ("spec", "servers"), "x"),
               ("DestinationRule", ("spec", "subsets"), "x"), ("DestinationRule", ("spec", "subsets", 0), None),
               ("TrafficRouting", ("spec", "objectRef"), "x"), ("TrafficRouting", ("spec", "strategy", "matches"), 1),
               ("Deployment", ("spec", "template"), "x"), ("Deployment", ("spec", "template", "metadata", "labels"), 1),
               ("EnvoyFilter", ("spec", "configPatches"), "x"), ("FullLinkGray", ("spec",), "x"),
               ("FullLinkGray", ("spec", "services"), {"a": 1})]


def _set(body: dict, path: tuple, value: Any) -> bool:
    node = body
    for part in path[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return False
    if isinstance(node, dict) or (isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node)):
        node[path[-1]] = value
        return True
    return False


@pytest.mark.parametrize("kind,path,value", WRONG_TYPES, ids=lambda x: str(x))
def test_wrong_types_name_file_document_and_field(kind, path, value):
    for stream in (SAMPLE_STREAMS[-1], _documents(REPO / "samples" / "weighted-canary" / "reviews.yaml")):
        stream = copy.deepcopy(stream)
        if not any(d.get("kind") == kind and _set(d, path, value) for d in stream):
            continue
        text = yaml.safe_dump_all(stream, sort_keys=False)
        for argv in (["render", "-f", "-"], ["plan", "-f", "-"], ["validate", "-f", "-"], ["chain", "-f", "-"],
                     ["color", "-f", "-"], ["diff", "-f", "-"],
                     ["simulate", "-f", "-", "--request", "GET http://gateway.example.com/", "-H", "agent: pc"]):
            check(argv, text)


def test_argo_rollout_of_wrong_types_is_a_clear_error():
    # found by the long fuzz run: simulate read an Argo Rollout's template without its types checked (traceback)
    stream = [d for path in sorted((REPO / "samples" / "argo-rollouts" / "host-level").glob("*.yaml"))
              for d in _documents(path)]
    assert any(d.get("kind") == "Rollout" and _set(d, ("spec", "template"), "x") for d in stream)
    text = yaml.safe_dump_all(stream, sort_keys=False)
    for argv in (["simulate", "-f", "-", "--request", "GET http://gateway.example.com/"], ["render", "-f", "-"]):
        status, _stdout, stderr = check(argv, text)
        assert status == 1 and "spec.template: must be a map, got a string" in stderr, stderr


def test_odd_script_test_trees(tmp_path):
    vs = tmp_path / "a" / "networking.istio.io" / "VirtualService"
    (vs / "testdata" / "x.yaml").mkdir(parents=True)  # before: a directory named like a case crashed
    (vs / "trafficRouting.lua").write_text("return obj.data")
    (tmp_path / "a" / "loop1").symlink_to(".")
    (tmp_path / "a" / "loop2").symlink_to(".")
    (tmp_path / "b" / "trafficRouting.lua").mkdir(parents=True)  # before: a directory named like a script
    bad = tmp_path / "c" / "networking.istio.io" / "VirtualService"
    bad.mkdir(parents=True)
    (bad / "trafficRouting.lua").write_bytes(b"return obj.data -- \xff")  # before: UnicodeDecodeError
    for tree, expected in (("a", "no test cases"), ("b", "holds no trafficRouting.lua"), ("c", "not UTF-8")):
        status, stdout, stderr = check(["test", str(tmp_path / tree)])
        assert status == 1 and expected in stdout + stderr, (tree, stdout, stderr)
