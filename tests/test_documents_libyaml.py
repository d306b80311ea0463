"""libyaml reads manifests (issue 12: the pure-Python loader made ``simulate`` of a 1,000-service mesh take
20 s), but the outcome must be the pure loader's in every case: the same values where it accepts, its
exact message where it refuses. ``load_stream`` reads with libyaml and falls back to the pure loader on any
problem, so what must hold is: whatever libyaml accepts, the pure loader accepts with equal values.

Checked differentially over every YAML file in the repository, the fuzz suite's hostile snippets, broken
samples and random YAML-like text (more examples with ``-m fuzz``)."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz_cli import HOSTILE_SNIPPETS, INPUTS

from engine import documents
from engine.errors import InvalidInputError

REPO = Path(__file__).resolve().parent.parent
REPO_YAML = sorted(p for p in REPO.rglob("*.y*ml") if ".git" not in p.parts and p.suffix in (".yaml", ".yml"))
EXAMPLES = int(os.environ.get("GRAYLANE_FUZZ_EXAMPLES", "25")) * 8
LONG_EXAMPLES = int(os.environ.get("GRAYLANE_FUZZ_LONG_EXAMPLES", "400")) * 25
YAML_ALPHABET = list("ab01 .:-[]{}&*!|>'\"#%@`\t\n,?\\~=<+\x85\u00a0\u2028\ufeff\x00e") + ["\ud7ff", "\U0001F600"]


def _same(left, right) -> bool:
    """Equal values of equal types all the way down (so 1 and 1.0 and True differ), NaN-free by the rules."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return list(left) == list(right) and all(_same(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(_same(a, b) for a, b in zip(left, right))
    if isinstance(left, float):
        return left == right and math.copysign(1, left) == math.copysign(1, right)
    return left == right


def _outcome(read, text: str):
    try:
        return "value", read(text)
    except InvalidInputError as error:
        return "error", str(error)


def _reference(text: str):
    """What the pure-Python loader alone makes of the text (load_stream before libyaml)."""
    def read(text: str):
        try:
            return documents._read(documents._Loader, text, "in.yaml")
        except yaml.YAMLError as exc:
            raise InvalidInputError(documents._yaml_problem(exc), source="in.yaml", document=exc.document) from None
    return _outcome(read, text)


def assert_as_reference(text: str) -> None:
    if documents._libyaml_reads(text):
        try:
            fast = documents._read(documents._FastLoader, text, "in.yaml")
        except Exception:  # noqa: BLE001 - load_stream falls back to the pure loader then
            fast = None
        if fast is not None:
            kind, value = _reference(text)
            assert kind == "value", f"libyaml accepts what the pure loader refuses ({value}): {text!r}"
            assert _same(fast, value), text
    got, reference = _outcome(lambda t: documents.load_stream(t, "in.yaml"), text), _reference(text)
    assert got[0] == reference[0] and (_same(got[1], reference[1]) if got[0] == "value" else got[1] == reference[1])


def test_libyaml_is_used_where_it_limits_nesting():
    """PyYAML 6.0.4 (the declared minimum) bundles libyaml 0.2.6, which refuses more than 1,000 levels;
    PyYAML 6.0.3 bundles 0.2.5, which composes any depth recursively in C and so is not used."""
    import yaml._yaml
    limits = yaml.__with_libyaml__ and yaml._yaml.get_version() >= (0, 2, 6)
    assert documents._FAST == limits
    assert documents._FAST, "the declared PyYAML (>=6.0.4) has a libyaml that limits nesting"


def test_without_libyaml_the_pure_loader_reads_alone():
    code = ("import sys, yaml.cyaml; sys.modules['yaml.cyaml'] = None\n"
            "from engine import documents\n"
            "assert not documents._FAST\n"
            "print(documents.load_stream('a: [1, x]', 'f'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0 and done.stdout == "[{'a': [1, 'x']}]\n", done.stderr


@pytest.mark.parametrize("path", REPO_YAML, ids=lambda p: str(p.relative_to(REPO)))
def test_every_yaml_file_of_the_repository(path):
    assert_as_reference(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("snippet", HOSTILE_SNIPPETS)
def test_hostile_snippets(snippet):
    assert_as_reference(snippet)
    assert_as_reference("apiVersion: v1\nkind: ConfigMap\n" + snippet)


@pytest.mark.parametrize("text,message", [
    ("a: 1\nb:\n  c: 2\n  c: 3\n", "in.yaml: document 1: line 4: key 'c' is given twice (first on line 3)"),
    ("x: 1\n---\n" + "a: " + "[" * 301 + "]" * 301, "in.yaml: document 2: line 3: nested more than 300 levels deep"),
    ("- " * 400 + "x", "in.yaml: document 1: line 1: nested more than 300 levels deep"),
    ("a: [" * 2000, "in.yaml: document 1: line 1: nested more than 300 levels deep"),
    ("a: &a [*a]", "in.yaml: document 1: nested more than 300 levels deep (through YAML aliases?)"),
])
def test_refusals_keep_the_pure_loaders_messages(text, message):
    with pytest.raises(InvalidInputError) as caught:
        documents.load_stream(text, "in.yaml")
    assert str(caught.value) == message
    assert_as_reference(text)


def test_nesting_at_the_limit_is_read():
    text = "[" * 299 + "]" * 299
    value = documents.load_stream(text, "in.yaml")[0]
    for _ in range(298):
        value = value[0]
    assert value == []


def _settings(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=examples == EXAMPLES,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


YAML_TOKENS = ["a", "b: ", "- ", "\n", "\n  ", "\n    ", " ", "'", '"', "''", "&a ", "*a", "? ", ": ", "---", "...",
               "\n---\n", "#c", " #c", "|", ">", "|-", ">+", "|2", "{", "}", "[", "]", ", ", ",", "\\", "\\u00e9",
               "\\x41", "\\/", "\\N", "\\_", "\u2028", "\x85", "\r\n", "\r", "1", "0x1F", "0o17", "017", "1_000",
               "1e3", ".5", "-.inf", "~", "null", "yes", "On", "=", "<<: ", "%YAML 1.1\n", "%TAG ! x\n", "@", "`",
               "\ufeff", "\u00a0", "\U0001F600", "\x00", "\x7f", ":", "-", "?", "2001-12-14", "12:30:00", "1:20"]
YAML_LIKE = st.one_of(st.text(alphabet=st.sampled_from(YAML_ALPHABET), max_size=60),
                      st.lists(st.sampled_from(YAML_TOKENS), max_size=30).map("".join))


@_settings(EXAMPLES)
@given(text=st.one_of(INPUTS, YAML_LIKE))
def test_any_text_reads_as_the_pure_loader_reads_it(text):
    assert_as_reference(text)


@pytest.mark.fuzz
@_settings(LONG_EXAMPLES)
@given(text=st.one_of(INPUTS, YAML_LIKE))
def test_any_text_reads_as_the_pure_loader_reads_it_long(text):
    assert_as_reference(text)
