"""The README and docs/ stay true to the repository: the commands and options they name exist, their
links resolve, their figures carry dates (tests/docs_support.py says how each is decided)."""

from __future__ import annotations

import shutil
from pathlib import Path

from docs_support import problems

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_and_docs_name_only_what_exists_link_only_what_resolves_and_date_their_figures() -> None:
    assert problems(REPO_ROOT) == []


def copy_of_the_documents(target: Path) -> Path:
    for name in ("README.md", "CONTRIBUTING.md", "dev.sh"):
        shutil.copy(REPO_ROOT / name, target / name)
    shutil.copytree(REPO_ROOT / "docs", target / "docs")
    # What the documents link to beyond themselves.
    for folder in ("mlops", "training", "infra", "inference", "tests", "benchmarks", ".ci"):
        (target / folder).symlink_to(REPO_ROOT / folder)
    return target


def append(path: Path, text: str) -> int:
    """Appends `text` as a paragraph of its own; the line number it starts at."""
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, "", text, ""]))
    return len(lines) + 2


def test_a_tampered_copy_fails_naming_each_problem_where_it_is(tmp_path: Path) -> None:
    root = copy_of_the_documents(tmp_path)
    before = problems(root)  # what the repository's own check reports, if anything

    removed_option = append(root / "README.md", "Quiet jobs: `mlops local --no-logs`.")
    no_command = append(root / "README.md", "Then `./dev.sh lnt` and `mlops trian cnn`.")
    dead_link = append(root / "docs" / "local.md", "See [the old page](old-local.md) and [this](#no-such-heading).")
    undated = append(root / "docs" / "tests.md", "The whole suite took 473 s on 2 cores.")
    dated = append(root / "docs" / "tests.md", "On 7 Dec 2026 the whole suite took 473 s on 2 cores.")

    found = [problem for problem in problems(root) if problem not in before]
    assert found == [
        f"README.md:{removed_option}: `mlops local --no-logs`: mlops local has no option --no-logs",
        f"README.md:{no_command}: `./dev.sh lnt`: dev.sh has no command 'lnt'",
        f"README.md:{no_command}: `mlops trian cnn`: mlops has no command 'trian'",
        f"docs/local.md:{dead_link}: link to old-local.md: docs/old-local.md does not exist",
        f"docs/local.md:{dead_link}: link to #no-such-heading: no heading #no-such-heading in local.md",
        f"docs/tests.md:{undated}: figure '473 s' has no date in its block or the one before "
        "(date it, or give it a section of docs/benchmarks.md with its date, CPU and command)",
    ], found
    assert not [line for line in found if f":{dated}:" in line], "a dated figure passes"


def test_a_benchmark_section_without_its_date_cpu_or_command_fails(tmp_path: Path) -> None:
    root = copy_of_the_documents(tmp_path)
    before = problems(root)
    line = append(root / "docs" / "benchmarks.md", "## Something new\n\nIt answered in 9.3 ms.")
    found = [problem for problem in problems(root) if problem not in before]
    assert found == [f"docs/benchmarks.md:{line}: a section with figures names no date, no CPU, no command"]
