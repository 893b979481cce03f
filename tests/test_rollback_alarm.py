"""The endpoint's rollback alarm tells a broken model from a client's bad input.

A simulated blue/green bake: requests really sent to the local endpoint, each stamped with a time
inside a bake of BAKE_MINUTES; the endpoint's log lines (the container's stderr, the endpoint's
log group in AWS) turned into the metric by the synthesized metric filter, and the synthesized
alarm evaluated on it at every minute of the bake, as CloudWatch evaluates it
(`mlops.local.alarms`, which `mlops local --drift` uses for the drift alarm). moto's CloudWatch
holds the datapoints.
"""

from __future__ import annotations

import itertools
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
import requests
from inference_support import exported_models, image_bytes
from moto import mock_aws
from synth_support import app_module, new_app

from inference.local_endpoint import LocalEndpoint
from infra import naming
from infra.config import load_stage_config
from mlops.local.alarms import alarm_state, datapoints, publish_filtered

pytestmark = pytest.mark.slow

STAGE, NETWORK = "local", "cnn"
BAKE_MINUTES = 10
MALFORMED = [  # (body, content type): each a client's mistake the handler names
    (b"\x89PNG\r\n\x1a\n broken", "image/png"),
    (b'{"instances": [[1, 2, 3]]}', "application/json"),
    (b"1,2,3", "text/csv"),
    (b"", "application/json"),
    (b"\xff\xfe not json", "application/json"),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The stage's endpoint stack as `app.py` synthesizes it for an approved package."""
    prefix = f"mlops-{STAGE}"
    group = naming.model_package_group_name(prefix, NETWORK)
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{group}/1"
    app = new_app(STAGE, tmp_path_factory.mktemp("synth"), **{naming.model_package_context_key(NETWORK): arn})
    app_module().compose(app, load_stage_config(app.node))
    return app.synth().get_stack_by_name(naming.endpoint_stack_name(prefix, NETWORK)).template


def _rollback_alarm(template: dict[str, Any]) -> dict[str, Any]:
    """The alarm the endpoint's blue/green update rolls back on that is not about latency."""
    resources = template["Resources"]
    (endpoint,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SageMaker::Endpoint"]
    rollback = endpoint["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    alarms = [resources[alarm["AlarmName"]["Ref"]]["Properties"] for alarm in rollback]
    (errors,) = [alarm for alarm in alarms if alarm["MetricName"] != "ModelLatency"]
    return errors


def _metric_filter(template: dict[str, Any], alarm: dict[str, Any]) -> dict[str, Any]:
    """The filter on the endpoint's log group that publishes the alarm's metric."""
    (found,) = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Logs::MetricFilter"
        and r["Properties"]["MetricTransformations"][0]["MetricName"] == alarm["MetricName"]
        and r["Properties"]["MetricTransformations"][0]["MetricNamespace"] == alarm["Namespace"]
    ]
    return found


def _bake(model: Path, log: Path, traffic: list[tuple[bytes, str]], start: datetime):
    """Sends `traffic` through the Runtime path, spread over the bake; (time, log line) events
    and (time, container status) per request."""
    name = naming.endpoint_name(f"mlops-{STAGE}", NETWORK)
    step = timedelta(minutes=BAKE_MINUTES) / len(traffic)
    events, statuses = [], []
    with (
        LocalEndpoint(model, name, workers=1, log_path=log) as endpoint,
        requests.Session() as session,
        open(log, "rb") as lines,
    ):
        lines.seek(0, 2)  # what the start-up wrote is not traffic
        for index, (body, content_type) in enumerate(traffic):
            moment = start + index * step
            answer = session.post(
                f"{endpoint.url}/endpoints/{name}/invocations", data=body, headers={"Content-Type": content_type}
            )
            if answer.status_code == 424:
                statuses.append((moment, answer.json()["OriginalStatusCode"]))
                assert json.loads(answer.json()["OriginalMessage"])["error"], "a failure names its problem"
            else:
                statuses.append((moment, answer.status_code))
            # The handler writes its line before it answers: it is in the log by now.
            events += [(moment, line.decode()) for line in lines.read().splitlines()]
    return events, statuses


def _states(cloudwatch, alarm: dict[str, Any], start: datetime) -> list[str]:
    """The alarm's state at the end of every minute of the bake."""
    ends = [start + timedelta(minutes=minute) for minute in range(1, BAKE_MINUTES + 2)]
    return [alarm_state(alarm, datapoints(cloudwatch, alarm, end))[0] for end in ends]


def _digit() -> bytes:
    return image_bytes((np.arange(64).reshape(8, 8) * 4).astype(np.uint8))


@mock_aws
def test_a_thousand_malformed_requests_during_the_bake_do_not_trip_it(template, tmp_path_factory, tmp_path):
    alarm, cloudwatch = _rollback_alarm(template), boto3.client("cloudwatch", region_name="us-east-1")
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=BAKE_MINUTES + 5)
    malformed = list(itertools.islice(itertools.cycle(MALFORMED), 1000))
    traffic = [
        request
        for index, bad in enumerate(malformed)
        for request in ([bad, (_digit(), "image/png")] if index % 10 == 0 else [bad])
    ]
    events, statuses = _bake(exported_models(tmp_path_factory)[NETWORK], tmp_path / "endpoint.log", traffic, start)

    assert sum(status == 500 for _, status in statuses) == 1000 and sum(status == 200 for _, status in statuses) == 100
    assert publish_filtered(cloudwatch, _metric_filter(template, alarm), events) == 0
    assert set(_states(cloudwatch, alarm, start)) == {"OK"}
    # What the alarm of before watched: the container's 500s, every minute of the bake.
    for moment, status in statuses:
        if status == 500:
            cloudwatch.put_metric_data(
                Namespace="AWS/SageMaker",
                MetricData=[{"MetricName": "Invocation5XXErrors", "Timestamp": moment, "Value": 1.0}],
            )
    server_errors = {**alarm, "Namespace": "AWS/SageMaker", "MetricName": "Invocation5XXErrors"}
    assert "ALARM" in _states(cloudwatch, server_errors, start)


@mock_aws
def test_a_model_failing_on_good_requests_trips_it(template, tmp_path_factory, tmp_path):
    """A release whose serving.json and SavedModel disagree (the handler sends 9x9 images to a
    model of 8x8): every good request fails in the model."""
    alarm, cloudwatch = _rollback_alarm(template), boto3.client("cloudwatch", region_name="us-east-1")
    broken = shutil.copytree(exported_models(tmp_path_factory)[NETWORK], tmp_path / "broken")
    serving = json.loads((broken / "code" / "serving.json").read_text())
    (broken / "code" / "serving.json").write_text(json.dumps({**serving, "input_shape": [9, 9, 1]}))
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=BAKE_MINUTES + 5)
    events, statuses = _bake(broken, tmp_path / "endpoint.log", [(_digit(), "image/png")] * 60, start)

    assert {status for _, status in statuses} == {500}
    assert publish_filtered(cloudwatch, _metric_filter(template, alarm), events) == 60
    assert "ALARM" in _states(cloudwatch, alarm, start)
