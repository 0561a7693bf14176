"""Doctests of the package and the docs: examples that need an optional extra skip without it."""

import importlib.util

import pytest

# Doctest files and modules whose examples import an optional extra.
_NEEDS = {"interop": "torch", "porting.md": "torch", "plotting": "matplotlib"}


def pytest_collection_modifyitems(items):
    for item in items:
        if not isinstance(item, pytest.DoctestItem):
            continue
        for where, package in _NEEDS.items():
            if where in item.nodeid and importlib.util.find_spec(package) is None:
                item.add_marker(pytest.mark.skip(reason=f"the example needs {package}"))
