"""The Python package in layers, without an import circle.

    applications  rnncore.apps (demo, gradflow, charlm, benchmark, ...), selfcheck, _cli, __main__
    toolkit       rnncore.nn (modules, losses, optim, grads)
    library       rnncore.layers, backends (cpp, reference), io, streaming
    base          _spec, reference, _core (compiled), _checks, _limits, _isa, threads, ...

A module imports only modules of its own layer or those below it (anywhere in the file, also
inside functions), no module but the applications imports the package itself, and the imports
between modules (the package's __init__ aside, which re-exports them) form no circle.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import rnncore

ROOT = Path(rnncore.__file__).parent
EXTENSIONS = {"rnncore._core"}
LAYERS = {
    "base": {"rnncore._spec", "rnncore.reference", "rnncore._core", "rnncore._checks", "rnncore._limits",
             "rnncore._isa", "rnncore.threads", "rnncore.floating_point", "rnncore._plotting",
             "rnncore._progress"},
    "library": {"rnncore.layers", "rnncore.backends", "rnncore.backends.cpp", "rnncore.backends.reference",
                "rnncore.io", "rnncore.streaming"},
    "toolkit": {"rnncore.nn", "rnncore.nn.modules", "rnncore.nn.losses", "rnncore.nn.optim",
                "rnncore.nn.grads", "rnncore.losses", "rnncore.optim", "rnncore.grads"},
}
ORDER = ("base", "library", "toolkit", "applications")
# Earlier names: each module makes itself an alias of the module it moved to.
ALIASES = {
    "rnncore.demo": "rnncore.apps.demo",
    "rnncore.gradflow": "rnncore.apps.gradflow",
    "rnncore.charlm": "rnncore.apps.charlm",
    "rnncore.benchmark": "rnncore.apps.benchmark",
    "rnncore.losses": "rnncore.nn.losses",
    "rnncore.optim": "rnncore.nn.optim",
    "rnncore.grads": "rnncore.nn.grads",
}


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ("rnncore",) + path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


MODULES = module_names()


def layer_of(name: str) -> str:
    for layer, members in LAYERS.items():
        if name in members:
            return layer
    return "applications"


def imports_of(name: str) -> set[str]:
    """The package's modules that `name` imports (the package itself as "rnncore")."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "rnncore":
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}"
                found.add(full if full in MODULES or full in EXTENSIONS else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "rnncore")
    found.discard(name)
    return found


def test_every_module_is_placed_in_a_layer():
    assert set(LAYERS["library"]) | set(LAYERS["toolkit"]) <= set(MODULES)
    assert set(LAYERS["base"]) - EXTENSIONS <= set(MODULES)


@pytest.mark.parametrize("name", sorted(set(MODULES) - {"rnncore"}))
def test_a_module_imports_only_its_layer_and_those_below(name):
    rank = ORDER.index(layer_of(name))
    for target in imports_of(name):
        if target == "rnncore":
            assert layer_of(name) == "applications", f"{name} imports the package rnncore itself"
            continue
        assert ORDER.index(layer_of(target)) <= rank, f"{name} ({layer_of(name)}) imports {target} ({layer_of(target)})"


def test_no_import_circle():
    graph = {name: imports_of(name) - {"rnncore"} - EXTENSIONS for name in MODULES if name != "rnncore"}
    # Each alias module is replaced by its application: follow the application instead.
    for alias in ALIASES:
        graph[alias] = set()
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph.get(name, ())):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target] if target in path else [name, target]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, path + [target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_earlier_names_are_the_same_modules(alias):
    assert importlib.import_module(alias) is importlib.import_module(ALIASES[alias])
