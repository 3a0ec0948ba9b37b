"""The layering rules of the project, enforced: data flows one way (spec <- impls, checked by
conformance), spec/ stays NumPy-only, and the repository is ruff-clean."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
#: what impls/ may take from the spec: validation and format constants, never its arithmetic
IMPLS_MAY_USE = {"lionspec.spec._validate", "lionspec.spec.formats"}


def imports(source: str, package: str) -> set[str]:
    """Absolute module names imported by ``source`` living in ``package`` (relative resolved)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module) if p)
            found |= {f"{module}.{alias.name}" for alias in node.names}  # names may be modules
    return found


def _within(name: str, modules: set[str]) -> bool:
    return any(name == m or name.startswith(m + ".") for m in modules)


def spec_violations(source: str, filename: str) -> set[str]:
    allowed = STDLIB | {"numpy"} | ({"mpmath"} if filename == "exact.py" else set())
    return {m for m in imports(source, "lionspec.spec")
            if m.split(".")[0] not in allowed and not m.startswith("lionspec.spec")}


def impls_violations(source: str, package: str) -> set[str]:
    return {m for m in imports(source, package) if m.startswith("lionspec.conformance")
            or (m.startswith("lionspec.spec") and not _within(m, IMPLS_MAY_USE))}


def _package(path: Path) -> str:
    mapping = {"spec": "lionspec.spec", "impls": "lionspec.impls",
               "conformance": "lionspec.conformance"}
    parts = path.parent.relative_to(ROOT).parts
    return ".".join([mapping[parts[0]], *parts[1:]])


@pytest.mark.parametrize("path", sorted((ROOT / "spec").rglob("*.py")), ids=lambda p: p.name)
def test_spec_imports_only_numpy_and_the_stdlib(path):
    assert not spec_violations(path.read_text(encoding="utf-8"), path.name)


@pytest.mark.parametrize("path", sorted((ROOT / "impls").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_impls_never_import_conformance_or_spec_arithmetic(path):
    assert not impls_violations(path.read_text(encoding="utf-8"), _package(path))


def test_the_rules_catch_violations():
    assert spec_violations("import torch\nfrom jax import numpy", "lion.py") == {"torch",
                                                                               "jax.numpy"}
    assert spec_violations("import mpmath", "tiger.py") == {"mpmath"}
    assert not spec_violations("import mpmath", "exact.py")
    bad = "from ...spec.lion import lion_step\nfrom lionspec.conformance import vectors\n"
    assert impls_violations(bad, "lionspec.impls.torch") == {"lionspec.spec.lion.lion_step",
                                                             "lionspec.conformance.vectors"}
    assert impls_violations("from lionspec.spec import lion_step", "lionspec.impls") == {
        "lionspec.spec.lion_step"}
    assert not impls_violations("from ...spec import _validate\n"
                                "from lionspec.spec._validate import check_lr",
                                "lionspec.impls.torch")


def test_repository_is_ruff_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
