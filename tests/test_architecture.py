"""Dependency direction service -> evals -> steering -> kernels, checked by walking the source's AST.

A backup for the import-linter contract in pyproject.toml that runs without the tool: ``kernels``
imports nothing from the repo, ``steering`` (the GUARD-IT library, arXiv 2605.12765) no evaluation, no
web or database stack and no environment, ``evals`` (the benchmarks) neither the application nor the
environment, and only ``service`` itself imports ``service``.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("kernels", "steering", "evals", "service")
_WEB_AND_DB = frozenset(
    {"fastapi", "pydantic", "pydantic_settings", "starlette", "sqlalchemy", "uvicorn", "prometheus_client"}
)

#: What each package may not import (top-level module names).
FORBIDDEN_IMPORTS: dict[str, frozenset[str]] = {
    "kernels": frozenset({"steering", "evals", "service"}),
    "steering": frozenset({"evals", "service"}) | _WEB_AND_DB,
    "evals": frozenset({"service"}) | _WEB_AND_DB,
    "service": frozenset(),
}
#: Packages that may not touch the process environment (settings are passed in by the application).
NO_ENV = frozenset({"kernels", "steering", "evals"})
_ENV_NAMES = frozenset({"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"})


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _module_of(path: Path, root: Path) -> list[str]:
    """Dotted package parts of the module at ``path`` (``steering/hooks.py`` -> steering)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return parts[:-1] if parts[-1] != "__init__" else parts[:-1]


def imported_modules(tree: ast.AST, package_parts: list[str]) -> list[tuple[int, str]]:
    """Every absolute module name imported anywhere in ``tree`` (relative imports resolved).

    Also catches ``importlib.import_module("x")`` and ``__import__("x")`` with a literal name.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else ""
            )
            if called in {"import_module", "__import__"} and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def env_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """``os.environ`` / ``os.getenv`` (any alias of ``os``) and ``from os import environ, getenv``."""
    os_names = {"os"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            os_names |= {alias.asname or alias.name for alias in node.names if alias.name == "os"}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in _ENV_NAMES
            and isinstance(node.value, ast.Name)
            and node.value.id in os_names
        ):
            found.append((node.lineno, f"{node.value.id}.{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found.extend(
                (node.lineno, f"from os import {a.name}") for a in node.names if a.name in _ENV_NAMES
            )
    return found


def check_source(source: str, path: Path, root: Path) -> list[Violation]:
    """Violations of the dependency rules in one file of one of ``PACKAGES``."""
    package_parts = _module_of(path, root)
    package = package_parts[0]
    tree = ast.parse(source, filename=str(path))
    rel = str(path.relative_to(root))
    out: list[Violation] = []
    for line, name in imported_modules(tree, package_parts):
        top = name.split(".")[0]
        if top in FORBIDDEN_IMPORTS[package]:
            out.append(Violation(rel, line, f"{package} imports {name}"))
        if top == "service" and package != "service":
            out.append(Violation(rel, line, f"only service may import service, found {name} in {package}"))
    if package in NO_ENV:
        out.extend(
            Violation(rel, line, f"{package} reads the environment ({what})")
            for line, what in env_reads(tree)
        )
    return sorted(set(out), key=lambda v: (v.path, v.line, v.what))


def package_files(package: str) -> list[Path]:
    return sorted(p for p in (REPO / package).rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("package", PACKAGES)
def test_package_respects_the_dependency_direction(package: str) -> None:
    files = package_files(package)
    assert files, f"expected Python files under {package}/"
    violations = [v for path in files for v in check_source(path.read_text(encoding="utf-8"), path, REPO)]
    assert not violations, "\n".join(map(str, violations))


#: (file, source, expected message): one of each kind of violation the checker must report.
SAMPLE_VIOLATIONS: list[tuple[str, str, str]] = [
    ("kernels/x.py", "import steering.hooks\n", "kernels imports steering.hooks"),
    ("kernels/x.py", "def f():\n    from service import runtime\n", "kernels imports service"),
    ("steering/x.py", "from fastapi import FastAPI\n", "steering imports fastapi"),
    ("steering/x.py", "import pydantic.v1 as p\n", "steering imports pydantic.v1"),
    ("steering/x.py", "import sqlalchemy\n", "steering imports sqlalchemy"),
    ("steering/x.py", "from starlette.requests import Request\n", "steering imports starlette.requests"),
    ("steering/x.py", "from evals import metrics\n", "steering imports evals"),
    ("evals/x.py", "from ..service import cli\n", "evals imports service"),
    ("evals/x.py", "import os\nx = os.getenv('A')\n", "evals reads the environment (os.getenv)"),
    (
        "steering/x.py",
        "import importlib\nimportlib.import_module('service.cli')\n",
        "steering imports service.cli",
    ),
    ("steering/x.py", "import os\nx = os.environ['A']\n", "steering reads the environment (os.environ)"),
    ("steering/x.py", "import os as o\nx = o.getenv('A')\n", "steering reads the environment (o.getenv)"),
    ("kernels/x.py", "from os import environ\n", "kernels reads the environment (from os import environ)"),
]


@pytest.mark.parametrize(
    ("path", "source", "expected"),
    SAMPLE_VIOLATIONS,
    ids=[f"{path.split('/')[0]}-{i}" for i, (path, _, _) in enumerate(SAMPLE_VIOLATIONS)],
)
def test_the_checker_reports_each_kind_of_violation(path: str, source: str, expected: str) -> None:
    violations = check_source(source, REPO / path, REPO)
    assert any(expected in str(v) for v in violations), violations


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("steering/x.py", "import os\nos.replace('a', 'b')\nfrom kernels import gated_redirect\n"),
        ("steering/x.py", "from . import hooks\nfrom .gates import GateState\n"),
        ("service/x.py", "import os\nx = os.environ\nfrom service import runtime\nimport fastapi\n"),
        ("kernels/x.py", "import torch\nfrom kernels.reference import gated_redirect_ref\n"),
        ("evals/x.py", "from steering.guard import Guard\nfrom evals.data import tofu\n"),
        ("service/x.py", "from evals import cli\n"),
    ],
    ids=[
        "steering-os-replace-and-kernels",
        "steering-relative",
        "service-anything",
        "kernels-torch-and-self",
        "evals-steering-and-self",
        "service-evals",
    ],
)
def test_the_checker_accepts_allowed_imports(path: str, source: str) -> None:
    assert check_source(source, REPO / path, REPO) == []


def test_the_readme_layout_names_every_module() -> None:
    # The README's Layout section is a newcomer's map of the tree: a module added, moved or removed
    # without it is a map that lies.
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout"):readme.index("Imports point one way")]
    named = set(re.findall(r"\b(\w+\.py)\b", layout))
    missing = [str(path.relative_to(REPO)) for package in PACKAGES for path in package_files(package)
               if path.name != "__init__.py" and path.name not in named]
    assert missing == []
    modules = {path.name for package in PACKAGES for path in package_files(package)}
    assert sorted(named - modules - {"finetune_tofu.py", "script.py"}) == []
