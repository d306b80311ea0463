"""JSON Schemas (draft 2020-12) for the objects graylane reads and writes.

The schemas live next to this module as ``<name>.json`` package data and are read from this module's own
directory (never relative to the working directory; plain ``open``, as :mod:`importlib.resources` costs a
command's start-up about 8 ms of imports). This module only returns
data: it raises no custom errors; validating a document is left to the caller, e.g.::

    from engine.checks.schemas import schema_for, validator_for

    name = schema_for(doc["apiVersion"], doc["kind"])
    if name is not None:
        errors = sorted(validator_for(name).iter_errors(doc), key=lambda e: list(e.absolute_path))

Schema names and what they cover:

``virtualservice``, ``destinationrule``, ``gateway``
    networking.istio.io v1alpha3 / v1beta1 / v1 (one spec shared by the three versions).
``envoyfilter``
    networking.istio.io/v1alpha3 EnvoyFilter (its only served version).
``trafficrouting``
    rollouts.kruise.io/v1alpha1 TrafficRouting.
``rollout``
    rollouts.kruise.io/v1beta1 Rollout.
``rollout-v1alpha1``
    rollouts.kruise.io/v1alpha1 Rollout (integer step ``weight``).
``fulllinkgray``
    graylane.io/v1alpha1 FullLinkGray (graylane's own full-link gray spec, see README.md (full-link section)).
"""

from __future__ import annotations

import copy
import json
import os
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # imported where a validator is built: a valid document never needs it (fast_validator_for)
    from jsonschema import Draft202012Validator

__all__ = [
    "SCHEMA_NAMES",
    "SCHEMAS_BY_GROUP_KIND",
    "SCHEMAS_BY_API_VERSION_KIND",
    "load_schema",
    "shared_schema",
    "schema_for",
    "validator_for",
    "fast_validator_for",
]

#: Every schema shipped in this package (file ``<name>.json``).
SCHEMA_NAMES: tuple[str, ...] = (
    "virtualservice",
    "destinationrule",
    "envoyfilter",
    "gateway",
    "trafficrouting",
    "rollout",
    "rollout-v1alpha1",
    "fulllinkgray",
)

#: Exact (apiVersion, kind) -> schema name, for the versions each schema accepts.
SCHEMAS_BY_API_VERSION_KIND: Mapping[tuple[str, str], str] = {
    **{
        (f"networking.istio.io/{version}", kind): name
        for version in ("v1alpha3", "v1beta1", "v1")
        for kind, name in (
            ("VirtualService", "virtualservice"),
            ("DestinationRule", "destinationrule"),
            ("Gateway", "gateway"),
        )
    },
    ("networking.istio.io/v1alpha3", "EnvoyFilter"): "envoyfilter",
    ("rollouts.kruise.io/v1alpha1", "TrafficRouting"): "trafficrouting",
    ("rollouts.kruise.io/v1beta1", "Rollout"): "rollout",
    ("rollouts.kruise.io/v1alpha1", "Rollout"): "rollout-v1alpha1",
    ("graylane.io/v1alpha1", "FullLinkGray"): "fulllinkgray",
}

#: (API group, kind) -> schema name for the group's current version. A document whose apiVersion
#: is not one the schema accepts still maps here, and the schema then reports the bad apiVersion.
SCHEMAS_BY_GROUP_KIND: Mapping[tuple[str, str], str] = {
    ("networking.istio.io", "VirtualService"): "virtualservice",
    ("networking.istio.io", "DestinationRule"): "destinationrule",
    ("networking.istio.io", "EnvoyFilter"): "envoyfilter",
    ("networking.istio.io", "Gateway"): "gateway",
    ("rollouts.kruise.io", "TrafficRouting"): "trafficrouting",
    ("rollouts.kruise.io", "Rollout"): "rollout",
    ("graylane.io", "FullLinkGray"): "fulllinkgray",
}


def schema_for(api_version: str, kind: str) -> str | None:
    """Name of the schema for a document's ``apiVersion`` and ``kind``, or ``None`` if unknown.

    An exact (apiVersion, kind) match wins (so ``rollouts.kruise.io/v1alpha1`` Rollouts get
    ``rollout-v1alpha1``); otherwise the API group decides, so that e.g.
    ``networking.istio.io/v2`` VirtualServices are checked, and rejected, by ``virtualservice``.
    """
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return None
    exact = SCHEMAS_BY_API_VERSION_KIND.get((api_version, kind))
    if exact is not None:
        return exact
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    return SCHEMAS_BY_GROUP_KIND.get((group, kind))


@lru_cache(maxsize=None)
def _load(name: str) -> Mapping[str, Any]:
    if name not in SCHEMA_NAMES:
        raise KeyError(f"unknown schema {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    with open(os.path.join(os.path.dirname(__file__), f"{name}.json"), encoding="utf-8") as file:
        return json.load(file)


def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema ``name`` (one of :data:`SCHEMA_NAMES`).

    The file is read once; each call returns a fresh deep copy, so callers may mutate it.
    Raises :class:`KeyError` for an unknown name.
    """
    return copy.deepcopy(_load(name))


def shared_schema(name: str) -> Mapping[str, Any]:
    """The parsed schema ``name``, read once and shared by every caller, who must not change it: for readers,
    which need no copy (a deep copy of a VirtualService's schema costs about 5 ms)."""
    return _load(name)


@lru_cache(maxsize=None)
def validator_for(name: str) -> Draft202012Validator:
    """A :class:`jsonschema.Draft202012Validator` for schema ``name``, built once and reused."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_load(name))


def _float_multiple_of(schema: Any) -> bool:
    """Whether ``schema`` has a ``multipleOf`` that is not an integer, where the two validators disagree
    (jsonschema divides in floating point: 0.07 is not a multiple of 0.01 for it; jsonschema-rs says it is)."""
    if isinstance(schema, dict):
        value = schema.get("multipleOf")
        if isinstance(value, float) and not value.is_integer():
            return True
        return any(_float_multiple_of(item) for item in schema.values())
    if isinstance(schema, list):
        return any(_float_multiple_of(item) for item in schema)
    return False


@lru_cache(maxsize=None)
def fast_validator_for(name: str) -> Any:
    """A compiled validator (jsonschema-rs) for schema ``name``, or None where it could judge differently.

    Its ``is_valid`` answers in microseconds what jsonschema answers in milliseconds (400 ms for a
    VirtualService of 1,000 http rules), so a valid document, the common case, costs next to nothing; the
    errors of an invalid one, with their paths and messages, still come from :func:`validator_for`.
    tests/test_schemas.py checks that it never calls valid what jsonschema calls invalid.
    """
    schema = _load(name)
    if _float_multiple_of(schema):
        return None
    import jsonschema_rs  # here, not at import: only commands that check a document pay for loading it

    return jsonschema_rs.validator_for(schema, validate_formats=False)
