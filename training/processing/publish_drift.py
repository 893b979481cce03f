"""The monitor pipeline's PublishMetrics step: what the isolated Monitor step found, as CloudWatch
metrics for the drift alarm.

SageMaker Pipelines runs this on the training image, from the unpacked source bundle, with the
Monitor's output as its input:

    python3 -m processing.publish_drift --region eu-west-1 \\
        --report /opt/ml/processing/drift/drift.json --metric-namespace mlops-prod/drift

It publishes, at the window's end and with the dimension `Network`, `CapturedExamples`,
`UnparsableCaptures` and, when the window holds enough examples to conclude, `DriftScore`
(-log10 of the window's p-value) and `DriftDetected`. It calls CloudWatch, which is why it runs
with a network; it reads nothing but the report. Standard library and boto3 only. A report that
cannot be read exits 2 with one `error: ...` line; a call that fails exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger("publish_drift")
EXIT_BAD_INPUT = 2  # contract.EXIT_BAD_INPUT, without importing TensorFlow with it


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m processing.publish_drift", description=__doc__.split("\n\n")[0])
    parser.add_argument("--region", required=True)
    parser.add_argument("--report", type=Path, required=True, help="the Monitor step's drift.json")
    parser.add_argument("--metric-namespace", required=True, help="CloudWatch namespace of the drift metrics")
    arguments = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        report = json.loads(arguments.report.read_text())
        metrics = metric_data(report)
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"error: cannot read the drift report {arguments.report}: {error!r}", file=sys.stderr, flush=True)
        sys.exit(EXIT_BAD_INPUT)
    try:
        publish(metrics, arguments.metric_namespace, boto3.client("cloudwatch", region_name=arguments.region))
    except (BotoCoreError, ClientError) as error:
        print(f"error: cannot publish into {arguments.metric_namespace}: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    log.info("published %s into %s", ", ".join(item["MetricName"] for item in metrics), arguments.metric_namespace)


def metric_data(report: dict[str, Any]) -> list[dict[str, Any]]:
    """PutMetricData's MetricData for the report: its numbers, at the window's end."""
    when = datetime.fromisoformat(report["window"]["end"].replace("Z", "+00:00"))
    dimensions = [{"Name": "Network", "Value": report["network"]}]
    values = {
        "CapturedExamples": report["captures"]["examples"],
        "UnparsableCaptures": report["captures"]["unparsable"]["count"],
    }
    if report.get("score") is not None:
        values.update(DriftScore=report["score"], DriftDetected=float(report["drifted"]))
    return [
        {"MetricName": name, "Dimensions": dimensions, "Timestamp": when, "Value": float(value), "Unit": "None"}
        for name, value in values.items()
    ]


def publish(metrics: list[dict[str, Any]], namespace: str, cloudwatch: Any) -> None:
    cloudwatch.put_metric_data(Namespace=namespace, MetricData=metrics)


if __name__ == "__main__":
    main()
