"""The drift loop of `mlops local --drift`: traffic to the local endpoint, the monitor on it, the
drift alarm, and the retraining run the alarm's rule starts, all against the local AWS.

moto keeps CloudWatch metrics and alarms and EventBridge rules but acts on none: it evaluates no
alarm, fires no schedule and delivers no event to a pipeline. So where AWS would act, this does,
from the definitions deployed, read from the templates of the cloud assembly that deploy used:

    schedule  the endpoint stack's rule: its target's pipeline and parameters (the served
              version's model and baseline, the stack's parameters as deployed in moto) start the
              monitor pipeline, run here by the local executor, with this window's start and end
    alarm     the pipelines stack's alarm: created in moto as declared, its metric's datapoints
              read back from moto's CloudWatch and compared as CloudWatch compares them (statistic,
              period, threshold, evaluation periods, missing data), its state set in moto
    rule      the pipelines stack's rule on that alarm: the state change event CloudWatch sends,
              matched against the rule's pattern by moto's own EventBridge pattern matcher; on a
              match its target pipeline is started as the rule's role (StartPipelineExecution
              authorized against that role's deployed policy), as EventBridge would start it

The retraining execution is recorded in moto, not run: running it is what `mlops local` has just
done once. Each window's drift.json and drift.png land in the report folder under `drift/`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from infra import naming
from infra.config import StageConfig
from infra.definitions import monitor_pipeline
from mlops.errors import RunFailed
from mlops.local.alarms import alarm_state, datapoints
from mlops.local.deployed_pipelines import TemplateValues, stack_template
from mlops.local.iam import RoleSessions
from mlops.local.moto import LocalAws
from mlops.local.pipeline_executor import LocalPipelineExecutor, StepFailed
from mlops.local.s3 import download_file, read_json
from mlops.local.samples import json_value
from training.networks import Network

if TYPE_CHECKING:
    from moto.events.utils import EventMessageType

ALARM = "AWS::CloudWatch::Alarm"
RULE = "AWS::Events::Rule"
ALARM_REQUEST_KEYS = (
    "AlarmName",
    "AlarmDescription",
    "MetricName",
    "Namespace",
    "Statistic",
    "Dimensions",
    "Period",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
)
WINDOW_REQUESTS = 100
CAPTURE_FLUSH_SECONDS = 1.0  # how often the local endpoint writes what it captured


@dataclass
class Window:
    """One window of traffic and what the loop made of it."""

    name: str
    requests: int
    start: datetime
    end: datetime
    report: dict[str, Any]
    alarm_state: str
    alarm_reason: str


def held_out_pool(test_dir: Path, validation_dir: Path, network: Network) -> np.ndarray:
    """The test channel's inputs whose label the validation channel (the baseline's) also holds:
    traffic like the data the model was meant for. For a detector trained on normal examples
    only, that is the normal test examples; the test channel's share of anomalies is the test's
    design, not traffic."""
    from training import records  # TensorFlow: only once there is a channel to read

    test, validation = records.read_spec(test_dir, "test"), records.read_spec(validation_dir, "validation")
    target = network.task.target if network.task.target in test.features else None
    inputs, labels = [], []
    for batch in records.dataset(test_dir, test, "test", inputs=network.input_name, targets=target, batch_size=512):
        inputs.append((batch[0] if target else batch).numpy())
        if target:
            labels.append(batch[1].numpy())
    pool = np.concatenate(inputs)
    if labels and validation.class_counts:
        seen = [index for index, count in enumerate(validation.class_counts) if count > 0]
        pool = pool[np.isin(np.concatenate(labels), seen)]
    return pool


class DriftLoop:
    """The loop's steps; each phase of `mlops local --drift` calls one."""

    def __init__(
        self,
        aws: LocalAws,
        roles: RoleSessions,
        assembly: Path,
        config: StageConfig,
        network: Network,
        executor: LocalPipelineExecutor,
        report_dir: Path,
        echo: Callable[[str], None],
    ) -> None:
        self.aws, self.roles, self.config, self.network = aws, roles, config, network
        self.executor, self.report_dir, self.echo = executor, report_dir, echo
        prefix = config.prefix()
        self.endpoint_stack = naming.endpoint_stack_name(prefix, network.name)
        self.pipelines_stack = naming.stack_name(prefix, naming.PIPELINES_STACK_SUFFIX)
        self._endpoint = stack_template(assembly, self.endpoint_stack)
        self._pipelines = stack_template(assembly, self.pipelines_stack)
        self.alarm_name = naming.drift_alarm_name(prefix, network.name)
        self.windows: list[Window] = []
        self.state_change: tuple[str, str] | None = None
        """(from, to) of the alarm's last evaluation that changed its state."""
        self.retraining_execution: str | None = None

    # ------------------------------------------------------------------ traffic

    def window(
        self, name: str, shift: str | None, channels: Mapping[str, Path], endpoint_name: str, endpoint_url: str
    ) -> Window:
        """WINDOW_REQUESTS held-out requests (fewer if the test channel holds fewer; changed by the
        task's `shift`), then the monitor on them."""
        from inference.client import JSON, EncodedRequest, invoke, runtime_client

        pool = held_out_pool(channels["test"], channels["validation"], self.network)
        rng = np.random.default_rng(len(self.windows))
        batch = pool[rng.choice(len(pool), min(WINDOW_REQUESTS, len(pool)), replace=False)]
        if shift is not None:
            batch = self.network.task.drift_shifts()[shift](batch, rng).astype(batch.dtype)
        client = runtime_client(endpoint_url)
        start, end = send(
            requests_of(batch),
            lambda body: invoke(endpoint_name, EncodedRequest(body, JSON), client=client),
            CAPTURE_FLUSH_SECONDS,
        )
        self.echo(f"{len(batch)} requests of {name} traffic to {endpoint_name}, {start:%H:%M:%S}..{end:%H:%M:%S} UTC")
        window = self.monitor(name, len(batch), start, end)
        self.echo(
            f"{window.report['decision']}; {window.report['captures']['examples']} captured examples; "
            f"alarm {self.alarm_name}: {window.alarm_state} ({window.alarm_reason})"
        )
        return window

    # ------------------------------------------------------------------ the schedule

    def monitor(self, name: str, requests: int, start: datetime, end: datetime) -> Window:
        """Runs the monitor pipeline as the endpoint stack's schedule would, for [start, end), then
        evaluates the drift alarm on what it published."""
        pipeline, parameters = self._scheduled_run()
        overrides = {**parameters, monitor_pipeline.WINDOW_START: _iso(start), monitor_pipeline.WINDOW_END: _iso(end)}
        run = self.executor.start(pipeline, overrides, description=f"mlops local --drift: {name} traffic")
        try:
            self.executor.execute(run)
        except StepFailed as failure:
            raise RunFailed(
                f"the {pipeline} pipeline failed at step {failure.step}: {failure.reason}"
                + (f"\n{failure.hint}" if failure.hint else "")
            ) from None
        report_uri = run.context.property_files[monitor_pipeline.MONITOR_STEP][monitor_pipeline.DRIFT_REPORT]
        s3 = self.aws.client("s3")
        report = read_json(s3, report_uri)
        folder = self.report_dir / "drift" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / monitor_pipeline.DRIFT_FILE).write_text(json.dumps(report, indent=2) + "\n")
        download_file(s3, report_uri.rsplit("/", 1)[0] + "/drift.png", folder / "drift.png")
        state, reason = self.evaluate_alarm()
        window = Window(name, requests, start, end, report, state, reason)
        self.windows.append(window)
        return window

    def _scheduled_run(self) -> tuple[str, dict[str, str]]:
        """The monitor pipeline and parameters the endpoint stack's schedule starts."""
        (rule,) = [
            resource["Properties"]
            for resource in self._endpoint["Resources"].values()
            if resource["Type"] == RULE and "ScheduleExpression" in resource["Properties"]
        ]
        (target,) = rule["Targets"]
        parameters = {
            item["ParameterKey"]: item.get("ParameterValue", "")
            for item in self.aws.client("cloudformation")
            .describe_stacks(StackName=self.endpoint_stack)["Stacks"][0]
            .get("Parameters", [])
        }
        values = TemplateValues(self.aws, self.endpoint_stack, self._endpoint["Resources"])
        resolved = values.resolve(_parameters_filled(target, parameters))
        pipeline = resolved["Arn"].rsplit("/", 1)[-1]
        given = {
            item["Name"]: item["Value"] for item in resolved["SageMakerPipelineParameters"]["PipelineParameterList"]
        }
        self.echo(
            f"the endpoint stack's schedule ({rule['ScheduleExpression']}, which moto never fires) starts "
            f"{pipeline} with the served version: {', '.join(f'{k}={v}' for k, v in given.items())}"
        )
        return pipeline, given

    # ------------------------------------------------------------------ the alarm

    def evaluate_alarm(self) -> tuple[str, str]:
        """The alarm's state, as CloudWatch would set it now from its metric; recorded in moto."""
        alarm = self._alarm()
        cloudwatch = self.aws.client("cloudwatch")
        state, reason = alarm_state(alarm, datapoints(cloudwatch, alarm, datetime.now(UTC) + timedelta(seconds=1)))
        previous = cloudwatch.describe_alarms(AlarmNames=[alarm["AlarmName"]])["MetricAlarms"][0]["StateValue"]
        cloudwatch.set_alarm_state(AlarmName=alarm["AlarmName"], StateValue=state, StateReason=reason)
        self.state_change = (previous, state) if previous != state else None
        return state, reason

    def _alarm(self) -> dict[str, Any]:
        """The drift alarm as the template declares it, created in moto (whose CloudFormation skips alarms)."""
        (alarm,) = [
            resource["Properties"]
            for resource in self._pipelines["Resources"].values()
            if resource["Type"] == ALARM and resource["Properties"].get("AlarmName") == self.alarm_name
        ]
        cloudwatch = self.aws.client("cloudwatch")
        if not cloudwatch.describe_alarms(AlarmNames=[self.alarm_name])["MetricAlarms"]:
            cloudwatch.put_metric_alarm(**{key: alarm[key] for key in ALARM_REQUEST_KEYS if key in alarm})
        return alarm

    # ------------------------------------------------------------------ the rule on the alarm

    def retrain_if_alarmed(self) -> str | None:
        """Delivers the alarm's state change to the rules that match it: the retraining run's ARN."""
        from moto.events.models import EventPattern  # the local AWS runs in this process

        alarm = self.aws.client("cloudwatch").describe_alarms(AlarmNames=[self.alarm_name])["MetricAlarms"][0]
        if self.state_change is None or self.state_change[1] != "ALARM":
            self.echo(
                f"{self.alarm_name} is {alarm['StateValue']} and did not just change to ALARM: "
                "CloudWatch sends no event, so no rule runs"
            )
            return None
        event = _alarm_state_change(alarm, self.state_change[0], self.aws)
        values = TemplateValues(self.aws, self.pipelines_stack, self._pipelines["Resources"])
        for logical_id, resource in self._pipelines["Resources"].items():
            if resource["Type"] != RULE or "EventPattern" not in resource["Properties"]:
                continue
            properties = resource["Properties"]
            rule = {key: values.resolve(properties[key]) for key in ("EventPattern", "Targets")}
            if not EventPattern.load(json.dumps(rule["EventPattern"])).matches_event(event):
                continue
            (target,) = rule["Targets"]
            pipeline = target["Arn"].rsplit("/", 1)[-1]
            # EventBridge starts the target as the rule's role: that role's policy must allow it.
            self.roles.authorize(target["RoleArn"], "sagemaker:StartPipelineExecution", {"PipelineName": target["Arn"]})
            run = self.executor.start(
                pipeline, {}, description=f"started by the rule {logical_id} on {self.alarm_name}"
            )
            self.retraining_execution = run.execution_arn
            self.echo(
                f"rule {logical_id} matched the alarm's state change (moto's EventBridge pattern "
                f"matcher) and started {pipeline} as {target['RoleArn'].rsplit('/', 1)[-1]}: "
                f"{run.execution_arn} (recorded in moto, not run here)"
            )
            return run.execution_arn
        raise RunFailed(f"no rule of {self.pipelines_stack} matches {self.alarm_name} going into ALARM")


def capture_target(aws: LocalAws, roles: RoleSessions, endpoint: str, execution_role: str) -> Any:
    """The data capture of the deployed endpoint config (moto's record of `endpoint`), for the local
    endpoint, signed as the execution role; None when the config captures nothing."""
    from inference.capture import CaptureConfig, CaptureTarget

    sagemaker = aws.client("sagemaker")
    config = CaptureConfig.from_api(
        sagemaker.describe_endpoint_config(
            EndpointConfigName=sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
        ).get("DataCaptureConfig", {})
    )
    if config is None:
        return None
    credentials = roles.credentials(execution_role, "endpoint")
    signing = {
        "aws_access_key_id": credentials["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": credentials["AWS_SECRET_ACCESS_KEY"],
    }
    if "AWS_SESSION_TOKEN" in credentials:
        signing["aws_session_token"] = credentials["AWS_SESSION_TOKEN"]
    return CaptureTarget(
        config,
        aws={"endpoint_url": aws.endpoint_url, "region_name": aws.region, **signing},
        flush_seconds=CAPTURE_FLUSH_SECONDS,
    )


def requests_of(batch: np.ndarray) -> list[bytes]:
    """One TF Serving JSON request per example, as a client sends them one by one."""
    return [json.dumps({"instances": [json_value(example)]}).encode() for example in batch]


def _parameters_filled(value: Any, parameters: Mapping[str, str]) -> Any:
    """`{"Ref": <stack parameter>}` replaced by the parameter's deployed value."""
    if isinstance(value, dict):
        if set(value) == {"Ref"} and value["Ref"] in parameters:
            return parameters[value["Ref"]]
        return {key: _parameters_filled(item, parameters) for key, item in value.items()}
    if isinstance(value, list):
        return [_parameters_filled(item, parameters) for item in value]
    return value


def _alarm_state_change(alarm: dict[str, Any], previous: str, aws: LocalAws) -> EventMessageType:
    """The event CloudWatch sends EventBridge when an alarm changes state (its documented shape)."""
    now = _iso(datetime.now(UTC))
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": aws.account,
        "time": now,
        "region": aws.region,
        "resources": [alarm["AlarmArn"]],
        "detail": {
            "alarmName": alarm["AlarmName"],
            "state": {"value": alarm["StateValue"], "reason": alarm.get("StateReason", ""), "timestamp": now},
            "previousState": {"value": previous},
            "configuration": {"description": alarm.get("AlarmDescription", "")},
        },
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def send(requests: list[bytes], invoke: Callable[[bytes], Any], flush_seconds: float) -> tuple[datetime, datetime]:
    """Sends each request; returns the window [start, end) that holds their capture records
    (inferenceTime has whole seconds), once the endpoint has written them."""
    # The window starts at the next whole second, after every record of earlier traffic (the
    # invoke phase's samples, an earlier window), which may share the current second.
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    time.sleep(max(0.0, (start - datetime.now(UTC)).total_seconds()))
    for body in requests:
        invoke(body)
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    # The endpoint's workers write what they buffered every flush_seconds.
    time.sleep(2 * flush_seconds + 0.5)
    return start, end
