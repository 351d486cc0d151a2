"""Every third-party module the package imports is a declared dependency of it.

A module that only arrives through another package's dependencies (click came with typer up
to 0.25, and with Ray, mkdocs and import-linter in the test extra) works in the development
install and fails on a user's `pip install .`: `nst --help` answered "No module named
'click'". An optional extra's import is allowed where the importing module names the extra
(`.[ray]`), so its user is told how to install it."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "nst_cli"

tomllib = pytest.importorskip(
    "tomllib"
)  # Python >= 3.11; the check needs to run once, not on every Python


def _normal(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return _normal(match.group(1))


def declared() -> tuple[set[str], dict[str, set[str]]]:
    """The project's dependencies, and each extra's, as normalised distribution names."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    base = {_requirement_name(r) for r in project["dependencies"]}
    extras = {
        extra: {_requirement_name(r) for r in requirements}
        for extra, requirements in project.get("optional-dependencies", {}).items()
    }
    return base, extras


def third_party_imports(source: str) -> set[str]:
    """The top-level names of every absolute import in `source`, at any depth (inside
    functions and `if TYPE_CHECKING:` too), less the standard library and nst_cli itself."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("nst_cli",)}


def test_the_scan_finds_imports_at_any_depth() -> None:
    source = (
        "import os\nimport torch.nn as nn\nfrom PIL import Image\nfrom . import sibling\n"
        "def f():\n    import ray\n"
        "if TYPE_CHECKING:\n    from typer import _click as click\n"
    )
    assert third_party_imports(source) == {"torch", "PIL", "ray", "typer"}


def test_every_import_of_the_package_is_a_declared_dependency() -> None:
    base, extras = declared()
    providers = packages_distributions()  # module name -> the installed distributions giving it
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        where = path.relative_to(ROOT)
        for module in sorted(third_party_imports(source)):
            given_by = {_normal(d) for d in providers.get(module, [])}
            if not given_by:
                problems.append(f"{where}: imports {module}, which no installed package provides")
            elif given_by & base:
                continue
            else:
                named = [e for e, deps in extras.items() if given_by & deps and f"[{e}]" in source]
                if not named:
                    problems.append(
                        f"{where}: imports {module} ({', '.join(sorted(given_by))}), which is "
                        "not in [project] dependencies (nor in an extra this module names, "
                        "like `.[ray]`)"
                    )
    assert not problems, "\n".join(problems)


def test_a_missing_declaration_is_caught() -> None:
    """The check fails for the reason it names: click, the import that broke `nst --help`,
    is installed here (the test extra brings it) and declared nowhere."""
    base, _ = declared()
    assert "click" not in base
    assert {_normal(d) for d in packages_distributions().get("click", [])} - base
