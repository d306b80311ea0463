"""``graylane test --update``: rewrite a case's ``expected:`` from what the script returns now.

Only the ``expected:`` block of the case file is replaced; comments, the routing and the original object keep
their text, so a snapshot update shows up in version control as exactly the change it makes.
"""
from __future__ import annotations

import copy

import yaml

from engine.documents import dump_yaml
from engine.errors import InvalidInputError
from engine.routing.script_input import ORIGINAL_ANNOTATION, OriginalState

EXPECTED_KEY = "expected"


def expected_object(original: dict, result: OriginalState) -> dict:
    """The object as a case's ``expected:`` lists it: the original with the script's spec, labels and annotations
    (no stored-original annotation, which the harness does not compare)."""
    body = copy.deepcopy(original)
    metadata = {key: value for key, value in (body.get("metadata") or {}).items()
                if key not in ("labels", "annotations")}
    if result.labels:
        metadata["labels"] = copy.deepcopy(result.labels)
    annotations = {k: v for k, v in result.annotations.items() if k != ORIGINAL_ANNOTATION}
    if annotations:
        metadata["annotations"] = copy.deepcopy(annotations)
    body["metadata"] = metadata
    body["spec"] = copy.deepcopy(result.spec)
    return body


def replace_expected(text: str, expected: list[dict], source: str) -> str:
    """``text`` (a case file) with its top-level ``expected:`` set to ``expected``; added at the end if absent."""
    block = dump_yaml([{EXPECTED_KEY: expected}])
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"not valid YAML: {exc}", source=source) from None
    if not isinstance(root, yaml.MappingNode):
        raise InvalidInputError("a case must be a map", source=source)
    for key, value in root.value:
        if key.value == EXPECTED_KEY:
            start, end = key.start_mark.index, value.end_mark.index
            lines = text[start:end].split("\n")
            tail: list[str] = []  # YAML counts the blank and comment lines after a block into it: keep them
            while len(lines) > 1 and (not lines[-1].strip() or lines[-1].lstrip().startswith("#")):
                tail.insert(0, lines.pop())
            rest = text[end:]
            if not tail and rest.startswith("\n"):  # a flow value (expected: []) ends before its newline
                rest = rest[1:]
            return text[:start] + block + "\n".join(tail) + rest
    separator = "" if text.endswith("\n") or not text else "\n"
    return text + separator + block

