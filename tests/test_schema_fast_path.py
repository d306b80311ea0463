"""The output check's fast path (issue 12, start-up): jsonschema-rs answers "valid" without importing
jsonschema (about 75 ms of ``graylane render``'s start-up); anything else goes to jsonschema, which decides
and explains. So the check is as strong as before only if jsonschema agrees with every "valid" of
jsonschema-rs: checked here on every schema'd document in the repository and on documents of every kind
mutated with values of every type at every path (more examples with ``-m fuzz``)."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz_cli import JSON_VALUES, _paths, _replace

from engine.checks.schemas import SCHEMA_NAMES, passes_compiled, schema_for, validator_for

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("GRAYLANE_FUZZ_EXAMPLES", "25")) * 8
LONG_EXAMPLES = int(os.environ.get("GRAYLANE_FUZZ_LONG_EXAMPLES", "400")) * 25


YAML_FILES = sorted(p for p in REPO.rglob("*.yaml") if ".git" not in p.parts)


def _schema_documents_of(path: Path) -> list[tuple[str, dict]]:
    found: list[tuple[str, dict]] = []
    try:
        documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, UnicodeDecodeError):
        return found
    stack = list(documents)
    while stack:  # test cases nest the objects (trafficRouting:, original:, expected: ...)
        value = stack.pop()
        if isinstance(value, dict):
            name = schema_for(value.get("apiVersion"), value.get("kind"))
            if name is not None:
                found.append((name, value))
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return found


@functools.cache
def documents() -> list[tuple[str, dict]]:
    """Every schema'd document of the repository (read when a test first needs them, not at collection:
    the suite's process stays small for the tests that fork it)."""
    return [found for path in YAML_FILES for found in _schema_documents_of(path)]


def assert_agrees(name: str, body) -> None:
    if passes_compiled(name, body):
        errors = [e.message for e in validator_for(name).iter_errors(body)]
        assert not errors, f"jsonschema-rs passes what jsonschema refuses ({name}): {errors[:3]}: {body!r}"[:2000]


def test_jsonschema_rs_is_installed_and_used():
    found = documents()
    assert {name for name, _ in found} >= {"virtualservice", "destinationrule", "trafficrouting"}
    assert any(passes_compiled(name, body) for name, body in found)
    assert set(SCHEMA_NAMES) >= {name for name, _ in found}


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_documents_of_the_repository(path):
    for name, body in _schema_documents_of(path):
        assert_agrees(name, body)


@pytest.mark.parametrize("name,body,valid", [
    ("virtualservice", {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                        "metadata": {"name": "r"}, "spec": {"hosts": ["r"], "http": [{"route": [
                            {"destination": {"host": "r"}, "weight": 100}]}]}}, True),
    ("virtualservice", {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                        "metadata": {"name": "r"}, "spec": {"hosts": ["r"], "http": [{"route": [
                            {"destination": {"host": "r"}, "weight": "100"}]}]}}, False),
    ("destinationrule", {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
                         "metadata": {"name": "r"}, "spec": {"host": "r", "subsets": [{"name": "Bad_Name"}]}},
     False),
])
def test_fast_path_answers(name, body, valid):
    assert passes_compiled(name, body) is valid
    assert (not list(validator_for(name).iter_errors(body))) is valid


def _settings(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=examples == EXAMPLES,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# Strings near the schemas' patterns (names, durations, percentages, header names), where the regex
# dialects of Rust and Python differ: "$" before a final newline, what "\s" and "." take.
PATTERN_TEXT = st.text(alphabet=st.sampled_from(list("aZ09-._%/:*µs !#\n\r\t\x1c\x85\xa0\u2028\ufeff")), max_size=8)
VALUES = st.one_of(JSON_VALUES, PATTERN_TEXT, st.sampled_from([1.0, 100.0, -0.0, 2 ** 63, True, 0, "1s", "10%"]))


@st.composite
def mutated(draw):
    name, body = draw(st.sampled_from(documents()))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(_paths(body)))
        body = _replace(body, path, draw(VALUES), delete=bool(path) and draw(st.booleans()))
    return name, body


@_settings(EXAMPLES)
@given(case=mutated())
def test_mutated_documents(case):
    assert_agrees(*case)


@pytest.mark.fuzz
@_settings(LONG_EXAMPLES)
@given(case=mutated())
def test_mutated_documents_long(case):
    assert_agrees(*case)
