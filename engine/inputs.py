"""The file-system edge: reads manifests and script directories named on the command line."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable, Optional

from engine.documents import MAX_INPUT_BYTES, Document, default_namespace, load_stream, parse_documents
from engine.errors import InvalidInputError
from engine.lua.sandbox import DEFAULT_MAX_MEMORY, DEFAULT_TIMEOUT, LuaSandbox
from engine.lua.scripts import (ScriptLayer, ScriptLibrary, builtin_layer, configmap_documents_layer, directory_layer,
                                lua_path_from_env, walk_tree)

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def read_text(path: str) -> str:
    """A file (or ``-``, standard input) as text: at most MAX_INPUT_BYTES of UTF-8, else a located error."""
    source = "<stdin>" if path == "-" else path
    try:
        if path == "-":
            if sys.stdin is None:
                raise InvalidInputError("standard input is closed", source=source)
            data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
        else:
            with open(path, "rb") as handle:
                data = handle.read(MAX_INPUT_BYTES + 1)
    except FileNotFoundError:
        raise InvalidInputError("no such file or directory", source=source) from None
    except IsADirectoryError:
        raise InvalidInputError("is a directory", source=source) from None
    except (OSError, ValueError) as exc:  # ValueError: a closed stream
        raise InvalidInputError(f"cannot read: {getattr(exc, 'strerror', None) or exc}", source=source) from None
    if len(data) > MAX_INPUT_BYTES:
        raise InvalidInputError(f"larger than {MAX_INPUT_BYTES // 1024 ** 2} MiB", source=source)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"not UTF-8 text (invalid byte at offset {exc.start})", source=source) from None


def manifest_files(path: str) -> list[str]:
    """A file as itself; a directory as every YAML/JSON file below it, in a stable order."""
    if path == "-" or not os.path.isdir(path):
        return [path]
    found = [str(entry) for _, entry in walk_tree(Path(path)) if Path(str(entry)).suffix in MANIFEST_SUFFIXES]
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
        layers.append(configmap_documents_layer(load_stream(read_text(configmap), configmap), configmap))
    layers.append(builtin_layer())
    return ScriptLibrary(layers)


def sandbox(timeout: Optional[float] = None, max_memory_mib: Optional[int] = None) -> LuaSandbox:
    """The sandbox the flags ask for (``--timeout`` seconds, ``--max-memory`` MiB); bad values are input errors."""
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    if max_memory_mib is None:
        max_memory = DEFAULT_MAX_MEMORY
    elif isinstance(max_memory_mib, int) and not isinstance(max_memory_mib, bool) and max_memory_mib > 0:
        max_memory = max_memory_mib * 1024 * 1024
    else:
        raise InvalidInputError(f"--max-memory must be a positive number of MiB, got {max_memory_mib!r}")
    return LuaSandbox(timeout=timeout, max_memory=max_memory)
