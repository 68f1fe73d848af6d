"""Docstring examples that `make test` skips (`# doctest: +SKIP`) say why, in prose before them."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tfdml"


def test_every_skipped_example_says_why():
    unexplained = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=False) or ""
                if "doctest: +SKIP" in doc and "not run as a doctest" not in " ".join(doc.lower().split()):
                    unexplained.append(f"{path.relative_to(PACKAGE.parent)}: {getattr(node, 'name', 'module')}")
    assert not unexplained, "say why these examples are skipped ('not run as a doctest: ...'): " + ", ".join(unexplained)
