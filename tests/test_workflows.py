"""The GitHub Actions workflows (.github/), checked offline: actionlint, zizmor, every action pinned
by commit SHA, least permissions per job, one uncancelled deploy queue per stage, and the deploy
script's CDK CLI call. Each check is also run on a broken copy, which it must reject."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from cli_support import run_mlops
from workflow_support import (
    GITHUB_DIR,
    REPO_ROOT,
    concurrency_problems,
    deploying_jobs,
    load,
    permission_problems,
    unpinned_uses,
    workflow_files,
)

from infra import naming
from training.networks import NETWORKS

ZIZMOR = Path(sys.executable).with_name("zizmor")
ZIZMOR_OPTIONS = ("--offline", "--persona", "pedantic", "--no-progress", "--color", "never")
CHECKOUT = "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1"
STAGES = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]["stages"]


def actionlint(files: list[Path]) -> list[dict[str, object]]:
    result = subprocess.run(
        ["node", str(REPO_ROOT / "tests" / "actionlint.cjs"), *map(str, files)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout)


def zizmor(github: Path) -> subprocess.CompletedProcess[str]:
    """zizmor offline (its online audits ask GitHub's API), pedantic: every finding it can make."""
    return subprocess.run(
        [str(ZIZMOR), *ZIZMOR_OPTIONS, "--config", str(github / "zizmor.yml"), str(github)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def broken_copy(tmp_path: Path, workflow: str, edit: Callable[[str], str]) -> Path:
    """A copy of .github/ with one workflow's text edited."""
    copy = tmp_path / ".github"
    shutil.copytree(GITHUB_DIR, copy)
    path = copy / "workflows" / workflow
    edited = edit(path.read_text())
    assert edited != path.read_text(), "the edit changed nothing"
    path.write_text(edited)
    return copy


def test_actionlint_finds_nothing() -> None:
    assert actionlint(workflow_files()) == []


def test_actionlint_rejects_a_broken_workflow(tmp_path: Path) -> None:
    copy = broken_copy(tmp_path, "ci.yml", lambda text: text.replace("needs: [deploy-dev]", "needs: [deploy-qa]"))
    (finding,) = actionlint([copy / "workflows" / "ci.yml"])
    assert finding["kind"] == "job-needs" and "deploy-qa" in str(finding["message"])


def test_zizmor_finds_nothing() -> None:
    result = zizmor(GITHUB_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout


def test_zizmor_rejects_an_unpinned_action(tmp_path: Path) -> None:
    copy = broken_copy(tmp_path, "release.yml", lambda text: text.replace(CHECKOUT, "actions/checkout@v7", 1))
    result = zizmor(copy)
    assert result.returncode != 0
    assert "unpinned-uses" in result.stdout and "actions/checkout@v7" in result.stdout


def test_zizmor_rejects_a_job_with_a_token_that_can_write(tmp_path: Path) -> None:
    copy = broken_copy(tmp_path, "ci.yml", lambda text: text.replace("permissions: {}", "permissions: write-all", 1))
    result = zizmor(copy)
    assert result.returncode != 0 and "excessive-permissions" in result.stdout


def test_every_action_is_pinned_by_full_commit_sha() -> None:
    assert unpinned_uses() == []


@pytest.mark.parametrize("tag", ["v7", "v7.0.1", "3d3c42e"])
def test_an_action_pinned_by_tag_or_short_sha_is_reported(tmp_path: Path, tag: str) -> None:
    copy = broken_copy(tmp_path, "ci.yml", lambda text: text.replace(CHECKOUT, f"actions/checkout@{tag}", 1))
    assert unpinned_uses(copy) == [f"ci.yml: actions/checkout@{tag}"]


def test_an_unpinned_action_inside_the_composite_action_is_reported(tmp_path: Path) -> None:
    copy = tmp_path / ".github"
    shutil.copytree(GITHUB_DIR, copy)
    action = copy / "actions" / "setup" / "action.yml"
    action.write_text(action.read_text().replace("@820762786026740c76f36085b0efc47a31fe5020", "@v7"))
    assert unpinned_uses(copy) == ["actions/setup/action.yml: actions/setup-node@v7"]


def test_every_job_declares_least_permissions() -> None:
    assert permission_problems() == []


def test_a_job_without_permissions_is_reported(tmp_path: Path) -> None:
    copy = tmp_path / ".github"
    shutil.copytree(GITHUB_DIR, copy)
    path = copy / "workflows" / "ci.yml"
    workflow = load(path)
    del workflow["jobs"]["test"]["permissions"]
    path.write_text(yaml.safe_dump(workflow, sort_keys=False))
    assert permission_problems(copy) == ["ci.yml: job test: declares no permissions"]


def test_an_oidc_token_for_a_job_that_assumes_no_role_is_reported(tmp_path: Path) -> None:
    copy = tmp_path / ".github"
    shutil.copytree(GITHUB_DIR, copy)
    path = copy / "workflows" / "ci.yml"
    workflow = load(path)
    workflow["jobs"]["synth"]["permissions"]["id-token"] = "write"
    path.write_text(yaml.safe_dump(workflow, sort_keys=False))
    assert permission_problems(copy) == ["ci.yml: job synth: may request an OIDC token but assumes no role"]


def test_deploys_of_one_stage_queue_in_one_group_and_never_cancel_each_other() -> None:
    assert concurrency_problems() == []
    groups: dict[str | None, set[str]] = {job.stage: set() for job in deploying_jobs()}
    for job in deploying_jobs():
        groups[job.stage].add(job.body["concurrency"]["group"])
    assert {stage: len(names) for stage, names in groups.items()} == {"dev": 1, "prod": 1}


def test_a_deploy_that_cancels_the_running_one_is_reported(tmp_path: Path) -> None:
    copy = broken_copy(
        tmp_path,
        "release.yml",
        lambda text: text.replace(
            "group: deploy-prod\n      cancel-in-progress: false", "group: deploy-prod\n      cancel-in-progress: true"
        ),
    )
    assert [problem.split(":")[1] for problem in concurrency_problems(copy)] == [" job release-prod"]


def test_the_release_workflow_offers_every_registered_network() -> None:
    inputs = load(GITHUB_DIR / "workflows" / "release.yml")[True]["workflow_dispatch"]["inputs"]
    assert inputs["network"]["options"] == list(NETWORKS)


def test_the_deploy_script_deploys_every_stack_but_the_github_deploy_one_through_change_sets(tmp_path: Path) -> None:
    """The script run as CI runs it, with a stand-in CDK CLI that records its calls."""
    root = tmp_path / "repo"
    (root / ".github").mkdir(parents=True)
    shutil.copy(GITHUB_DIR / "deploy-stage.sh", root / ".github" / "deploy-stage.sh")
    stacks = [
        "mlops-dev-storage",
        "mlops-dev-pipelines",
        naming.stack_name("mlops-dev", naming.GITHUB_DEPLOY_STACK_SUFFIX),
    ]
    calls = tmp_path / "calls"
    fake = root / "node_modules" / ".bin" / "cdk"
    fake.parent.mkdir(parents=True)
    fake.write_text(
        f'#!/usr/bin/env bash\necho "$*" >> {calls}\n[ "$1" != list ] || printf "%s\\n" {" ".join(stacks)}\n'
    )
    fake.chmod(0o755)
    subprocess.run(
        ["bash", str(root / ".github" / "deploy-stage.sh"), "dev"],
        check=True,
        capture_output=True,
        env={key: value for key, value in os.environ.items() if not key.startswith("AWS_")},
    )
    synth, listing, deploy = calls.read_text().splitlines()
    assert synth == "synth -c stage=dev --quiet --output cdk.out"
    assert listing == "list --app cdk.out"
    assert deploy.split() == [
        "deploy",
        "mlops-dev-storage",
        "mlops-dev-pipelines",
        "--app",
        "cdk.out",
        "--method=change-set",
        "--require-approval",
        "broadening",
        "--concurrency",
        "4",
        "--progress",
        "events",
    ]


def test_deploy_role_prints_the_step_outputs_from_cdk_json_and_refuses_a_stage_github_does_not_deploy(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prod = STAGES["prod"]
    code, out, _ = run_mlops(monkeypatch, capsys, "deploy-role", "--stage", "prod")
    assert (code, out.splitlines()) == (
        0,
        [f"role=arn:aws:iam::{prod['account']}:role/mlops-prod-github-deploy", f"region={prod['region']}"],
    )
    code, _, err = run_mlops(monkeypatch, capsys, "deploy-role", "--stage", "local")
    assert code == 2 and "stage local is not deployed from GitHub" in err
