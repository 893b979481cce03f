"""The GitHub Actions workflows read as data (`.github/`), for tests/test_workflows.py and
tests/test_github_deploy.py. Each check is a function of a `.github` folder, so a test can run it
on a tampered copy and see it fail.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
GITHUB_DIR = REPO_ROOT / ".github"
CREDENTIALS_ACTION = "aws-actions/configure-aws-credentials"
PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
ROLE_OUTPUT = re.compile(r"^\$\{\{ steps\.([A-Za-z0-9_-]+)\.outputs\.role \}\}$")
# How a deploying job learns its role: the ARN cdk.json gives the job's stage.
ROLE_STEP_RUN = '.venv/bin/mlops deploy-role --stage "$STAGE" >> "$GITHUB_OUTPUT"'
BRANCH_CONDITION = re.compile(r"github\.ref == 'refs/heads/([^']+)'")


def workflow_files(github: Path = GITHUB_DIR) -> list[Path]:
    return sorted((github / "workflows").glob("*.yml"))


def action_files(github: Path = GITHUB_DIR) -> list[Path]:
    return sorted((github / "actions").glob("*/action.yml"))


def load(path: Path) -> dict[Any, Any]:
    """The YAML document; its keys are not all strings: YAML 1.1 reads a workflow's `on:` as True."""
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), f"{path}: not a YAML mapping"
    return document


@dataclass(frozen=True)
class Job:
    workflow: str
    job_id: str
    body: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.workflow}: job {self.job_id}"

    @property
    def steps(self) -> list[dict[str, Any]]:
        return self.body.get("steps", [])

    @property
    def environment(self) -> str | None:
        environment = self.body.get("environment")
        return environment.get("name") if isinstance(environment, dict) else environment

    @property
    def stage(self) -> str | None:
        return self.body.get("env", {}).get("STAGE")

    @property
    def branch(self) -> str | None:
        """The one branch the job's `if:` lets it run on, if it names one."""
        found = BRANCH_CONDITION.findall(str(self.body.get("if", "")))
        return found[0] if len(found) == 1 else None

    @property
    def credentials_step(self) -> dict[str, Any] | None:
        steps = [step for step in self.steps if str(step.get("uses", "")).startswith(f"{CREDENTIALS_ACTION}@")]
        return steps[0] if steps else None

    def oidc_subject(self, repository: str) -> str | None:
        """The `sub` of the OIDC token GitHub gives the job: its environment's, or its branch's."""
        if self.environment is not None:
            return f"repo:{repository}:environment:{self.environment}"
        if self.branch is not None:
            return f"repo:{repository}:ref:refs/heads/{self.branch}"
        return None


def jobs(github: Path = GITHUB_DIR) -> list[Job]:
    return [
        Job(path.name, job_id, body)
        for path in workflow_files(github)
        for job_id, body in load(path).get("jobs", {}).items()
    ]


def deploying_jobs(github: Path = GITHUB_DIR) -> list[Job]:
    return [job for job in jobs(github) if job.credentials_step is not None]


def _uses(github: Path) -> Iterator[tuple[str, str]]:
    """(file, `uses:` value) of every step and reusable-workflow call, composite actions included."""
    for job in jobs(github):
        if "uses" in job.body:
            yield job.workflow, str(job.body["uses"])
        for step in job.steps:
            if "uses" in step:
                yield job.workflow, str(step["uses"])
    for path in action_files(github):
        for step in load(path).get("runs", {}).get("steps", []):
            if "uses" in step:
                yield str(path.relative_to(github)), str(step["uses"])


def unpinned_uses(github: Path = GITHUB_DIR) -> list[str]:
    """Every action used by a tag, a branch or a short SHA rather than a full commit SHA (local
    actions, `./...`, are this commit's own files)."""
    return [f"{where}: {uses}" for where, uses in _uses(github) if not uses.startswith("./") and not PINNED.match(uses)]


def permission_problems(github: Path = GITHUB_DIR) -> list[str]:
    """Workflows that grant anything at the top (every job must say what it needs), and jobs
    that do not declare their permissions; an OIDC token only for a job that assumes a role."""
    problems = [
        f"{path.name}: top-level permissions {load(path).get('permissions')!r}, not {{}}"
        for path in workflow_files(github)
        if load(path).get("permissions") != {}
    ]
    for job in jobs(github):
        permissions = job.body.get("permissions")
        if not isinstance(permissions, dict):
            problems.append(f"{job.where}: declares no permissions")
            continue
        if permissions.get("id-token") == "write" and job.credentials_step is None:
            problems.append(f"{job.where}: may request an OIDC token but assumes no role")
        if job.credentials_step is not None and permissions.get("id-token") != "write":
            problems.append(f"{job.where}: assumes a role without id-token: write")
        problems += [
            f"{job.where}: {scope}: {level}"
            for scope, level in permissions.items()
            if (scope, level) not in (("contents", "read"), ("id-token", "write"))
        ]
    return problems


def concurrency_problems(github: Path = GITHUB_DIR) -> list[str]:
    """Deploys of one stage never overlap: every deploying job is in the queue `deploy-<stage>`,
    whatever its workflow, and a queued deploy never cancels a running one."""
    problems = []
    for job in deploying_jobs(github):
        concurrency = job.body.get("concurrency")
        expected = {"group": f"deploy-{job.stage}", "cancel-in-progress": False}
        if concurrency != expected:
            problems.append(f"{job.where}: concurrency {concurrency!r}, not {expected!r}")
    return problems


def assumed_role(job: Job) -> str:
    """The ARN the job's credentials step assumes, as the job computes it: `mlops deploy-role` for
    the job's stage, run here; an AssertionError if the job gets it any other way."""
    step = job.credentials_step
    assert step is not None, f"{job.where}: assumes no role"
    match = ROLE_OUTPUT.match(str(step.get("with", {}).get("role-to-assume", "")))
    assert match, f"{job.where}: role-to-assume is not the output of the deploy-role step"
    (source,) = [candidate for candidate in job.steps if candidate.get("id") == match[1]]
    assert source.get("run") == ROLE_STEP_RUN, f"{job.where}: the role comes from {source.get('run')!r}"
    assert "aws-access-key-id" not in step.get("with", {}), f"{job.where}: stored keys"
    return deploy_role_outputs(str(job.stage))["role"]


@functools.cache
def deploy_role_outputs(stage: str) -> dict[str, str]:
    """What the deploy-role step writes to $GITHUB_OUTPUT for `stage`: the real `mlops` command, run."""
    mlops = Path(sys.executable).with_name("mlops")
    printed = subprocess.run(
        [str(mlops), "deploy-role", "--stage", stage], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split("=", 1) for line in printed.splitlines())
