"""`mlops deploy` (an approved model to its endpoint stack) and `mlops cost` (what endpoints cost).

`deploy` reads the model registry of the AWS this shell points at (its profile, credentials,
region and `AWS_ENDPOINT_URL`, so a moto server works too), picks the newest approved version
of the network's group, and runs `cdk deploy` of that network's endpoint stack alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import boto3
import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console

from infra import naming
from infra.config import DEFAULT_PROJECT, ConfigError, StageConfig, parse_stage_config
from mlops.cli import app
from mlops.commands.local import LOCAL_STAGE
from mlops.costs import endpoint_cost_lines, load_prices
from mlops.errors import RunFailed, UsageError
from mlops.local.cdk import REPO_ROOT, CdkCli

APPROVED = "Approved"

console = Console()


@dataclass(frozen=True)
class ModelVersion:
    arn: str
    version: int
    status: str


@dataclass(frozen=True)
class ShellAws:
    """The AWS this shell's environment points at: a real account, or a moto server."""

    region: str

    @property
    def env(self) -> dict[str, str]:
        return {**{key: value for key, value in os.environ.items() if key.startswith("AWS_")},
                "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}

    @property
    def environment(self) -> str:
        account = self.client("sts").get_caller_identity()["Account"]
        return f"aws://{account}/{self.region}"

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=self.region)


def cdk_context() -> dict[str, Any]:
    return json.loads((REPO_ROOT / "cdk.json").read_text())["context"]


def stage_config(stage: str | None) -> StageConfig:
    """The stage from cdk.json (default: its `stage` context), or a UsageError naming the problem."""
    context = cdk_context()
    try:
        return parse_stage_config(context.get("stages"), stage or context["stage"],
                                  context.get("project", DEFAULT_PROJECT))
    except ConfigError as error:
        raise UsageError(str(error)) from None


def enabled_network(config: StageConfig, network: str) -> str:
    if network not in config.networks:
        raise UsageError(f"network {network!r} is not enabled in stage {config.name} "
                         f"(its networks: {', '.join(config.networks)})")
    return network


def model_versions(sagemaker: Any, group: str, status: str | None = None) -> list[ModelVersion]:
    """Versions of `group` (optionally only those with approval `status`), newest first."""
    query = {"ModelPackageGroupName": group}
    if status:
        query["ModelApprovalStatus"] = status
    try:
        pages = sagemaker.get_paginator("list_model_packages").paginate(**query)
        summaries = [summary for page in pages for summary in page["ModelPackageSummaryList"]]
    except (BotoCoreError, ClientError) as error:
        raise RunFailed(f"cannot read the model registry group {group}: {error}") from None
    versions = [ModelVersion(s["ModelPackageArn"], s["ModelPackageVersion"], s["ModelApprovalStatus"])
                for s in summaries]
    # Version numbers only grow, while creation times can tie.
    return sorted(versions, key=lambda v: v.version, reverse=True)


def approved_version(sagemaker: Any, group: str, version: int | None = None) -> ModelVersion:
    """The newest approved version of `group`, or the given `version` if it is approved."""
    if version is None:
        approved = model_versions(sagemaker, group, APPROVED)
        if not approved:
            raise UsageError(f"no approved version in model package group {group}: approve one first "
                             "(mlops approve)")
        return approved[0]
    matching = [found for found in model_versions(sagemaker, group) if found.version == version]
    if not matching:
        raise UsageError(f"model package group {group} has no version {version}")
    if matching[0].status != APPROVED:
        raise UsageError(f"version {version} of {group} is {matching[0].status}, not {APPROVED}")
    return matching[0]


def deploy_endpoint(cdk: CdkCli, config: StageConfig, network: str, model: ModelVersion) -> dict[str, str]:
    """`cdk deploy` of the network's endpoint stack alone, serving `model`; returns its outputs."""
    stack = naming.endpoint_stack_name(config.prefix(), network)
    cdk = dataclasses.replace(cdk, context={**cdk.context, naming.model_package_context_key(network): model.arn})
    with tempfile.TemporaryDirectory(prefix="cdk-outputs-") as scratch:
        outputs_file = Path(scratch) / "outputs.json"
        # --exclusively: the storage and role stacks it imports from are deployed already, and
        # a model release must not touch them. --method=direct: see CdkCli.deploy.
        cdk.run("deploy", stack, "--exclusively", "--require-approval", "never", "--method=direct",
                "--progress", "events", "--outputs-file", str(outputs_file))
        outputs = json.loads(outputs_file.read_text()) if outputs_file.exists() else {}
    return outputs.get(stack, {})


@app.command()
def deploy(
    network: Annotated[str, typer.Argument(help="network type, e.g. cnn, rnn, autoencoder, transfer")],
    stage: Annotated[str | None, typer.Option(help="stage in cdk.json (default: its `stage` context)",
                                              show_default=False)] = None,
    version: Annotated[int | None, typer.Option(help="model package version (default: the newest approved)",
                                                show_default=False)] = None,
) -> None:
    """Deploy the newest approved model of NETWORK (or --version) to its endpoint stack."""
    config = stage_config(stage)
    enabled_network(config, network)
    aws = ShellAws(config.region)
    group = naming.model_package_group_name(config.prefix(), network)
    model = approved_version(aws.client("sagemaker"), group, version)
    console.print(f"deploying {group} version {model.version} ({model.arn})", highlight=False)
    with tempfile.TemporaryDirectory(prefix="mlops-cdk.out-") as assembly:
        cdk = CdkCli(target=aws, stage=config.name, output_dir=Path(assembly), echo=_echo)
        outputs = deploy_endpoint(cdk, config, network, model)
    endpoint = outputs.get("EndpointName", naming.endpoint_name(config.prefix(), network))
    console.print(f"endpoint {endpoint} serves version {model.version} of {group}", highlight=False)


@app.command()
def cost(
    stage: Annotated[str | None, typer.Option(help="one stage of cdk.json (default: every stage)",
                                              show_default=False)] = None,
) -> None:
    """Estimate the monthly cost of each stage's endpoints from the dated price table."""
    configs = [stage_config(name) for name in ([stage] if stage else sorted(cdk_context()["stages"]))]
    prices = load_prices()
    for config in configs:
        for line in endpoint_cost_lines(config, prices, billed=config.name != LOCAL_STAGE):
            console.print(line, highlight=False, markup=False, soft_wrap=True)


def _echo(line: str) -> None:
    console.print(f"  {line}", style="dim", markup=False, highlight=False, soft_wrap=True)
