"""The code's shape: small modules with one job, short functions.

A module over `MAX_MODULE_LINES` has grown a second noun and should be split; a function over
`MAX_FUNCTION_LINES` hides steps that deserve names. The config's models are the one module
allowed to be long: they are the config's reference, one field per line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60
LONG_BY_DESIGN = {"config.py"}
MODULES = sorted(p for p in APP.rglob("*.py") if p.relative_to(APP).as_posix() not in LONG_BY_DESIGN)


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(APP).as_posix())
def test_modules_and_functions_stay_small(path: Path):
    source = path.read_text()
    lines = len(source.splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.name}: {lines} lines (at most {MAX_MODULE_LINES})"
    long = {
        f.name: f.end_lineno - f.lineno + 1
        for f in _functions(ast.parse(source))
        if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES
    }
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_check_sees_the_code():
    assert len(MODULES) > 50 and (APP / "serving" / "ingress.py") in MODULES
