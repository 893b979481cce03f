"""A pipeline execution as the CLI shows it: its live state and steps, why it failed, and what its
jobs cost (`mlops train --wait`, `mlops runs`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Group
from rich.markup import escape
from rich.table import Table

from mlops.costs import PRICES_FILE, load_prices
from mlops.errors import RunFailed
from mlops.job_costs import JobCost, processing_job_cost, training_job_cost

TERMINAL_STATUSES = ("Succeeded", "Failed", "Stopped")


class ExecutionWatch:
    """The latest view of one pipeline execution."""

    def __init__(self, sagemaker: Any, poller: Any, execution_arn: str) -> None:
        self._sagemaker = sagemaker
        self._poller = poller
        self.arn = execution_arn
        self.execution: dict[str, Any] = {}
        self.steps: list[dict[str, Any]] = []
        self.steps_unsupported = False
        self._shown: set[tuple[str, ...]] = set()

    @property
    def status(self) -> str:
        return self.execution.get("PipelineExecutionStatus", "Starting")

    def poll(self) -> None:
        try:
            self.execution = self._sagemaker.describe_pipeline_execution(PipelineExecutionArn=self.arn)
        except (BotoCoreError, ClientError) as error:
            raise RunFailed(f"cannot read execution {self.arn}: {error}") from None
        if self.steps_unsupported:
            return
        try:
            pages = self._poller.get_paginator("list_pipeline_execution_steps").paginate(
                PipelineExecutionArn=self.arn, SortOrder="Ascending"
            )
            self.steps = [step for page in pages for step in page["PipelineExecutionSteps"]]
        except ClientError as error:
            # A real SageMaker error has a name (InternalFailure, ThrottlingException); moto answers
            # an action it lacks with an HTML error page, which botocore reports as code "500".
            self.steps_unsupported = error_code(error).isdigit() or error_code(error).startswith("NotImplemented")
        except BotoCoreError:
            pass  # keep the last view; the next poll tries again

    def render(self) -> Group:
        started = self.execution.get("CreationTime")
        elapsed = f" for {duration(started, _now())}" if started and self.status not in TERMINAL_STATUSES else ""
        header = f"[bold]{self.status}[/]{elapsed}  {self.arn.rsplit('/', 1)[-1]}"
        if not self.steps:
            return Group(header)
        table = Table(show_edge=False, pad_edge=False)
        for column in ("step", "type", "status", "started", "took", "reason"):
            table.add_column(column, overflow="fold")
        for step in self.steps:
            table.add_row(
                escape(step["StepName"]),
                step.get("StepType", ""),
                step.get("StepStatus", ""),
                clock(step.get("StartTime")),
                duration(step.get("StartTime"), step.get("EndTime")),
                escape(step.get("FailureReason", "")),
            )
        return Group(header, table)

    def changes(self) -> list[str]:
        """Lines for what changed since the last call: the execution's status, then each step's."""
        states = [(self.status,)] + [
            (step["StepName"], step.get("StepStatus", ""), step.get("FailureReason", "")) for step in self.steps
        ]
        lines = []
        for state in states:
            if state not in self._shown:
                self._shown.add(state)
                lines.append(
                    f"  execution {state[0]}"
                    if len(state) == 1
                    else f"  step {state[0]}: {state[1]}" + (f" ({state[2]})" if state[2] else "")
                )
        return lines

    def failure_reason(self, sagemaker: Any) -> str:
        """The failed step's reason, else the execution's (describe, then the listing's summary)."""
        for step in self.steps:
            if step.get("StepStatus") == "Failed" and step.get("FailureReason"):
                return f"step {step['StepName']}: {step['FailureReason']}"
        if self.execution.get("FailureReason"):
            return self.execution["FailureReason"]
        # Some endpoints (moto) report the reason only in the execution listing.
        pipeline = self.arn.split(":pipeline/", 1)[1].split("/", 1)[0]
        for summary in execution_summaries(sagemaker, pipeline):
            if summary["PipelineExecutionArn"] == self.arn and summary.get("PipelineExecutionFailureReason"):
                return summary["PipelineExecutionFailureReason"]
        return "no reason reported"

    def registered_model(self) -> str | None:
        for step in self.steps:
            arn = step.get("Metadata", {}).get("RegisterModel", {}).get("Arn")
            if arn:
                return arn
        return None


def cost_lines(sagemaker: Any, steps: list[dict[str, Any]], region: str) -> list[str]:
    """One line per job the run started, with its billable time and estimated cost."""
    prices = load_prices()
    table = prices["training_jobs"]
    costs: list[JobCost] = []
    lines: list[str] = []
    for step in steps:
        metadata = step.get("Metadata", {})
        try:
            if "TrainingJob" in metadata:
                name = metadata["TrainingJob"]["Arn"].rsplit("/", 1)[-1]
                costs.append(
                    training_job_cost(step["StepName"], sagemaker.describe_training_job(TrainingJobName=name), table)
                )
            elif "ProcessingJob" in metadata:
                name = metadata["ProcessingJob"]["Arn"].rsplit("/", 1)[-1]
                costs.append(
                    processing_job_cost(
                        step["StepName"], sagemaker.describe_processing_job(ProcessingJobName=name), table
                    )
                )
        except (BotoCoreError, ClientError) as error:
            lines.append(f"{step['StepName']:<10} cost unknown: cannot read its job ({error})")
    if not costs:
        return lines
    lines += [cost.line() for cost in costs]
    known = [cost.cost for cost in costs if cost.cost is not None]
    total = f"total      ~${sum(known):.4f} {prices['currency']}"
    if len(known) < len(costs):
        total += " (incomplete: some instance types have no price)"
    lines.append(total)
    lines.append(
        f"on-demand {prices['region']} prices retrieved {table['retrieved']}; sources and caveats: "
        f"mlops/{PRICES_FILE.name}"
    )
    if region != prices["region"]:
        lines.append(f"these jobs ran in {region}, whose prices differ: the estimate is only indicative")
    return lines


def execution_summaries(sagemaker: Any, pipeline: str) -> list[dict[str, Any]]:
    try:
        pages = sagemaker.get_paginator("list_pipeline_executions").paginate(PipelineName=pipeline)
        return [summary for page in pages for summary in page["PipelineExecutionSummaries"]]
    except (BotoCoreError, ClientError) as error:
        raise RunFailed(f"cannot list executions of {pipeline}: {error}") from None


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _now() -> datetime:
    return datetime.now(UTC)


def clock(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def duration(start: datetime | None, end: datetime | None) -> str:
    if not start:
        return ""
    seconds = int(((end or _now()) - start).total_seconds())
    minutes, seconds = divmod(max(seconds, 0), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"
