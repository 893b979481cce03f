"""`mlops deploy` (an approved model to its endpoint stack) and `mlops cost` (what endpoints cost).

`deploy` reads the model registry of the AWS this shell points at (its profile, credentials,
region and `AWS_ENDPOINT_URL`, so a moto server works too), picks the newest approved version
of the network's group, and runs `cdk deploy` of that network's endpoint stack alone: in AWS with a
change set, showing an IAM or security group broadening and asking before it is applied
(`--require-approval`); on a moto server directly (see `mlops.cdk`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from infra import naming
from mlops.aws import ShellAws
from mlops.cdk import APPROVAL_LEVELS, CdkCli
from mlops.cli_output import YesOption, confirm
from mlops.commands import NetworkArgument, known_network
from mlops.costs import endpoint_cost_lines, load_prices
from mlops.endpoint_stacks import deploy_endpoint
from mlops.errors import UsageError
from mlops.registry import approved_version
from mlops.stages import LOCAL_STAGE, cdk_context, enabled_network, stage_config, target_stage

app = typer.Typer()
console = Console()


@app.command()
def deploy(
    network: NetworkArgument,
    stage: Annotated[
        str | None, typer.Option(help="stage in cdk.json (default: its `stage` context)", show_default=False)
    ] = None,
    version: Annotated[
        int | None, typer.Option(help="model package version (default: the newest approved)", show_default=False)
    ] = None,
    require_approval: Annotated[
        str | None,
        typer.Option(
            help=f"the CDK CLI's --require-approval: {', '.join(APPROVAL_LEVELS)} (default: broadening in AWS, "
            "which shows IAM and security group broadenings and asks on this terminal; never on a moto server)",
            show_default=False,
        ),
    ] = None,
    yes: YesOption = False,
) -> None:
    """Deploy the newest approved model of NETWORK (or --version) to its endpoint stack."""
    if require_approval is not None and require_approval not in APPROVAL_LEVELS:
        raise UsageError(f"--require-approval {require_approval!r}: expected one of {', '.join(APPROVAL_LEVELS)}")
    known_network(network)
    config = target_stage(stage)
    enabled_network(config, network)
    aws = ShellAws(config.region)
    # A stage with `promote_from` serves its source stage's versions, read across accounts.
    group = config.served_model_package_group(network)
    sagemaker = aws.client("sagemaker")
    model = approved_version(sagemaker, group, version)
    endpoint = naming.endpoint_name(config.prefix(), network)
    confirm(f"deploy {group} version {model.version} to endpoint {endpoint} of stage {config.name}", yes)
    console.print(f"deploying {group} version {model.version} ({model.arn})", highlight=False)
    with tempfile.TemporaryDirectory(prefix="mlops-cdk.out-") as assembly:
        cdk = CdkCli(
            target=aws, stage=config.name, output_dir=Path(assembly), echo=_echo, require_approval=require_approval
        )
        outputs = deploy_endpoint(cdk, config, network, model, sagemaker)
    endpoint = outputs.get("EndpointName", endpoint)
    console.print(f"endpoint {endpoint} serves version {model.version} of {group}", highlight=False)


@app.command()
def cost(
    stage: Annotated[
        str | None, typer.Option(help="one stage of cdk.json (default: every stage)", show_default=False)
    ] = None,
) -> None:
    """Estimate the monthly cost of each stage's endpoints from the dated price table."""
    configs = [stage_config(name) for name in ([stage] if stage else sorted(cdk_context()["stages"]))]
    prices = load_prices()
    for config in configs:
        for line in endpoint_cost_lines(config, prices, billed=config.name != LOCAL_STAGE):
            console.print(line, highlight=False, markup=False, soft_wrap=True)


@app.command("deploy-role")
def deploy_role(
    stage: Annotated[
        str | None, typer.Option(help="stage in cdk.json (default: its `stage` context)", show_default=False)
    ] = None,
) -> None:
    """Print the role GitHub Actions assumes to deploy the stage, and its region, as `role=ARN` and
    `region=REGION` lines (what a workflow step appends to $GITHUB_OUTPUT; docs/cicd.md)."""
    config = stage_config(stage)
    if config.github is None or config.account is None:
        raise UsageError(f"stage {config.name} is not deployed from GitHub: it has no `github` in cdk.json")
    typer.echo(f"role={naming.github_deploy_role_arn(config.prefix(), config.account)}")
    typer.echo(f"region={config.region}")


def _echo(line: str) -> None:
    console.print(f"  {line}", style="dim", markup=False, highlight=False, soft_wrap=True)
