"""Where traffic-routing scripts come from, and which one wins.

Keys follow Kruise: ``<group>/<Kind>`` for custom network resources (core group: just ``<Kind>``) and
``trafficrouting_ingress/<classType>`` for ingress-annotation scripts; in a ConfigMap
``lua.traffic.routing.<Kind>.<group>`` (core group: ``<Kind>.v1``, see ``configmap_key``). Layers are searched in order:
user directories, then a ConfigMap, then the built-in tree. Unlike Kruise (where the built-in script
wins, so users cannot change e.g. the gray pod label), a user script replaces a built-in one on purpose.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional

import yaml

from engine.errors import InvalidInputError, ScriptNotFoundError
from engine.lua.sandbox import Script
from engine.records import Record

if TYPE_CHECKING:  # walk_tree takes any Traversable; importlib.abc costs start-up an import
    from importlib.abc import Traversable

SCRIPT_FILE = "trafficRouting.lua"
INGRESS_DIR = "trafficrouting_ingress"
CONFIGMAP_PREFIX = "lua.traffic.routing."
LUA_PATH_ENV = "GRAYLANE_LUA_PATH"


def resource_key(api_version: str, kind: str) -> str:
    """``networking.istio.io/v1beta1`` + ``VirtualService`` -> ``networking.istio.io/VirtualService``."""
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    return f"{group}/{kind}" if group else kind


def ingress_key(class_type: str) -> str:
    return f"{INGRESS_DIR}/{class_type}"


# Kruise takes the "group" of a ConfigMap key as the apiVersion's first path segment
# (customNetworkProvider.getLuaScript: ``strings.Split(ref.APIVersion, "/")[0]``), which for the core group's
# ``v1`` is the version: a Service's script is under ``lua.traffic.routing.Service.v1``.
CORE_GROUP_IN_CONFIGMAP = "v1"


def configmap_key(key: str) -> str:
    """Kruise's ConfigMap data key: ``lua.traffic.routing.<Kind>.<group>`` (core group: ``<Kind>.v1``, as
    Kruise looks it up; ingress: ``ingress.<class>``)."""
    if key.startswith(INGRESS_DIR + "/"):
        return f"{CONFIGMAP_PREFIX}ingress.{key.split('/', 1)[1]}"
    group, _, kind = key.rpartition("/")
    return f"{CONFIGMAP_PREFIX}{kind}.{group or CORE_GROUP_IN_CONFIGMAP}"


def _relative_path(key: str) -> str:
    if key.startswith(INGRESS_DIR + "/"):
        return f"{key}.lua"
    return f"{key}/{SCRIPT_FILE}"


class ScriptLayer(Record):
    """One place scripts come from; ``scripts`` maps key -> Script; ``where``: how a key is looked up here, for
    the not-found message."""

    __slots__ = ("description", "scripts", "where")

    def __init__(self, description: str, scripts: Optional[dict[str, Script]] = None, where: Optional[str] = None):
        self.description, self.scripts, self.where = description, {} if scripts is None else scripts, where

    def describe(self, key: str) -> str:
        if self.where:
            return self.where.format(key=key, path=_relative_path(key), cm_key=configmap_key(key))
        return self.description


class ScriptLibrary:
    """Ordered layers; the first layer holding a key wins."""

    def __init__(self, layers: Iterable[ScriptLayer]):
        self.layers = list(layers)

    def find(self, key: str) -> Script:
        for layer in self.layers:
            script = layer.scripts.get(key)
            if script is not None:
                return script
        raise ScriptNotFoundError(key, [layer.describe(key) for layer in self.layers])

    def keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for layer in self.layers:
            seen.update(dict.fromkeys(layer.scripts))
        return sorted(seen)


MAX_SCRIPT_BYTES = 4 * 1024 * 1024


def walk_tree(root: Traversable, prefix: str = "", seen: Optional[set] = None) -> Iterator[tuple[str, Traversable]]:
    """(relative name, file) below ``root`` in name order, skipping testdata/ and __pycache__/; each real
    directory once (symbolic links to ``.`` would otherwise make the walk exponential), and only regular
    files (never a FIFO or a device)."""
    seen = set() if seen is None else seen
    if isinstance(root, Path):
        real = os.path.realpath(root)
        if real in seen:
            return
        seen.add(real)
    try:
        entries = sorted(root.iterdir(), key=lambda e: e.name)
    except OSError as exc:
        raise InvalidInputError(f"cannot read directory: {exc.strerror or exc}", source=str(root)) from None
    for entry in entries:
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            if entry.name not in ("testdata", "__pycache__"):
                yield from walk_tree(entry, name + "/", seen)
        elif entry.is_file():
            yield name, entry


def read_script(entry: Traversable, origin: str) -> str:
    """A script file's text: UTF-8 and at most MAX_SCRIPT_BYTES, else an error naming the file."""
    try:
        if isinstance(entry, Path) and entry.stat().st_size > MAX_SCRIPT_BYTES:
            raise InvalidInputError(f"larger than {MAX_SCRIPT_BYTES // 1024 ** 2} MiB", source=origin)
        return entry.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"not UTF-8 text (invalid byte at offset {exc.start})", source=origin) from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read: {exc.strerror or exc}", source=origin) from None


def scripts_in_tree(root: Traversable, origin_prefix: str) -> dict[str, Script]:
    """Every ``<key>/trafficRouting.lua`` and ``trafficrouting_ingress/<class>.lua`` below ``root``."""
    found: dict[str, Script] = {}
    for relative, entry in walk_tree(root):
        if relative.endswith("/" + SCRIPT_FILE) or relative == SCRIPT_FILE:
            key = relative[: -len(SCRIPT_FILE) - 1]
        elif relative.startswith(INGRESS_DIR + "/") and relative.endswith(".lua") and relative.count("/") == 1:
            key = relative[:-4]
        else:
            continue
        if key:
            origin = f"{origin_prefix}{relative}"
            found[key] = Script(key, read_script(entry, origin), origin)
    return found


def builtin_root() -> Path:
    """The built-in tree: package data ``engine.lua_configuration`` (``lua_configuration/`` in a checkout),
    found through the import system, not the working directory. Its directory itself, not
    importlib.resources (whose imports cost start-up about 8 ms)."""
    from importlib.util import find_spec  # found, not imported: it is data, no code

    spec = find_spec("engine.lua_configuration")
    if spec is None or not spec.submodule_search_locations:
        raise InvalidInputError("the built-in scripts are not installed", source="engine.lua_configuration")
    return Path(next(iter(spec.submodule_search_locations)))


def builtin_layer() -> ScriptLayer:
    return ScriptLayer("built-in scripts", scripts_in_tree(builtin_root(), "builtin:"),
                      where="built-in {path}")


def directory_layer(directory: str) -> ScriptLayer:
    if not os.path.isdir(directory):
        raise InvalidInputError("script directory does not exist", source=directory)
    path = Path(directory)
    return ScriptLayer(f"directory {directory}", scripts_in_tree(path, f"{path}/"),
                      where=f"{path}/{{path}}")


def configmap_layer(text: str, source: str) -> ScriptLayer:
    """Scripts from a ConfigMap manifest (Kruise's ``kruise-rollout-configuration`` format)."""
    try:
        documents = list(yaml.safe_load_all(text))
    except (yaml.YAMLError, RecursionError) as exc:
        raise InvalidInputError(f"not valid YAML: {exc}", source=source) from None
    return configmap_documents_layer(documents, source)


def configmap_documents_layer(documents: list[Any], source: str) -> ScriptLayer:
    """Scripts from the parsed documents of a ConfigMap manifest."""
    scripts: dict[str, Script] = {}
    for index, document in enumerate(documents, 1):
        if document is None:
            continue
        if not isinstance(document, dict) or document.get("kind") != "ConfigMap":
            raise InvalidInputError("expected a ConfigMap", source=source, document=index, field="kind")
        data = document.get("data") or {}
        if not isinstance(data, dict):
            raise InvalidInputError("must be a map of strings", source=source, document=index, field="data")
        data_keys: dict[str, str] = {}
        for data_key, value in data.items():
            key = _key_from_configmap(str(data_key))
            if key is None:
                continue
            if not isinstance(value, str):
                raise InvalidInputError("script must be a string", source=source, document=index,
                                        field=f"data.{data_key}")
            if key in data_keys:  # Kruise's core-group key and graylane's old one for the same kind
                raise InvalidInputError(f"{data_keys[key]} and {data_key} are both the script for {key}; keep "
                                        f"{configmap_key(key)}", source=source, document=index,
                                        field=f"data.{data_key}")
            data_keys[key] = str(data_key)
            scripts[key] = Script(key, value, f"{source} (ConfigMap key {data_key})")
    return ScriptLayer(f"ConfigMap {source}", scripts, where=f"ConfigMap {source} key {{cm_key}}")


def _key_from_configmap(data_key: str) -> Optional[str]:
    if not data_key.startswith(CONFIGMAP_PREFIX):
        return None
    rest = data_key[len(CONFIGMAP_PREFIX):]
    kind, _, group = rest.partition(".")
    if kind == "ingress" and group:
        return ingress_key(group)
    # ``<Kind>.v1`` is Kruise's key for a core-group kind; a bare ``<Kind>`` is graylane's older form of it.
    return f"{group}/{kind}" if group and group != CORE_GROUP_IN_CONFIGMAP else kind


def lua_path_from_env() -> list[str]:
    value = os.environ.get(LUA_PATH_ENV, "")
    return [part for part in value.split(os.pathsep) if part]
