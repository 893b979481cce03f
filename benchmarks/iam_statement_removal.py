"""Is every statement a role holds needed? With IAM enforced, remove one statement at a time from a
deployed role and run the network's pipeline (and the endpoint's model download) again: the run
must fail at the step that needed the statement, with AccessDenied naming the action.

    .venv/bin/python benchmarks/iam_statement_removal.py                   # the CNN, execution + pipeline role
    .venv/bin/python benchmarks/iam_statement_removal.py --network rnn --limit 300

One local AWS for the whole benchmark (`mlops local`'s own phases: moto with IAM enforced, synth,
deploy, data), then a first run with every statement in place, which must succeed. The statements
that run's calls matched (as the permissions report matches them) are the ones removed, one at a
time, each followed by a run and the statement put back. Statements no call matched are listed
with the permissions report's reason. Slow (a pipeline run per statement): a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moto.iam.models import iam_backends
from rich.console import Console

from infra import naming
from mlops.local.deployed_pipelines import create_skipped_sagemaker_resources
from mlops.local.iam import EnforcedRoleSessions, is_access_denied
from mlops.local.permissions import permissions_report
from mlops.local.pipeline_executor import LocalPipelineExecutor, StepFailed
from mlops.local.progress import PlainProgress
from mlops.local.report import ReportFolder
from mlops.local.run import LocalRun
from mlops.local.s3 import download_file
from mlops.param_option import parse_parameters
from mlops.stages import LOCAL_STAGE, stage_config
from training.networks import get_network

ENDPOINT_STEP = "endpoint model download"
SUCCEEDED = "RUN SUCCEEDED without it"


@dataclass
class Attempt:
    succeeded: bool
    step: str = ""
    reason: str = ""
    seconds: float = 0.0


class Bench:
    def __init__(self, run: LocalRun) -> None:
        self.run = run
        prefix = run.config.prefix()
        self.pipeline = naming.pipeline_name(prefix, run.network.name)
        self.execution_role = run.report.stack_outputs[naming.stack_name(prefix, "execution-role")]["ExecutionRoleArn"]
        self.pipeline_role = run.aws.client("sagemaker").describe_pipeline(PipelineName=self.pipeline)["RoleArn"]
        self.executor = LocalPipelineExecutor(run.aws, run.folder.pipeline_dir, run.view, roles=run._roles)

    @property
    def roles(self) -> EnforcedRoleSessions:
        assert isinstance(self.run._roles, EnforcedRoleSessions)
        return self.run._roles

    def attempt(self, overrides: dict[str, str]) -> Attempt:
        """The pipeline, then the model download the endpoint makes as the execution role."""
        started = time.perf_counter()
        execution = self.executor.start(self.pipeline, overrides, description="statement removal benchmark")
        try:
            self.executor.execute(execution)
        except StepFailed as failure:
            return Attempt(False, failure.step, failure.reason, time.perf_counter() - started)
        package = self.run.aws.client("sagemaker").describe_model_package(
            ModelPackageName=execution.registered_model_arn
        )
        model_data = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
        try:
            download_file(
                self.roles.client(self.execution_role, "s3", "endpoint"),
                model_data,
                Path(tempfile.mkdtemp()) / "model.tar.gz",
            )
        except Exception as error:
            if not is_access_denied(error):
                raise
            return Attempt(False, ENDPOINT_STEP, str(error), time.perf_counter() - started)
        return Attempt(True, seconds=time.perf_counter() - started)


def inline_statements(account: str, role_arn: str) -> list[tuple[str, int, dict[str, Any]]]:
    """(policy name, index, statement) of each statement of the role's inline policies."""
    backend = iam_backends[account]["aws"]
    role = backend.get_role_by_arn(role_arn)
    found = []
    for policy in backend.list_role_policies(role.name):
        document = backend.get_role_policy(role.name, policy)[1]
        statements = json.loads(document if isinstance(document, str) else json.dumps(document))["Statement"]
        for index, statement in enumerate(statements if isinstance(statements, list) else [statements]):
            found.append((policy, index, statement))
    return found


def put_without(account: str, role_arn: str, policy: str, index: int | None) -> str:
    """Re-puts `policy` without its statement `index` (None: all of them); returns the original text."""
    backend = iam_backends[account]["aws"]
    role = backend.get_role_by_arn(role_arn)
    original = backend.get_role_policy(role.name, policy)[1]
    document = json.loads(original if isinstance(original, str) else json.dumps(original))
    if index is not None:
        document["Statement"] = [statement for number, statement in enumerate(document["Statement"]) if number != index]
    if document["Statement"]:
        backend.put_role_policy(role.name, policy, json.dumps(document))
    else:  # IAM refuses a policy without statements: the policy goes instead
        backend.delete_role_policy(role.name, policy)
    return original if isinstance(original, str) else json.dumps(original)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="cnn")
    parser.add_argument("--limit", type=int, default=200, help="examples per channel (default 200)")
    parser.add_argument("--epochs", default="1")
    parser.add_argument(
        "--roles",
        choices=("execution", "pipeline", "both"),
        default="both",
        help="whose statements to remove (default both)",
    )
    options = parser.parse_args()
    network = get_network(options.network)
    config = stage_config(LOCAL_STAGE)
    folder = ReportFolder.claim(Path(tempfile.mkdtemp(prefix="iam-removal-")) / network.name)
    overrides = {
        name: str(value)
        for name, value in parse_parameters(
            config, network.name, [f"epochs={options.epochs}", "QualityThreshold=0"]
        ).items()
    }
    started = time.perf_counter()
    with LocalRun(
        network,
        config,
        port=None,
        overrides=overrides,
        limit=options.limit,
        folder=folder,
        view=PlainProgress(Console(), show_logs=False),
    ) as run:
        for phase in run.phases[:4]:  # moto (IAM enforced), synth + bootstrap, deploy, data
            print(f"{phase.name}...", flush=True)
            phase.run()
        assert run._assembly is not None
        create_skipped_sagemaker_resources(
            run.aws, run._assembly, naming.stack_name(config.prefix(), naming.PIPELINES_STACK_SUFFIX)
        )
        bench = Bench(run)
        account = run.aws.account
        before = len(bench.roles.decisions)
        baseline = bench.attempt(overrides)
        if not baseline.succeeded:
            print(f"the run with every statement failed at {baseline.step}: {baseline.reason}")
            return 1
        report = permissions_report(
            account, bench.roles.decisions[before:], network=network.name, networks=list(config.networks)
        )
        print(f"set-up {time.perf_counter() - started:.0f} s; one run with every statement {baseline.seconds:.0f} s\n")
        rows = []
        chosen = {
            "execution": [bench.execution_role],
            "pipeline": [bench.pipeline_role],
            "both": [bench.execution_role, bench.pipeline_role],
        }[options.roles]
        for role_arn in chosen:
            section = next(role for role in report["roles"] if role["arn"] == role_arn)
            for (policy, index, statement), described in zip(
                inline_statements(account, role_arn), section["statements"], strict=False
            ):
                name = statement.get("Sid") or ", ".join(described["actions"])[:50]
                if not described["calls_matched"]:
                    rows.append((section["role"], name, "not removed", described.get("why_unmatched", "")))
                    continue
                original = put_without(account, role_arn, policy, index)
                try:
                    outcome = bench.attempt(overrides)
                finally:
                    iam_backends[account]["aws"].put_role_policy(section["role"], policy, original)
                verdict = SUCCEEDED if outcome.succeeded else f"failed at {outcome.step}"
                message = (
                    f"the calls it matched ({', '.join(described['actions_used'])}) are allowed by another "
                    "statement too"
                    if outcome.succeeded
                    else outcome.reason.splitlines()[0][:200]
                )
                rows.append((section["role"], name, verdict, message))
                print(f"{section['role'][:40]:<40} {name:<32} {verdict} ({outcome.seconds:.0f} s)", flush=True)
    print("\n| role | statement | removed: the run | message |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nwhole benchmark {time.perf_counter() - started:.0f} s")
    return 0 if all(row[2] != SUCCEEDED for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
