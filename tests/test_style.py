"""Habits checked on every run: ruff, numpydoc on the public API, no placeholder docstrings."""

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Every public module; their __all__ is the public API.
PUBLIC_MODULES = [
    "npclust.functional", "npclust.validation", "npclust.nn", "npclust.losses", "npclust.optim",
    "npclust.neighbors", "npclust.lloyd", "npclust.spectral", "npclust.metrics",
    "npclust.gradcheck", "npclust.gradcheck.cases",
    "npclust.gradcheck.suite", "npclust.datasets", "npclust.interop", "npclust.files.archive",
    "npclust.files.checkpoint", "npclust.files.matrix", "npclust.cluster",
    "npclust.cluster.training", "npclust.cluster.port_vectors", "npclust.demo",
    "npclust.plotting",
]
# numpydoc's checks that a reader of the API relies on: a docstring exists (GL08), every
# parameter is documented (PR01) and no documented one is unknown (PR02), the summary
# and sections are well formed (GL02, GL03, SS01, PR03).
ENFORCED = {"GL02", "GL03", "GL08", "SS01", "PR01", "PR02", "PR03"}


def _public_api():
    names = set()
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            names.add(f"{obj.__module__}.{obj.__qualname__}")
            if inspect.isclass(obj):
                for klass in obj.__mro__:
                    if not klass.__module__.startswith("npclust"):
                        continue
                    names.update(f"{klass.__module__}.{klass.__qualname__}.{attribute}"
                                 for attribute, value in vars(klass).items()
                                 if not attribute.startswith("_") and inspect.isfunction(value))
    return sorted(names)


def test_ruff_finds_nothing():
    pytest.importorskip("ruff")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "npclust", "tests",
                             "benchmarks", "conftest.py"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", _public_api())
def test_public_docstring_passes_numpydoc(name):
    validate = pytest.importorskip("numpydoc.validate").validate
    report = validate(name)
    errors = [f"{code}: {message}" for code, message in report["errors"]
              # A class documents its parameters; PR01 on a class is its __init__'s. A
              # layer's forward and backward take the arguments Module documents once.
              if code in ENFORCED and not (code == "PR01" and (
                  report["type"] == "type" or _implements_module_contract(name)))]
    assert not errors, "\n".join(errors)


def _implements_module_contract(name):
    from npclust.nn import Module

    owner, _, method = name.rpartition(".")
    return method in ("forward", "backward") and owner != "npclust.nn.module.Module" and \
        issubclass(_resolve(owner), Module)


_PLACEHOLDER = re.compile(r"default=\.\.\.|^\s*\.\.\.\s*$|TODO|FIXME", re.MULTILINE)


def _resolve(name):
    """The object a dotted name refers to: the longest importable module, then attributes."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(name)


@pytest.mark.parametrize("name", _public_api())
def test_public_docstring_has_no_placeholder(name):
    found = _PLACEHOLDER.search(inspect.getdoc(_resolve(name)) or "")
    assert found is None, f"{name} has a placeholder: {found.group(0)!r}"


def test_the_placeholder_check_catches_one():
    assert _PLACEHOLDER.search("n_init : int, default=...\n")
    assert _PLACEHOLDER.search("Notes\n-----\n...\n")
