"""JSON Schemas (draft 2020-12) for the objects graylane reads and writes.

The schemas live next to this module as ``<name>.json`` package data and are always read through
:mod:`importlib.resources` (never relative to the working directory). This module only returns
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
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

__all__ = [
    "SCHEMA_NAMES",
    "SCHEMAS_BY_GROUP_KIND",
    "SCHEMAS_BY_API_VERSION_KIND",
    "load_schema",
    "schema_for",
    "validator_for",
    "passes_compiled",
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
    text = resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema ``name`` (one of :data:`SCHEMA_NAMES`).

    The file is read once; each call returns a fresh deep copy, so callers may mutate it.
    Raises :class:`KeyError` for an unknown name.
    """
    return copy.deepcopy(_load(name))


@lru_cache(maxsize=None)
def validator_for(name: str) -> Draft202012Validator:
    """A :class:`jsonschema.Draft202012Validator` for schema ``name``, built once and reused (jsonschema is
    imported here, on first use: reading a schema's types, as every command does, does not need it)."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_load(name))


@lru_cache(maxsize=None)
def _compiled(name: str) -> Any:
    """jsonschema-rs's validator for schema ``name``, or None where the package is missing or refuses it."""
    try:
        import jsonschema_rs

        return jsonschema_rs.Draft202012Validator(_load(name), validate_formats=False)
    except Exception:  # noqa: BLE001 - then jsonschema alone decides, as before
        return None


def passes_compiled(name: str, instance: Any) -> bool:
    """Whether jsonschema-rs (compiled: about 20 ms to import and build, where importing jsonschema costs
    about 75 ms, most of ``graylane render``'s start-up) finds ``instance`` valid against schema ``name``.

    Only True is an answer: False means "ask :func:`validator_for`", which decides and explains, so the
    checks stay jsonschema's. tests/test_schema_fast_path.py checks that jsonschema agrees with every True."""
    validator = _compiled(name)
    if validator is None:
        return False
    try:
        return bool(validator.is_valid(instance))
    except Exception:  # noqa: BLE001 - values it cannot take: jsonschema decides
        return False
