"""The ``Examples`` sections of the docstrings run as doctests: an example a user copies
must print what the docstring says it prints."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest


# the stages install from their own folders (pyproject's package-dir), so each is walked
PACKAGES = ("neurofeat", "neurofeat.analysis", "neurofeat.extract", "neurofeat.sql")


def _modules() -> list[str]:
    names = set(PACKAGES)
    for package in PACKAGES:
        path = importlib.import_module(package).__path__
        names.update(info.name for info in pkgutil.walk_packages(path, prefix=package + "."))
    return sorted(names)


def _with_examples(name: str) -> bool:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:  # an optional extra that is not installed
        if (error.name or "").startswith("neurofeat"):
            raise
        return False
    finder = doctest.DocTestFinder(exclude_empty=True)
    return any(t.examples for t in finder.find(module, name))


MODULES = [m for m in _modules() if _with_examples(m)]


def test_some_modules_have_examples():
    assert "neurofeat.analysis.correction_factors" in MODULES
    assert "neurofeat.analysis.paired_tests" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             verbose=False, report=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"
