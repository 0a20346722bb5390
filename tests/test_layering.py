"""Layering: which parts of seglab may import which, and no import cycle between its modules.

Every ``import`` of every module under ``src/seglab`` is read with ``ast``, the ones inside
functions included (they run later, but tie the modules together all the same). An edge goes
to the module named, or for ``from package import name`` to ``package.name`` when that is a
module; importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``, which is not counted
as an edge (else every package would be a cycle with its own modules). Imports by computed
name (``importlib.import_module(variable)`` in ``seglab.cli`` and ``seglab.data``) are not seen.

The rules, checked on everything a module reaches through its imports, not only on what it
names itself:

    spec/       recipes and the checkpoint format: below both engine/ and inference/
    inference/  prediction: never the training engine or the command line
    instances/, metrics/, losses/, models/, data/: none of engine/, inference/, cli/
    Lightning   imported by engine/ (and the cli/ front end) only
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import seglab

PACKAGE_DIR = Path(seglab.__file__).parent

# package (second component of the module name) -> packages it must never reach
FORBIDDEN = {
    "spec": ("engine", "inference", "cli"),
    "inference": ("engine", "cli"),
    "instances": ("engine", "inference", "cli"),
    "metrics": ("engine", "inference", "cli"),
    "losses": ("engine", "inference", "cli"),
    "models": ("engine", "inference", "cli"),
    "data": ("engine", "inference", "cli"),
}
LIGHTNING = ("lightning", "pytorch_lightning")
MAY_IMPORT_LIGHTNING = ("engine", "cli")


def module_files(root: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (``__init__`` as the package)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imported_names(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every name an ``import`` in ``source`` asks for, at any depth (``from a import b`` gives
    ``a`` and ``a.b``); relative imports resolved against ``module``."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def module_graph(files: dict[str, Path]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """``(module -> seglab modules it imports, module -> top-level third-party names it imports)``."""
    edges, external = {}, {}
    for module, path in files.items():
        names = imported_names(path.read_text(), module, path.name == "__init__.py")
        own = set()
        for name in names:
            if name.split(".")[0] != "seglab":
                continue
            while name not in files:  # "seglab.x.y.Name" -> the module "seglab.x.y"
                name = name.rsplit(".", 1)[0]
            own.add(name)
        edges[module] = own - {module}
        external[module] = {name.split(".")[0] for name in names} - {"seglab", ""}
    return edges, external


def package_of(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def chain_to(edges: dict[str, set[str]], start: str, bad: set[str]) -> list[str] | None:
    """The import chain from ``start`` to the first module of a package in ``bad``, or None."""
    parent: dict[str, str | None] = {start: None}
    queue = [start]
    while queue:
        module = queue.pop(0)
        if package_of(module) in bad:
            chain = [module]
            while parent[chain[-1]] is not None:
                chain.append(parent[chain[-1]])
            return chain[::-1]
        for nxt in sorted(edges[module]):
            if nxt not in parent:
                parent[nxt] = module
                queue.append(nxt)
    return None


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for nxt in sorted(edges[module]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[module] = 2
        path.pop()
        return None

    for module in sorted(edges):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


FILES = module_files()
EDGES, EXTERNAL = module_graph(FILES)


def test_reader_sees_function_level_and_relative_imports():
    source = (
        "import os\nfrom seglab.errors import DataError\n"
        "def f():\n    from seglab.inference.sliding import tile_starts\n"
        "class C:\n    def g(self):\n        import lightning.pytorch\n        from . import sibling\n"
    )
    names = imported_names(source, "seglab.instances.detections")
    assert {"os", "seglab.errors", "seglab.inference.sliding", "lightning.pytorch", "seglab.instances.sibling"} <= names
    assert "seglab.instances.sibling" in imported_names("from .sibling import x", "seglab.instances", is_package=True)
    assert {"seglab.spec.checkpoint", "seglab.spec.recipes"} <= set(FILES)  # the reader found the package


@pytest.mark.parametrize(("package", "forbidden"), sorted(FORBIDDEN.items()))
def test_package_never_reaches_a_higher_layer(package, forbidden):
    modules = [m for m in FILES if package_of(m) == package]
    assert modules, f"no modules in seglab.{package}"
    problems = [" -> ".join(chain) for m in modules if (chain := chain_to(EDGES, m, set(forbidden)))]
    assert not problems, f"seglab.{package} reaches {'/'.join(forbidden)}:\n" + "\n".join(problems)


def test_lightning_only_in_the_engine_and_the_front_end():
    offenders = sorted(m for m, names in EXTERNAL.items()
                       if set(LIGHTNING) & names and package_of(m) not in MAY_IMPORT_LIGHTNING)
    assert not offenders, f"imports Lightning outside {'/'.join(MAY_IMPORT_LIGHTNING)}: {offenders}"


def test_no_import_cycle_between_modules():
    cycle = find_cycle(EDGES)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
