"""Every runtime dependency declared in pyproject.toml is imported by the package.

A dependency nothing imports (``anyio`` was one) costs every installer a download and
a version constraint to satisfy, for nothing.
"""

from __future__ import annotations

import ast
import re
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imported_top_level_modules() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "attune").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_every_declared_dependency_is_imported() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0].lower() for spec in declared}
    imported = _imported_top_level_modules()
    provided_by: dict[str, set[str]] = {}
    for module, dists in packages_distributions().items():
        for dist in dists:
            provided_by.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    unused = sorted(
        name for name in names if not provided_by.get(name.replace("_", "-"), set()) & imported
    )
    assert not unused, f"declared in pyproject.toml but never imported by attune: {unused}"
