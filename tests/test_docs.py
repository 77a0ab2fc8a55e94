"""The documentation's examples run: every module's doctests and the README's."""

import doctest
import importlib
import inspect
import pathlib
import pkgutil

import pytest

import convgrad as cg

FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
MODULES = sorted(m.name for m in pkgutil.walk_packages(cg.__path__, "convgrad.") if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=FLAGS)
    assert result.failed == 0


def test_readme_examples():
    result = doctest.testfile(str(README), module_relative=False, optionflags=FLAGS)
    assert result.attempted > 10 and result.failed == 0


@pytest.mark.parametrize("name", [n for n in cg.__all__ if inspect.isfunction(getattr(cg, n))])
def test_public_functions_have_a_runnable_example(name):
    assert ">>>" in (getattr(cg, name).__doc__ or "")
