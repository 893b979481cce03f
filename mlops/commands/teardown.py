"""`mlops undeploy NETWORK` (its endpoint stack) and `mlops destroy STAGE` (every stack of a stage):
tear-down, in the AWS this shell points at, after saying what goes and asking (`--yes` skips it).

Endpoints bill by the hour while they exist; `undeploy` deletes the network's endpoint stack (the
endpoint, its config, model, alarms and autoscaling), nothing else. `destroy` deletes the stage's
stacks as `cdk destroy` would, endpoint stacks first, after emptying the buckets and deleting the
model versions that would stop it (`mlops.teardown`); what the stage retains stays, named.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from infra import naming
from mlops.aws import ShellAws
from mlops.buckets import empty_bucket
from mlops.cli_output import YesOption, confirm
from mlops.commands import NetworkArgument
from mlops.commands.training import StageOption, resolve
from mlops.errors import UsageError
from mlops.stages import stage_config
from mlops.teardown import delete_model_versions, delete_stack, deployed, plan, stage_stacks

app = typer.Typer()
console = Console()


@app.command()
def undeploy(network: NetworkArgument, stage: StageOption = None, yes: YesOption = False) -> None:
    """Delete NETWORK's endpoint stack: its endpoint stops serving, and billing."""
    config, spec = resolve(network, stage)
    cloudformation = ShellAws(config.region).client("cloudformation")
    stack = naming.endpoint_stack_name(config.prefix(), spec.name)
    if not deployed(cloudformation, [stack]):
        raise UsageError(f"stack {stack} is not deployed in {config.region} of this account: nothing to undeploy")
    endpoint = naming.endpoint_name(config.prefix(), spec.name)
    confirm(f"delete stack {stack}: endpoint {endpoint} of stage {config.name} stops serving", yes)
    delete_stack(cloudformation, stack)
    console.print(f"deleted stack {stack}: endpoint {endpoint} is gone", highlight=False)


@app.command()
def destroy(
    stage: Annotated[str, typer.Argument(help="the stage in cdk.json whose stacks go", show_default=False)],
    yes: YesOption = False,
) -> None:
    """Delete every stack of STAGE (endpoint stacks first), emptying the buckets they delete first."""
    config = stage_config(stage)
    aws = ShellAws(config.region)
    if config.account is not None and not aws.is_moto:
        account = aws.client("sts").get_caller_identity()["Account"]
        if account != config.account:
            raise UsageError(f"stage {config.name} is in account {config.account}; these credentials are of {account}")
    cloudformation = aws.client("cloudformation")
    stacks = stage_stacks(cloudformation, config)
    if not stacks:
        raise UsageError(f"stage {config.name} has no stack deployed in {config.region} of this account")
    teardown = plan(cloudformation, stacks)
    console.print(f"stage {config.name}: deleting, in this order: {', '.join(teardown.stacks)}", highlight=False)
    for bucket in teardown.buckets:
        console.print(f"  emptied first, every version: s3://{bucket}", highlight=False)
    for group in teardown.groups:
        console.print(f"  its model versions deleted first: model package group {group}", highlight=False)
    for kept in teardown.kept:
        console.print(f"  kept (the stage retains it): {kept}", highlight=False, soft_wrap=True)
    confirm(f"destroy stage {config.name}", yes)
    sagemaker, s3 = aws.client("sagemaker"), aws.client("s3")
    for group in teardown.groups:
        deleted = delete_model_versions(sagemaker, group)
        done = (
            f"deleted {deleted} model versions of {group}"
            if deleted is not None
            else (f"{group}: this AWS does not implement DeleteModelPackage (moto); its versions stay")
        )
        console.print(done, highlight=False)
    for bucket in teardown.buckets:
        console.print(f"emptied s3://{bucket}: {empty_bucket(s3, bucket)} objects", highlight=False)
    for stack in teardown.stacks:
        delete_stack(cloudformation, stack)
        console.print(f"deleted stack {stack}", highlight=False)
