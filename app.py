#!/usr/bin/env python3
"""The CDK app: reads the stage configuration once and composes the stacks.

    npx cdk synth -c stage=local      # default stage, deployable to the embedded moto server
    npx cdk deploy --all -c stage=prod
"""

import aws_cdk as cdk

from infra.config import load_stage_config

app = cdk.App()
config = load_stage_config(app.node)
env = cdk.Environment(account=config.account, region=config.region)

app.synth()
