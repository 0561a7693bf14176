"""The layer contract of docs/architecture.md, checked over the import graph.

Every module of the package belongs to one component (``npclust.<name>``) and every
component to one layer; a module may import only from its own layer or lower ones,
and no two modules import each other, directly or around a circle. Imports inside
functions count too: a deferred import is still a dependency.
"""

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "npclust"

LAYERS = {
    # 1: pure numerics with their VJPs; input checks
    "functional": 1, "validation": 1, "scaling": 1,
    # 2: networks and their training pieces; metrics; neighbour search; data sets
    "nn": 2, "losses": 2, "optim": 2, "neighbors": 2, "metrics": 2, "gradcheck": 2,
    "datasets": 2, "interop": 2, "lloyd": 2, "spectral": 2,
    # 3: files
    "files": 3,
    # 4: estimators and their training loop
    "cluster": 4,
    # 5: the command line, pictures, the demo
    "cli": 5, "plotting": 5, "demo": 5,
}


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules():
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(name, path, top_level_only=False):
    """The npclust modules ``name`` imports (submodules named in ``from x import y`` included)."""
    modules = _modules()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("npclust"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("npclust"):
                continue
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names
                         if f"{target}.{alias.name}" in modules)
    return found - {name}


def _component(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_module_has_a_layer():
    unassigned = sorted(name for name in _modules() if _component(name) not in (None, *LAYERS))
    assert not unassigned, f"add these to LAYERS and docs/architecture.md: {unassigned}"


def test_no_module_imports_a_higher_layer():
    violations = []
    for name, path in _modules().items():
        own = _component(name)
        if own is None:
            continue  # npclust/__init__.py loads submodules lazily, by name
        for imported in _imports(name, path):
            other = _component(imported)
            if other is not None and LAYERS[other] > LAYERS[own]:
                violations.append(f"{name} (layer {LAYERS[own]}) imports {imported} "
                                  f"(layer {LAYERS[other]})")
    assert not violations, "\n".join(violations)


def test_no_import_cycles():
    modules = _modules()
    graph = {name: {imported for imported in _imports(name, path, top_level_only=True)
                    if imported in modules} for name, path in modules.items()}
    # A package importing its own submodules is how packages are built, not a cycle.
    graph = {name: {imported for imported in edges if not name.startswith(imported + ".")}
             for name, edges in graph.items()}
    state, cycles = {}, []

    def visit(node, trail):
        state[node] = "open"
        for neighbour in sorted(graph[node]):
            if state.get(neighbour) == "open":
                cycles.append(trail[trail.index(neighbour):] + [neighbour])
            elif neighbour not in state:
                visit(neighbour, trail + [neighbour])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


@pytest.mark.parametrize("planted, check, expected", [
    # files is layer 3, cluster layer 4.
    ("from ..cluster import IMSAT\n", test_no_module_imports_a_higher_layer,
     r"npclust.files.archive \(layer 3\) imports npclust.cluster"),
    # matrix already imports archive.
    ("from .matrix import read_matrix\n", test_no_import_cycles, "import cycles"),
])
def test_the_checks_catch_a_planted_violation(planted, check, expected, monkeypatch, tmp_path):
    """The contract is only evidence if it fails on a violation: plant one in a copy."""
    copy = tmp_path / "npclust"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "data"))
    archive = copy / "files" / "archive.py"
    archive.write_text(planted + archive.read_text())
    monkeypatch.setitem(globals(), "PACKAGE", copy)
    with pytest.raises(AssertionError, match=expected):
        check()


def test_every_top_level_module_loads_as_an_attribute_of_the_package():
    # import npclust loads submodules lazily; one missing from the list is an
    # AttributeError for `npclust.name` until something imports it explicitly.
    import npclust

    top_level = sorted({_component(name) for name in _modules()} - {None})
    assert sorted(set(top_level) - set(npclust._SUBMODULES)) == []
    for name in top_level:
        assert getattr(npclust, name).__name__ == f"npclust.{name}"
