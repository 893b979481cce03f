"""What the local AWS of `mlops up` does beyond moto, so that it answers as AWS does while it stays up.

moto records a pipeline execution as Succeeded the moment StartPipelineExecution returns, does not
implement ListPipelineExecutionSteps, and answers InvokeEndpoint with canned data. Inside the
environment's process (where `ThreadedMotoServer` runs), for as long as the block runs:

    StartPipelineExecution      checked against the definition's parameters as SageMaker checks
                                them (an unknown one, or a value of the wrong type, is a
                                ValidationException), recorded Executing, and handed to
                                `on_started`, which runs it (`mlops.local.environment`)
    ListPipelineExecutionSteps  the steps the local executor recorded (`MotoRecords`), in the
                                API's shape
    InvokeEndpoint              forwarded to the local endpoint serving that endpoint name
                                (`endpoint_url(name)`), whose answer (a ModelError included) is
                                relayed as it is; a name nothing serves is AWS's ValidationError

Each call still goes through moto first: its signature check and, with IAM enforced, its
authorization of the caller, as before. moto's own classes are patched in place and restored on exit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
from moto.core.exceptions import JsonRESTError
from moto.sagemaker.exceptions import ResourceNotFound, ValidationError
from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

from mlops.local.moto_records import step_records
from mlops.local.pipeline_references import DefinitionError, parameter_values

# Headers of the endpoint's answer that belong to that connection, not to the answer relayed.
_HOP_BY_HOP = {"connection", "content-length", "date", "keep-alive", "server", "transfer-encoding"}
INVOKE_TIMEOUT_SECONDS = 60  # SageMaker's own limit for a real-time invocation
_DEFAULT = object()
_LIST_STEPS = "list_pipeline_execution_steps"
_RAW_BODY = "use_raw_body"


class _EndpointNotFound(JsonRESTError):
    """SageMaker Runtime's answer for an endpoint name that does not exist."""

    def __init__(self, name: str, account: str) -> None:
        super().__init__("ValidationError", f"Endpoint {name} of account {account} not found.")


@contextmanager
def service_extensions(on_started: Callable[[str], None], endpoint_url: Callable[[str], str | None]) -> Iterator[None]:
    """The three calls above answered as AWS answers them until the block ends."""
    original_start = SageMakerModelBackend.start_pipeline_execution
    original_invoke = SageMakerRuntimeResponse.invoke_endpoint
    original_raw_body = SageMakerRuntimeResponse.__dict__.get("use_raw_body", _DEFAULT)

    def start_pipeline_execution(backend: SageMakerModelBackend, pipeline_name: str, *args: Any, **kwargs: Any) -> Any:
        pipeline = backend.pipelines.get(pipeline_name.rsplit("/", 1)[-1])
        given = kwargs.get("pipeline_parameters", args[1] if len(args) > 1 else None) or []
        if pipeline is not None:
            try:
                declared = json.loads(pipeline.pipeline_definition).get("Parameters", [])
                parameter_values(declared, {item["Name"]: item["Value"] for item in given})
            except DefinitionError as error:
                raise ValidationError(str(error)) from None
        started = original_start(backend, pipeline_name, *args, **kwargs)
        arn = started["PipelineExecutionArn"]
        name = arn.split(":pipeline/", 1)[1].split("/", 1)[0]  # the pipeline may have been named by its ARN
        backend.pipelines[name].pipeline_executions[arn].pipeline_execution_status = "Executing"
        on_started(arn)
        return started

    def list_pipeline_execution_steps(response: SageMakerResponse) -> Any:
        from moto.core.responses import ActionResult

        arn = response._get_param("PipelineExecutionArn")
        execution = next(
            (
                found.pipeline_executions[arn]
                for found in list(response.sagemaker_backend.pipelines.values())
                if arn in found.pipeline_executions
            ),
            None,
        )
        if execution is None:
            raise ResourceNotFound(f"Pipeline execution {arn} does not exist")
        steps = sorted(step_records(execution), key=lambda step: step["StartTime"])
        if response._get_param("SortOrder", "Descending") == "Descending":
            steps.reverse()
        return ActionResult({"PipelineExecutionSteps": [dict(step) for step in steps]})

    def invoke_endpoint(response: SageMakerRuntimeResponse) -> Any:
        name = response.path.split("/")[2]
        target = endpoint_url(name)
        if target is None:
            raise _EndpointNotFound(name, response.current_account)
        forwarded = {
            key: value
            for key, value in response.headers.items()
            if key.lower() in ("content-type", "accept") or key.lower().startswith("x-amzn-sagemaker")
        }
        answer = requests.post(
            f"{target}/endpoints/{name}/invocations",
            data=response.raw_body,
            headers=forwarded,
            timeout=INVOKE_TIMEOUT_SECONDS,
        )
        headers = {key: value for key, value in answer.headers.items() if key.lower() not in _HOP_BY_HOP}
        return answer.status_code, headers, answer.content

    SageMakerModelBackend.start_pipeline_execution = start_pipeline_execution  # type: ignore[method-assign,assignment]
    setattr(SageMakerResponse, _LIST_STEPS, list_pipeline_execution_steps)  # an action moto lacks
    SageMakerRuntimeResponse.invoke_endpoint = invoke_endpoint  # type: ignore[method-assign,assignment]
    # Request bodies are the caller's bytes (an image), not text to decode.
    SageMakerRuntimeResponse.use_raw_body = True
    try:
        yield
    finally:
        SageMakerModelBackend.start_pipeline_execution = original_start  # type: ignore[method-assign]
        delattr(SageMakerResponse, _LIST_STEPS)
        SageMakerRuntimeResponse.invoke_endpoint = original_invoke  # type: ignore[method-assign]
        if original_raw_body is _DEFAULT:
            delattr(SageMakerRuntimeResponse, _RAW_BODY)
        else:
            setattr(SageMakerRuntimeResponse, _RAW_BODY, original_raw_body)
