"""The package as `pip install -e .` gives it: what the CLI, the CDK app and the training code import
is what pyproject.toml declares for them, not something only the test or dev groups bring."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
SHIPPED = ["app.py", "mlops", "infra", "inference", "training"]
# file -> modules it may import from the test group, and why.
TEST_GROUP_IMPORTS = {
    # `python -m infra.images` regenerates and checks the image table against the SageMaker SDK: a
    # maintainer's step, run with the test group installed; synthesis reads the copied table.
    "infra/images.py": {"sagemaker"},
}


def _name(requirement: str) -> str:
    """The normalized distribution name of a requirement such as `moto[server]==5.2.5`."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement)[0]).lower()  # type: ignore[index]


def _first_party() -> set[str]:
    """The project's own top-level names, including training/'s modules as the container imports them."""
    training = REPO_ROOT / "training"
    return {"mlops", "infra", "inference", "training", "app"} | {
        path.stem for path in training.iterdir() if path.suffix == ".py" or (path / "__init__.py").exists()
    }


def _imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports anywhere in `path` (module level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _shipped_files() -> list[Path]:
    files = []
    for entry in SHIPPED:
        path = REPO_ROOT / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def test_what_the_shipped_code_imports_is_declared_as_a_runtime_dependency() -> None:
    runtime = {_name(requirement) for requirement in PYPROJECT["project"]["dependencies"]}
    distributions = {
        module: {_name(distribution) for distribution in found}
        for module, found in metadata.packages_distributions().items()
    }
    first_party, problems = _first_party(), []
    for path in _shipped_files():
        relative = path.relative_to(REPO_ROOT).as_posix()
        allowed = first_party | set(sys.stdlib_module_names) | {"__future__"} | TEST_GROUP_IMPORTS.get(relative, set())
        for module in sorted(_imports(path) - allowed):
            found = distributions.get(module)
            if not found:
                problems.append(f"{relative}: imports {module}, which no installed distribution provides")
            elif not found & runtime:
                problems.append(f"{relative}: imports {module} ({', '.join(sorted(found))}), not a runtime dependency")
    assert problems == []


def test_the_groups_and_the_lock_pin_the_same_exact_versions() -> None:
    """Every declared requirement is pinned exactly, once, and at the version the lock installs."""
    lock = {
        _name(line): line.split("==", 1)[1]
        for line in (REPO_ROOT / "requirements-lock.txt").read_text().splitlines()
        if "==" in line
    }
    declared = [*PYPROJECT["project"]["dependencies"]]
    for group in PYPROJECT["project"]["optional-dependencies"].values():
        declared += group
    names = [_name(requirement) for requirement in declared]
    assert sorted(set(names)) == sorted(names), "a requirement is declared twice"
    for requirement in declared:
        _, _, version = requirement.partition("==")
        assert version, f"{requirement} is not pinned exactly"
        assert lock.get(_name(requirement)) == version, f"{requirement}: the lock has {lock.get(_name(requirement))}"
