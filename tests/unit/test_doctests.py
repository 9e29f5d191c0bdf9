"""Every ``>>>`` example in src/shoestring runs in ``make test`` (issue 11, item 6), so a
docstring cannot show an answer the code no longer gives."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import shoestring

# __main__ runs the CLI when imported.
MODULES = sorted(m.name for m in pkgutil.walk_packages(shoestring.__path__, "shoestring.")
                 if not m.name.endswith("__main__"))


def _examples(module) -> list[doctest.DocTest]:
    return [t for t in doctest.DocTestFinder().find(module, module.__name__) if t.examples]


def test_there_are_examples_to_run():
    assert len(MODULES) > 100
    assert sum(len(_examples(importlib.import_module(m))) for m in MODULES) > 50


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    failures = []
    for test in _examples(module):
        out: list[str] = []
        result = runner.run(test, out=out.append)
        if result.failed:
            failures.append("".join(out))
    assert not failures, "\n".join(failures)
