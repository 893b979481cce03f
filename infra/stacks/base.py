"""What every stack of the project shares: its name, environment, synthesizer and tags."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from infra import naming
from infra.config import StageConfig


class ProjectStack(cdk.Stack):
    """A stack named `<project>-<stage>-<suffix>`, e.g. `mlops-local-storage`.

    No BootstrapVersion rule: with it, every stack has a `BootstrapVersion` parameter that the
    local moto server fails to resolve on updates. The CLI still refuses to deploy into an
    environment whose bootstrap stack is too old (it checks the version itself before
    publishing assets), so real accounts keep that protection without extra deploy flags.
    """

    def __init__(self, scope: Construct, config: StageConfig, suffix: str, *, description: str) -> None:
        name = naming.stack_name(config.prefix(), suffix)
        super().__init__(
            scope,
            name,
            stack_name=name,
            description=description,
            env=cdk.Environment(account=config.account, region=config.region),
            synthesizer=cdk.DefaultStackSynthesizer(generate_bootstrap_version_rule=False),
        )
        self.config = config
        cdk.Tags.of(self).add("project", config.project)
        cdk.Tags.of(self).add("stage", config.name)
