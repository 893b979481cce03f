"""The Model and Transform steps of a pipeline, for the local executor (`mlops.local.pipeline_executor`).

    Model      CreateModel in moto with the step's arguments (the SDK's ModelStep of a model:
               `"Type": "Model"`, the CreateModel request less its name); its properties are
               DescribeModel's. A `ModelPackageName` must name a version that exists, as SageMaker
               checks when it creates the model.
    Transform  a batch transform job on this machine (`mlops.local.transform_job`), the request's
               model taken from moto: its container (a model package's image, model and environment,
               resolved as SageMaker resolves them) and its execution role, as which the job's data
               moves. Its properties are DescribeTransformJob's.

What SageMaker Pipelines itself calls (CreateModel, CreateTransformJob, passing the role) it calls as
the pipeline's role, authorized here as IAM would (`RoleSessions.authorize`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from mlops.local.iam import RoleSessions
from mlops.local.moto_records import MotoRecords
from mlops.local.pipeline_jobs import JobFailed
from mlops.local.transform_job import TransformRuntime, run_transform_step

INFERENCE_STEP_TYPES = ("Model", "Transform")


@dataclass(frozen=True)
class InferenceStepRuntime:
    """What the executor lends these steps."""

    sagemaker: Any
    roles: RoleSessions
    records: MotoRecords
    pipeline_role: str
    work_dir: Path
    on_line: Callable[[str, str], None]


def started_detail(kind: str, resource: str) -> str:
    return f"{'model' if kind == 'Model' else 'transform job'} {resource}"


def run_inference_step(
    kind: str, step: str, resource: str, arguments: dict[str, Any], runtime: InferenceStepRuntime
) -> tuple[dict[str, Any], str]:
    """A Model or Transform step whose model or job is named `resource`: (its properties, what to tell)."""
    if kind == "Model":
        described = run_model_step(
            runtime.sagemaker, runtime.roles, runtime.records, runtime.pipeline_role, resource, arguments
        )
        return described, f"created {described['ModelArn']}"
    return run_transform(
        runtime.sagemaker,
        runtime.roles,
        runtime.records,
        runtime.pipeline_role,
        step,
        resource,
        arguments,
        runtime.work_dir,
        runtime.on_line,
    )


def run_model_step(
    sagemaker: Any, roles: RoleSessions, records: MotoRecords, pipeline_role: str, name: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    """CreateModel as the pipeline's role; returns DescribeModel."""
    request = {"ModelName": name, **arguments}
    roles.authorize(pipeline_role, "sagemaker:CreateModel", request)
    roles.authorize(pipeline_role, "iam:PassRole", {"RoleArn": arguments["ExecutionRoleArn"]})
    package = arguments.get("PrimaryContainer", {}).get("ModelPackageName")
    if package:
        container_of(sagemaker, {"ModelPackageName": package})  # it must exist, as SageMaker checks
    sagemaker.create_model(**request)
    records.keep_network_isolation(name, bool(arguments.get("EnableNetworkIsolation")))
    return sagemaker.describe_model(ModelName=name)


def run_transform(
    sagemaker: Any,
    roles: RoleSessions,
    records: MotoRecords,
    pipeline_role: str,
    step: str,
    job_name: str,
    arguments: dict[str, Any],
    work_dir: Path,
    on_line: Callable[[str, str], None],
) -> tuple[dict[str, Any], str]:
    """One Transform step: (DescribeTransformJob, what to tell about it)."""
    roles.authorize(pipeline_role, "sagemaker:CreateTransformJob", {"TransformJobName": job_name, **arguments})
    model = sagemaker.describe_model(ModelName=arguments["ModelName"])
    container = container_of(sagemaker, model["PrimaryContainer"])
    role = model["ExecutionRoleArn"]
    runtime = TransformRuntime(roles.client(role, "s3", job_name), records, work_dir, on_line)
    described, result = run_transform_step(step, job_name, arguments, container, runtime)
    seconds = max((described["TransformEndTime"] - described["TransformStartTime"]).total_seconds(), 1e-3)
    output = arguments["TransformOutput"]["S3OutputPath"]
    detail = (
        f"{result.records} records from {result.objects} object(s) in {seconds:.1f} s "
        f"({result.records / seconds:,.0f} records/s) into {output}"
    )
    return described, detail


def container_of(sagemaker: Any, container: Mapping[str, Any]) -> dict[str, Any]:
    """A model's container as it runs: a model package's first container (its image, model data and
    environment) when it names one, else itself."""
    package_name = container.get("ModelPackageName")
    if not package_name:
        if not container.get("ModelDataUrl"):
            raise JobFailed("ClientError: the model's container names no ModelDataUrl (the local runner needs one)")
        return dict(container)
    try:
        package = sagemaker.describe_model_package(ModelPackageName=package_name)
    except ClientError as error:
        raise JobFailed(f"ValidationException: model package {package_name}: {error}") from None
    resolved = dict(package["InferenceSpecification"]["Containers"][0])
    resolved["Environment"] = {**resolved.get("Environment", {}), **container.get("Environment", {})}
    return resolved
