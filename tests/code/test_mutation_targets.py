"""`make mutation`'s configuration stays true to the tree: every target's module, functions and test files
exist, and one that does not fails the run naming it (instead of silently dropping its mutants)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mutation():
    spec = importlib.util.spec_from_file_location("mutation_script", REPO / "scripts" / "mutation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module        # dataclasses look their module up while the script loads
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_every_configured_target_resolves(mutation):
    assert [t.path for t in mutation.resolve_targets(None)] == [t.path for t in mutation.TARGETS]


@pytest.mark.parametrize("change, named", [
    ({"tests": ("tests/code/test_gone.py",)}, "test file tests/code/test_gone.py does not exist"),
    ({"functions": ("no_such_function",)}, "has no function 'no_such_function'"),
    ({"path": "src/faceparse/gone.py"}, "src/faceparse/gone.py does not exist"),
])
def test_a_stale_target_fails_the_run_naming_it(mutation, monkeypatch, change, named):
    first = mutation.TARGETS[0]
    stale = mutation.Target(**{"path": first.path, "functions": first.functions, "tests": first.tests, **change})
    monkeypatch.setattr(mutation, "TARGETS", (stale, *mutation.TARGETS[1:]))
    with pytest.raises(SystemExit, match=named):
        mutation.resolve_targets(None)
