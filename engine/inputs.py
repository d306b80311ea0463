"""The file-system edge: reads manifests and script directories named on the command line."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable, Optional

from engine.documents import Document, default_namespace, parse_documents
from engine.errors import InvalidInputError
from engine.lua.sandbox import DEFAULT_MAX_MEMORY, DEFAULT_TIMEOUT, LuaSandbox
from engine.lua.scripts import (ScriptLayer, ScriptLibrary, builtin_layer, configmap_layer, directory_layer,
                      lua_path_from_env)

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        raise InvalidInputError("no such file or directory", source=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read: {exc}", source=path) from None


def manifest_files(path: str) -> list[str]:
    """A file as itself; a directory as every YAML/JSON file below it, in a stable order."""
    if path == "-" or not os.path.isdir(path):
        return [path]
    found = [str(p) for p in sorted(Path(path).rglob("*"))
             if p.is_file() and p.suffix in MANIFEST_SUFFIXES and "testdata" not in p.parts]
    if not found:
        raise InvalidInputError("directory holds no .yaml, .yml or .json files", source=path)
    return found


def read_documents(paths: Iterable[str], namespace: Optional[str] = None) -> list[Document]:
    """Every document of the files, directories or ``-`` given; ``namespace`` (``-n``) goes to those that name
    none."""
    documents: list[Document] = []
    stdin_used = False
    for path in paths:
        for file in manifest_files(path):
            if file == "-":
                if stdin_used:
                    raise InvalidInputError("standard input can be read only once", source="-")
                stdin_used = True
            documents.extend(parse_documents(read_text(file), "<stdin>" if file == "-" else file))
    if namespace:
        default_namespace(documents, namespace)
    return documents


def script_library(lua_dirs: Optional[list[str]] = None, configmap: Optional[str] = None) -> ScriptLibrary:
    """User directories (flags, then $GRAYLANE_LUA_PATH), then a ConfigMap file, then the built-ins."""
    layers: list[ScriptLayer] = [directory_layer(d) for d in [*(lua_dirs or []), *lua_path_from_env()]]
    if configmap:
        layers.append(configmap_layer(read_text(configmap), configmap))
    layers.append(builtin_layer())
    return ScriptLibrary(layers)


def sandbox(timeout: Optional[float] = None, max_memory_mib: Optional[int] = None) -> LuaSandbox:
    return LuaSandbox(timeout=timeout or DEFAULT_TIMEOUT,
                      max_memory=(max_memory_mib * 1024 * 1024) if max_memory_mib else DEFAULT_MAX_MEMORY)
