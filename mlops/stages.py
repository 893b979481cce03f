"""The stages of cdk.json as the CLI reads them: every command that takes `--stage` goes through here."""

from __future__ import annotations

import json
from typing import Any

from infra.config import DEFAULT_PROJECT, ConfigError, StageConfig, parse_stage_config
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
