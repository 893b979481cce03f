"""The Champion step of a network's pipeline, and where the Evaluate step finds what it wrote.

    Champion (Processing)   processing/find_champion.py: the newest Approved version of the network's model package
                            group, its model.tar.gz and champion.json, into `<pipelines>/<execution>/champion`

It reads no other step's output, so SageMaker Pipelines runs it while Train runs. It is the one
job that calls AWS itself (ListModelPackages, DescribeModelPackage, then S3), so it runs without
network isolation whatever the stage's setting; in a VPC it needs the SageMaker API and S3
endpoints. The execution role's `ReadApprovedVersions<Network>` statement
(infra/constructs/training_pipeline.py) allows exactly those reads of this network's group.
"""

from __future__ import annotations

from typing import Any

from infra.config import StageConfig
from infra.definitions.parts import (
    ARTIFACTS_BUCKET,
    EXECUTION_ID,
    JOB_RETRY,
    PROCESSING_ROOT,
    SERVICE_RETRY,
    TRAINING_IMAGE_URI,
    bundle_command,
    code_input,
    get,
    join,
    placeholder,
    processing_input,
    processing_job,
    processing_outputs,
    s3,
)
from infra.naming import model_package_group_name
from training.networks import Network

CHAMPION_STEP = "Champion"
CHAMPION_OUTPUT = "champion"
CHAMPION_MODULE = "processing.find_champion"
CHAMPION_DIR = f"{PROCESSING_ROOT}/{CHAMPION_OUTPUT}"
# A registry lookup and one model download: minutes would mean something is wrong.
CHAMPION_MAX_SECONDS = 1800


def champion_command(config: StageConfig, network: Network) -> str:
    group = model_package_group_name(config.prefix(), network.name)
    return bundle_command(
        f"python3 -m {CHAMPION_MODULE} --group {group} --region {config.region} --output-dir {CHAMPION_DIR}"
    )


def champion_step(config: StageConfig, network: Network) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "AppSpecification": {
            # The training image: it has Python and boto3, which processing/find_champion.py needs.
            "ImageUri": placeholder(TRAINING_IMAGE_URI),
            "ContainerEntrypoint": ["/bin/bash", "-c", champion_command(config, network)],
        },
        "ProcessingInputs": [code_input()],
        "ProcessingOutputConfig": processing_outputs(
            CHAMPION_OUTPUT,
            join(s3(ARTIFACTS_BUCKET, f"pipelines/{network.name}/"), EXECUTION_ID, f"/{CHAMPION_OUTPUT}"),
            CHAMPION_DIR,
        ),
        # The instance type Evaluate uses: no other price to look up, and it is up in seconds.
        **processing_job(
            config, config.training_instance_type(network.name), max_seconds=CHAMPION_MAX_SECONDS, isolated=False
        ),
    }
    return {
        "Name": CHAMPION_STEP,
        "Type": "Processing",
        "Arguments": arguments,
        "RetryPolicies": [SERVICE_RETRY, JOB_RETRY],
    }


def champion_input() -> dict[str, Any]:
    """The Evaluate step's input of what the Champion step wrote (champion.json, and the model)."""
    output = f"Steps.{CHAMPION_STEP}.ProcessingOutputConfig.Outputs['{CHAMPION_OUTPUT}'].S3Output.S3Uri"
    return processing_input(CHAMPION_OUTPUT, get(output), CHAMPION_DIR)
