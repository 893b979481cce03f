"""The stages of cdk.json as the CLI reads them: every command that takes `--stage` goes through here."""

from __future__ import annotations

import json
from typing import Any

from infra.config import DEFAULT_PROJECT, ConfigError, StageConfig, parse_stage_config
from mlops.aws import ShellAws
from mlops.cdk import REPO_ROOT
from mlops.errors import UsageError

LOCAL_STAGE = "local"  # the stage `mlops local` deploys to the embedded moto server


def cdk_context() -> dict[str, Any]:
    return json.loads((REPO_ROOT / "cdk.json").read_text())["context"]


def stage_config(stage: str | None) -> StageConfig:
    """The stage from cdk.json (default: its `stage` context), or a UsageError naming the problem."""
    context = cdk_context()
    try:
        return parse_stage_config(
            context.get("stages"),
            stage or context["stage"],
            context.get("project", DEFAULT_PROJECT),
            context.get("github_repository"),
        )
    except ConfigError as error:
        raise UsageError(str(error)) from None


def enabled_network(config: StageConfig, network: str) -> str:
    if network not in config.networks:
        raise UsageError(
            f"network {network!r} is not enabled in stage {config.name} (its networks: {', '.join(config.networks)})"
        )
    return network


def target_stage(stage: str | None) -> StageConfig:
    """The stage a command that talks to AWS acts on: `stage`, else cdk.json's default. When that
    default is the local stage and the shell points at no local AWS (a moto server, as `mlops env`
    sets up) but holds credentials of another account than the local stage's (STS says whose), the
    command would act on that account under the local stage's names: it is refused, and --stage
    asked for. Credentials that STS does not accept (none, expired) go on to fail as they do."""
    config = stage_config(stage)
    if stage is not None or config.name != LOCAL_STAGE:
        return config
    aws = ShellAws(config.region)
    if aws.is_moto:
        return config
    try:
        account = aws.client("sts").get_caller_identity()["Account"]
    except Exception:  # no identity to judge by (no credentials, no answer): the command meets and reports it
        return config
    if account != config.account:
        stages = ", ".join(sorted(cdk_context()["stages"]))
        raise UsageError(
            f"no --stage given: the default stage {LOCAL_STAGE} is for a local AWS (mlops up), but this shell's "
            f"credentials belong to AWS account {account}; give --stage (one of {stages})"
        )
    return config
