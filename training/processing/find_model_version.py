"""The batch transform pipeline's ResolveModel step: which approved model version a run uses.

SageMaker Pipelines runs this in a processing job on the training image, from the unpacked source
bundle, when a run starts:

    python3 -m processing.find_model_version --group mlops-prod-cnn --region eu-west-1 \\
        --version 0 --output-dir /opt/ml/processing/model

Version 0 means the newest Approved version of the model package group (what `mlops deploy`
serves); another number names one, which must be Approved. It writes `model.json`: the version's
`model_package_arn` (the Model step creates the model from it), `model_data_url`, `baseline_uri`
(its drift baseline, empty when it has none), `group` and `version`. So the version is never
frozen into the pipeline's definition: approving a new one needs no deploy. Like the Champion
step it calls AWS itself, so it runs with a network whatever the stage's isolation. A version
that does not exist, or is not Approved, exits 2 with one `error: ...` line; a call that fails
exits 1. Standard library and boto3 only.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from processing.find_champion import APPROVED, find_champion

log = logging.getLogger("find_model_version")
MODEL_FILE = "model.json"
EXIT_BAD_INPUT = 2  # contract.EXIT_BAD_INPUT, without importing TensorFlow with it


class NotServable(ValueError):
    """The version asked for cannot be used: the message says why."""


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python3 -m processing.find_model_version", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--group", required=True, help="the model package group (a name, or another account's ARN)")
    parser.add_argument("--region", required=True)
    parser.add_argument("--version", type=int, default=0, help="0: the newest Approved version")
    parser.add_argument("--output-dir", type=Path, required=True, help="where model.json goes")
    arguments = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        chosen = resolve(boto3.client("sagemaker", region_name=arguments.region), arguments.group, arguments.version)
    except NotServable as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(EXIT_BAD_INPUT)
    except (BotoCoreError, ClientError) as error:
        print(f"error: cannot read the versions of {arguments.group}: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    arguments.output_dir.mkdir(parents=True, exist_ok=True)
    (arguments.output_dir / MODEL_FILE).write_text(json.dumps(chosen, indent=2) + "\n")
    log.info("%s version %s: %s", chosen["group"], chosen["version"], chosen["model_data_url"])


def resolve(sagemaker: Any, group: str, version: int) -> dict[str, Any]:
    """model.json's content for `version` of `group` (0: the newest Approved one)."""
    if version < 0:
        raise NotServable(f"version {version}: versions are numbered from 1 (0 means the newest Approved)")
    if version == 0:
        champion = find_champion(sagemaker, group)
        if champion is None:
            raise NotServable(f"{group} has no Approved version")
        arn = champion.model_package_arn
    else:
        pages = sagemaker.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group)
        named = [
            summary["ModelPackageArn"]
            for page in pages
            for summary in page["ModelPackageSummaryList"]
            if summary.get("ModelPackageVersion") == version
        ]
        if not named:
            raise NotServable(f"{group} has no version {version}")
        arn = named[0]
    package = sagemaker.describe_model_package(ModelPackageName=arn)
    if package.get("ModelApprovalStatus") != APPROVED:
        raise NotServable(
            f"{group} version {package['ModelPackageVersion']} is {package.get('ModelApprovalStatus')}, not {APPROVED}"
        )
    baselines = package.get("DriftCheckBaselines", {}).get("ModelDataQuality", {})
    return {
        "group": group,
        "version": int(package["ModelPackageVersion"]),
        "model_package_arn": package["ModelPackageArn"],
        "model_data_url": package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"],
        "baseline_uri": baselines.get("Statistics", {}).get("S3Uri", ""),
    }


if __name__ == "__main__":
    main()
