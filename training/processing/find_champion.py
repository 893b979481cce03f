"""The pipeline's Champion step: the network's approved model, for the Evaluate step to score.

SageMaker Pipelines runs this in a processing job on the training image, from the unpacked source
bundle, beside the Train step:

    python3 -m processing.find_champion --group mlops-prod-cnn --region eu-west-1 \\
        --output-dir /opt/ml/processing/champion

It finds the newest Approved version of the model package group (the one `mlops deploy` deploys
by default), downloads that version's model.tar.gz into the output folder and writes
champion.json beside it; with no approved version, champion.json says so and nothing else is
written. This is the training pipeline's one job that calls AWS itself (the model registry, then
S3), so it alone there runs without network isolation; the Evaluate step, which runs the models,
stays isolated. boto3 comes with the training image (the SageMaker Python SDK and the AWS CLI it
installs).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from champion_comparison import MODEL_FILE, Champion, write_champion

log = logging.getLogger("champion")
APPROVED = "Approved"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m processing.find_champion", description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", required=True, help="the network's model package group")
    parser.add_argument("--region", required=True)
    parser.add_argument("--output-dir", type=Path, required=True, help="where champion.json (and the model) go")
    arguments = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        champion = find_champion(boto3.client("sagemaker", region_name=arguments.region), arguments.group)
        if champion:
            download(
                boto3.client("s3", region_name=arguments.region),
                champion.model_data_url,
                arguments.output_dir / MODEL_FILE,
            )
    except (BotoCoreError, ClientError) as error:
        print(f"error: cannot read the champion of {arguments.group}: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    write_champion(arguments.output_dir, arguments.group, champion)
    log.info(
        "champion of %s: %s",
        arguments.group,
        f"version {champion.version}, {champion.model_data_url}" if champion else "none approved",
    )


def find_champion(sagemaker: Any, group: str) -> Champion | None:
    """The newest Approved version of `group`, or None. Newest by version number: creation times can tie."""
    pages = sagemaker.get_paginator("list_model_packages").paginate(
        ModelPackageGroupName=group, ModelApprovalStatus=APPROVED
    )
    approved = [summary for page in pages for summary in page["ModelPackageSummaryList"]]
    if not approved:
        return None
    newest = max(approved, key=lambda summary: summary["ModelPackageVersion"])
    package = sagemaker.describe_model_package(ModelPackageName=newest["ModelPackageArn"])
    return Champion(
        group,
        package["ModelPackageArn"],
        int(package["ModelPackageVersion"]),
        package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"],
    )


def download(s3: Any, uri: str, path: Path) -> None:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    s3.download_file(bucket, key, str(path))


if __name__ == "__main__":
    main()
