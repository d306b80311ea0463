"""The import rules the layout of engine/ stands for (see engine/__init__.py), read from the source.

A wing may import only the shared modules and the wings below it; only engine/cluster talks to Kubernetes;
the Lua host imports nothing of graylane but its errors; command modules import wings lazily (start-up time).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "engine"
WINGS = ["lua", "routing", "checks", "fulllink", "cluster", "cli"]  # lowest first
SHARED = {"engine", "engine.documents", "engine.inputs", "engine.errors", "engine.fields", "engine.regexes",
          "engine.lua_configuration", "engine.progress", "engine.records"}
EDGE_MODULES = {"engine.inputs": {"lua"},  # the file edge builds script libraries and sandboxes from flags
                "engine.__main__": {"cli"}}


def module_name(path: Path) -> str:
    parts = path.relative_to(ENGINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, top_level_only: bool = False) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: use absolute imports (from engine.x import ...)"
            found.append((node.module or "", node.lineno))
    return found


def wing_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "engine" and parts[1] in WINGS else None


SOURCES = sorted(ENGINE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ENGINE)))
def test_imports_follow_the_layers(path: Path) -> None:
    me = module_name(path)
    my_wing = wing_of(me)
    for target, line in imports(path):
        where = f"{path.relative_to(ENGINE.parent)}:{line} imports {target}"
        if target.split(".")[0] == "kubernetes":
            assert my_wing == "cluster", f"{where}: only engine/cluster may use the Kubernetes client"
        if not target.startswith("engine"):
            continue
        target_wing = wing_of(target)
        if my_wing == "lua":
            assert target_wing == "lua" or target in ("engine.errors", "engine.records"), \
                f"{where}: the Lua host imports only errors and records"
        elif my_wing is None:  # a shared module
            allowed = EDGE_MODULES.get(me, set())
            assert target_wing is None or target_wing in allowed, f"{where}: shared modules import no wing"
        elif target_wing is not None:
            assert WINGS.index(target_wing) <= WINGS.index(my_wing), \
                f"{where}: {my_wing} may import only {', '.join(WINGS[:WINGS.index(my_wing) + 1])}"


@pytest.mark.parametrize("path", sorted((ENGINE / "cli").glob("*.py")), ids=lambda p: p.name)
def test_command_modules_import_wings_lazily(path: Path) -> None:
    for target, line in imports(path, top_level_only=True):
        assert wing_of(target) in (None, "cli") and target not in ("engine.inputs", "engine.documents"), \
            f"engine/cli/{path.name}:{line} imports {target} at module level; import it inside the handler"


def test_every_package_is_shipped() -> None:
    """pyproject.toml lists packages explicitly: a new folder in engine/ must be added there."""
    pyproject = (ENGINE.parent / "pyproject.toml").read_text(encoding="utf-8")
    for init in ENGINE.rglob("__init__.py"):
        name = module_name(init)
        if "lua_configuration" not in name:
            assert f'"{name}"' in pyproject, f"{name} is missing from pyproject.toml's packages"


def test_every_folder_is_a_package_with_a_docstring() -> None:
    for folder in [ENGINE, *[p for p in ENGINE.rglob("*") if p.is_dir() and p.name != "__pycache__"]]:
        if not any(folder.glob("*.py")):
            continue
        init = folder / "__init__.py"
        assert init.exists(), f"{folder} holds modules but no __init__.py"
        assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), f"{init} says nothing of its wing"
