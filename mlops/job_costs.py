"""What a finished training or processing job cost, from its own description and the dated
price table `mlops/prices.json` (section `training_jobs`).

SageMaker bills a training job's BillableTimeInSeconds per instance; with managed spot that
is less than TrainingTimeInSeconds, and the difference is the spot saving. A processing job
bills its run time per instance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlops.costs import PRICES_FILE

SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class JobCost:
    step: str
    instance_type: str
    instance_count: int
    billable_seconds: float
    run_seconds: float
    hourly_price: float | None  # None: no sourced price for this instance type
    spot: bool = False

    @property
    def cost(self) -> float | None:
        if self.hourly_price is None:
            return None
        return self.billable_seconds * self.instance_count * self.hourly_price / SECONDS_PER_HOUR

    @property
    def spot_saving(self) -> float | None:
        """The fraction of the run that was not billed, for a spot job that ran at all."""
        if not self.spot or self.run_seconds <= 0:
            return None
        return 1 - self.billable_seconds / self.run_seconds

    def line(self) -> str:
        machines = f"{self.instance_count} x {self.instance_type}"
        billed = f"billable {self.billable_seconds:.0f} s"
        if self.spot_saving is not None:
            billed += f" of {self.run_seconds:.0f} s run (spot saved {self.spot_saving:.0%})"
        if self.cost is None:
            price = f"no price for {self.instance_type} in {PRICES_FILE.name}"
        else:
            price = f"~${self.cost:.4f} at ${self.hourly_price:.3f}/h"
        return f"{self.step:<10} {machines:<20} {billed:<46} {price}"


def training_job_cost(step: str, job: dict[str, Any], table: dict[str, Any]) -> JobCost:
    """`job` is a DescribeTrainingJob answer."""
    resources = job["ResourceConfig"]
    billable = job.get("BillableTimeInSeconds") or 0
    return JobCost(
        step=step,
        instance_type=resources["InstanceType"],
        instance_count=resources["InstanceCount"],
        billable_seconds=billable,
        run_seconds=job.get("TrainingTimeInSeconds") or billable,
        hourly_price=table["per_instance_hour"].get(resources["InstanceType"]),
        spot=bool(job.get("EnableManagedSpotTraining")),
    )


def processing_job_cost(step: str, job: dict[str, Any], table: dict[str, Any]) -> JobCost:
    """`job` is a DescribeProcessingJob answer."""
    cluster = job["ProcessingResources"]["ClusterConfig"]
    started, ended = job.get("ProcessingStartTime"), job.get("ProcessingEndTime")
    seconds = (ended - started).total_seconds() if started and ended else 0.0
    return JobCost(
        step=step,
        instance_type=cluster["InstanceType"],
        instance_count=cluster["InstanceCount"],
        billable_seconds=seconds,
        run_seconds=seconds,
        hourly_price=table["per_instance_hour"].get(cluster["InstanceType"]),
    )
