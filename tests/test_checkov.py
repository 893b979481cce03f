"""checkov on every stage's synthesized templates, an endpoint stack included: no finding without a
written reason (`infra/checkov_skips.json`: check id, the resources it may fail on, why), and no
reason left over that matches no finding.

checkov runs from `.venv-checkov` (made by `./dev.sh test`): it pins boto3==1.35.49 and
packaging<24, which cannot share the project's environment.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from synth_support import REPO_ROOT, app_module, new_app, served_version_arn

from infra import naming
from infra.config import load_stage_config

pytestmark = pytest.mark.slow

STAGES = ("local", "dev", "prod")
CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"
SKIPS: dict[str, dict[str, Any]] = json.loads((REPO_ROOT / "infra" / "checkov_skips.json").read_text())


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """stage -> checkov's findings on the stage's templates, with an endpoint stack for the cnn."""
    assert CHECKOV.is_file(), f"{CHECKOV} is missing: ./dev.sh test installs checkov there"
    # One folder holding every stage's templates (their names start with mlops-<stage>-): one
    # checkov run. Given several --directory, checkov 3.3.30 reports the first one's files again.
    templates = tmp_path_factory.mktemp("checkov-templates")
    for stage in STAGES:
        outdir = tmp_path_factory.mktemp(f"synth-{stage}")
        arn = served_version_arn(stage, "cnn", 1)
        app = new_app(stage, outdir, **{naming.model_package_context_key("cnn"): arn})
        app_module().compose(app, load_stage_config(app.node))
        app.synth()
        for template in outdir.glob("*.template.json"):
            shutil.copy(template, templates / template.name)
    command = [str(CHECKOV), "--framework", "cloudformation", "--output", "json", "--skip-download"]
    ran = subprocess.run([*command, "--directory", str(templates)], capture_output=True, text=True, timeout=300)
    assert ran.returncode in (0, 1), ran.stderr  # 1: some check failed
    report = json.loads(ran.stdout)
    assert report["summary"]["parsing_errors"] == 0
    return {
        stage: {
            outcome: [
                check for check in report["results"][outcome] if check["file_path"].startswith(f"/mlops-{stage}-")
            ]
            for outcome in ("passed_checks", "failed_checks")
        }
        for stage in STAGES
    }


def _findings(report: dict[str, Any], outcome: str) -> list[tuple[str, str, str]]:
    """(check id, template file, resource) of every check with that outcome."""
    return [(check["check_id"], Path(check["file_path"]).name, check["resource"]) for check in report[outcome]]


@pytest.mark.parametrize("stage", STAGES)
def test_every_finding_has_a_written_reason(reports: dict[str, dict[str, Any]], stage: str) -> None:
    report = reports[stage]
    templates = {Path(check["file_path"]).name for check in report["passed_checks"]}
    # Every template with a resource checkov checks (the monitoring stack holds only a dashboard).
    stacks = ("endpoint-cnn", "execution-role", "pipelines", "storage")
    assert {f"mlops-{stage}-{stack}.template.json" for stack in stacks} <= templates, templates
    unexplained = [
        finding
        for finding in _findings(report, "failed_checks")
        if finding[0] not in SKIPS or not finding[2].startswith(tuple(SKIPS[finding[0]]["resources"]))
    ]
    assert unexplained == [], "fix these or give a reason in infra/checkov_skips.json"


def test_every_reason_still_matches_a_finding(reports: dict[str, dict[str, Any]]) -> None:
    """In some stage: a stage may lack the resource a reason is about (a stage that trains nothing)."""
    failed = [finding for report in reports.values() for finding in _findings(report, "failed_checks")]
    for check_id, skip in SKIPS.items():
        assert len(skip["reason"].split()) >= 6, f"{check_id}: a real reason, please"
        for resource in skip["resources"]:
            assert any(f[0] == check_id and f[2].startswith(resource) for f in failed), (
                f"{check_id} {resource} is stale"
            )


def test_the_endpoint_model_is_network_isolated(reports: dict[str, dict[str, Any]]) -> None:
    """CKV_AWS_370: the serving container needs no network (code/lib holds its packages)."""
    for stage, report in reports.items():
        passed = {(check_id, resource) for check_id, _, resource in _findings(report, "passed_checks")}
        assert any(check_id == "CKV_AWS_370" for check_id, _ in passed), stage
