"""The habits of the Kubernetes toolbox, across every command: -n, -o, --dry-run, version, completion, one
usage exit status with one-line messages, and "did you mean" for near-miss names. Runs the real graylane."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import REPO, SAMPLES, graylane_command, installed_program, run_graylane

USAGE = 2


def without_namespaces(tmp_path: Path, sample: str = "fulllink") -> Path:
    """A copy of a sample whose objects name no namespace (as many manifests in a repository do)."""
    target = tmp_path / sample
    target.mkdir()
    for path in (SAMPLES / sample).glob("*.yaml"):
        text = re.sub(r"(?m)^(\s*)namespace: default\n", "", path.read_text(encoding="utf-8"))
        (target / path.name).write_text(text, encoding="utf-8")
    return target


def assert_usage_mistake(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode == USAGE, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in lines[0]


# ------------------------------------------------------------------------------------------- exit statuses

@pytest.mark.parametrize("args, expected", [
    (["rendr", "-f", "samples/fulllink"], ["unknown command 'rendr'; did you mean render?"]),
    (["render", "-f", "samples/fulllink", "--stpe", "2"], ["unrecognized arguments: --stpe 2; did you mean --step?"]),
    (["render"], ["the following arguments are required: -f/--filename", "(see 'graylane render --help')"]),
    (["plan", "-f", "samples/fulllink", "-o", "tabel"], ["unknown value for -o/--output 'tabel'; did you mean table?"]),
    (["render", "-f", "samples/fulllink", "--step", "two"], ["--step: invalid int value: 'two'"]),
    (["new", "trafficroutng", "x"], ["unknown command 'trafficroutng'; did you mean trafficrouting?"]),
    (["completion", "tcsh"], ["unknown value for SHELL 'tcsh'"]),
    ([], ["the following arguments are required: COMMAND"]),
])
def test_usage_mistakes_exit_2_with_one_line(args: list, expected: list) -> None:
    assert_usage_mistake(run_graylane(*args), *expected)


def test_exit_statuses_of_the_readme_table(tmp_path: Path) -> None:
    """0 success, 1 an error graylane reports, 2 a usage mistake, 3 an --expect that does not hold; diff: 1 means
    changes, 2 an error."""
    assert run_graylane("render", "-f", "samples/fulllink").returncode == 0
    missing = run_graylane("render", "-f", "no-such.yaml")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == "error: no-such.yaml: no such file or directory\n"
    assert run_graylane("render", "--bogus", "-f", "samples/fulllink").returncode == USAGE
    expect = run_graylane("simulate", "-f", "samples/fulllink", "--request", "GET http://example.com/",
                          "--expect", "mocka=version=canary")
    assert expect.returncode == 3
    assert run_graylane("diff", "-f", "samples/fulllink").returncode == 1
    assert run_graylane("diff", "-f", "no-such.yaml").returncode == 2
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Exit status"):]
    for status in ("| `0` |", "| `1` |", "| `2` |", "| `3` |"):
        assert status in table


# ------------------------------------------------------------------------------------------------ -n

@pytest.mark.parametrize("command", [["render"], ["validate"], ["plan"], ["diff"], ["chain"],
                                     ["simulate", "--request", "GET http://example.com/"]])
def test_every_manifest_reading_command_takes_n(command: list, tmp_path: Path) -> None:
    result = run_graylane(*command, "-f", str(without_namespaces(tmp_path)), "-n", "shop")
    assert result.returncode in (0, 1), result.stderr  # diff exits 1 when something would change
    assert "error" not in result.stderr, result.stderr


def test_n_is_the_namespace_of_objects_that_name_none(tmp_path: Path) -> None:
    folder = without_namespaces(tmp_path)
    plain = run_graylane("render", "-f", str(folder), "-o", "json")
    assert plain.returncode == 0, plain.stderr
    assert all("namespace" not in item["metadata"] for item in json.loads(plain.stdout)["items"])
    shop = run_graylane("render", "-f", str(folder), "-n", "shop", "-o", "json")
    assert shop.returncode == 0, shop.stderr
    items = json.loads(shop.stdout)["items"]
    assert [item["metadata"]["namespace"] for item in items] == ["shop"] * 4
    assert list(items[0]["metadata"])[:2] == ["name", "namespace"]
    # objects that name a namespace keep it
    kept = run_graylane("render", "-f", "samples/fulllink", "-n", "shop", "-o", "json")
    assert {item["metadata"]["namespace"] for item in json.loads(kept.stdout)["items"]} == {"default"}


# ------------------------------------------------------------------------------------------------ -o

def test_o_name_prints_kind_group_and_name_as_kubectl() -> None:
    result = run_graylane("render", "-f", "samples/fulllink", "-o", "name")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("virtualservice.networking.istio.io/vs-mocka\n"
                             "destinationrule.networking.istio.io/dr-mocka\n"
                             "virtualservice.networking.istio.io/vs-mockb\n"
                             "destinationrule.networking.istio.io/dr-mockb\n")
    chain = run_graylane("chain", "-f", "samples/fulllink/fulllink.yaml", "-o", "name")
    assert chain.stdout.splitlines()[0] == "envoyfilter.networking.istio.io/mock-chain-coloring"


BAD_WEIGHTS = """\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 60}
    - {destination: {host: reviews, subset: v2}, weight: 30}
"""


@pytest.mark.parametrize("command", [
    ["validate", "-f", "-"],
    ["plan", "-f", "samples/weighted-canary"],
    ["simulate", "-f", "samples/fulllink", "--request", "GET http://example.com/"],
])
def test_reports_take_table_wide_json_yaml(command: list) -> None:
    outputs = {}
    for output in ("table", "wide", "json", "yaml", "text"):
        result = run_graylane(*command, "-o", output, input=BAD_WEIGHTS)
        assert result.returncode in (0, 1), result.stderr
        assert "Traceback" not in result.stderr
        outputs[output] = result.stdout
    assert outputs["text"] == outputs["table"]  # the old name of the table format still works
    documents, data = list(yaml.safe_load_all(outputs["yaml"])), json.loads(outputs["json"])
    assert documents in (data, [data])  # plan: one YAML document per step


def test_validate_wide_adds_the_check_name_and_object() -> None:
    table = run_graylane("validate", "-f", "-", "-o", "table", input=BAD_WEIGHTS).stdout.splitlines()
    wide = run_graylane("validate", "-f", "-", "-o", "wide", input=BAD_WEIGHTS).stdout.splitlines()
    assert table and len(wide) == len(table)
    first = json.loads(run_graylane("validate", "-f", "-", "-o", "json", input=BAD_WEIGHTS).stdout)[0]
    assert wide[0].startswith(f"{first['severity']} {first['code']} {first['check']} ")
    assert wide[0].endswith(f"({first['object']})")


# ------------------------------------------------------------------------------------------- --dry-run

def test_dry_run_alone_means_client() -> None:
    from engine.cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args(["apply", "-f", "x", "--dry-run"]).dry_run == "client"
    assert parser.parse_args(["apply", "-f", "x", "--dry-run=server"]).dry_run == "server"
    assert parser.parse_args(["apply", "-f", "x"]).dry_run == "none"
    assert parser.parse_args(["restore", "-f", "x", "--cluster", "--dry-run"]).dry_run == "client"


def _subcommands(parser) -> dict:
    import argparse

    return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def test_a_named_command_gets_the_same_parser_as_from_the_whole_one() -> None:
    """main() builds only the named command's parser (start-up); the table it reads must name every command,
    and each command's parser must be the one the whole parser has (same flags, same help)."""
    from engine.cli.main import COMMAND_MODULES, build_parser

    whole = _subcommands(build_parser())
    assert set(whole) == {c for commands in COMMAND_MODULES.values() for c in commands}
    for command, full in whole.items():
        alone = _subcommands(build_parser(command=command))
        assert alone[command].format_help() == full.format_help(), command
    for args in (["restore", "-f", "x", "--cluster", "--dry-run"], ["render", "-f", "x", "--all-steps"]):
        assert vars(build_parser(command=args[0]).parse_args(args)).keys() == vars(
            build_parser().parse_args(args)).keys()


# ------------------------------------------------------------------------------------- did you mean

def test_a_near_miss_reference_gets_a_suggestion(tmp_path: Path) -> None:
    folder = tmp_path / "typo"
    shutil.copytree(SAMPLES / "fulllink", folder)
    routing = folder / "trafficrouting.yaml"
    routing.write_text(routing.read_text(encoding="utf-8").replace("name: vs-mocka\n", "name: vs-mocak\n"),
                       encoding="utf-8")
    rendered = run_graylane("render", "-f", str(folder))
    assert rendered.returncode == 1 and rendered.stdout == ""
    assert rendered.stderr.rstrip().endswith("references VirtualService/vs-mocak (networking.istio.io/v1beta1), "
                                             "which is not among the inputs; did you mean vs-mocka?")
    validated = run_graylane("validate", "-f", str(folder))
    assert "VirtualService/vs-mocak (networking.istio.io/v1beta1) is not among the inputs; did you mean " \
           "vs-mocka?" in validated.stdout
    gateway = run_graylane("simulate", "-f", "samples/fulllink", "--request", "GET http://example.com/",
                           "--gateway", "sample-gatewy")
    assert gateway.returncode == 1
    assert gateway.stderr.rstrip().endswith("did you mean sample-gateway?")


def test_names_are_suggested_only_when_close() -> None:
    from engine.routing.names import closest, did_you_mean

    assert closest("vs-mocak", ["vs-mocka", "vs-mockb", "reviews"]) == ["vs-mocka"]
    assert closest("rendr", ["render", "restore"]) == ["render"]
    assert did_you_mean("payments", ["vs-mocka", "reviews"]) == ""
    assert did_you_mean("x", []) == ""


# ---------------------------------------------------------------------------------- version, completion

def test_version_and_dash_dash_version() -> None:
    from importlib import metadata

    text = run_graylane("version")
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert lines[0] == f"graylane {metadata.version('graylane')}"
    assert lines[1].startswith("Python 3.")
    assert lines[2].startswith("Lua runtime: LuaJIT 2.1.") and lines[2].endswith(" (lupa.luajit21)")
    assert lines[3] == f"lupa {metadata.version('lupa')}"
    assert run_graylane("--version").stdout == text.stdout
    data = json.loads(run_graylane("version", "-o", "json").stdout)
    assert set(data) == {"graylane", "python", "lua", "lupa"}


def complete_in_bash(line: str) -> list[str]:
    """What a real bash offers for ``line`` with graylane's completion script loaded (TAB at the end)."""
    script = run_graylane("completion", "bash").stdout
    driver = (script + "\nCOMP_LINE=$1; COMP_POINT=${#COMP_LINE}; read -r -a COMP_WORDS <<< \"$COMP_LINE\"; "
              "[[ $COMP_LINE == *' ' ]] && COMP_WORDS+=(''); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); "
              "_python_argcomplete graylane; printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    path = Path(graylane_command()[0]).parent
    result = subprocess.run(["bash", "-c", driver, "bash", line], capture_output=True, text=True, cwd=REPO,
                            env={"PATH": f"{path}:/usr/bin:/bin", "HOME": str(REPO)}, timeout=60)
    assert result.returncode == 0, result.stderr
    return [word.strip() for word in result.stdout.splitlines() if word.strip()]


def test_bash_completion_completes_commands_flags_and_choices() -> None:
    assert complete_in_bash("graylane ren") == ["render"]
    assert "--step" in complete_in_bash("graylane render --st")
    assert complete_in_bash("graylane plan -o ht") == ["html"]


def test_fish_completion_completes_commands_and_choices() -> None:
    fish = installed_program("fish", package="fish")
    path = Path(graylane_command()[0]).parent
    result = subprocess.run([fish, "--no-config", "-c", "graylane completion fish | source; "
                             "complete -C 'graylane ren'; complete -C 'graylane plan -o ht'"],
                            capture_output=True, text=True, cwd=REPO, timeout=60,
                            env={"PATH": f"{path}:/usr/bin:/bin", "HOME": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["render", "html"]


def test_zsh_completion_script_is_valid_zsh() -> None:
    zsh = installed_program("zsh", package="zsh")
    script = run_graylane("completion", "zsh")
    assert script.returncode == 0 and "#compdef graylane" in script.stdout
    syntax = subprocess.run([zsh, "-n"], input=script.stdout, capture_output=True, text=True, timeout=60)
    assert syntax.returncode == 0, syntax.stderr
