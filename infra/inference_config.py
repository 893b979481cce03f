"""Inference beyond real time, per stage (docs/batch.md): cdk.json's `stages.<stage>.batch` and
`stages.<stage>.endpoint.async_inference`, read by `infra/config.py`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AsyncInferenceConfig(_Strict):
    """An asynchronous endpoint (AsyncInferenceConfig): requests queued, answers written to S3 and
    announced on two SNS topics; it scales to zero instances when its queue is empty."""

    max_concurrent_invocations_per_instance: int = Field(default=4, ge=1, le=1000)
    target_backlog_per_instance: float = Field(
        default=5.0,
        gt=0,
        description="queued requests per instance the scaling policy keeps (ApproximateBacklogSizePerInstance)",
    )


class BatchTransformConfig(_Strict):
    """Each network's batch transform pipeline (infra/constructs/batch_transform.py, docs/batch.md)."""

    instance_type: str | None = Field(default=None, description="None uses each network's inference instance type")
    instance_count: int = Field(default=1, ge=1, le=100)
    max_payload_mb: int = Field(default=6, ge=1, le=100, description="MaxPayloadInMB: the largest mini-batch")
    max_concurrent_transforms: int = Field(default=2, ge=1, le=64, description="requests per instance at once")
    schedule: str | None = Field(
        default=None,
        pattern=r"^(rate|cron)\(.+\)$",
        description="EventBridge schedule expression of a run on the default input; None: no schedule",
    )
    monitor_drift: bool = Field(
        default=False, description="check each batch's inputs against the model's drift baseline"
    )
