"""The batch transform pipeline's definition as data (infra/definitions/transform_pipeline.py).

Every step's Arguments are a request SageMaker's API model knows (botocore's CreateTransformJob,
CreateModel, CreateProcessingJob shapes), every reference resolves, every parameter is used, and the
choices the issue asks for hold: records split by line and batched, each output line joined to its
input's id, KMS on output and volumes, an isolated model, and no model version frozen at synth.
"""

from __future__ import annotations

import json

import botocore.session
import pytest
import test_pipeline_definition
from test_pipeline_definition import (
    EXECUTION_VARIABLES,
    SAGEMAKER,
    check_against_shape,
    expressions,
    isolated_stage,
    resolve_property,
    stage,
    steps_of,
)

from infra.config import StageConfig, parse_stage_config
from infra.definitions import transform_pipeline as definition
from training.batch_formats import RECORD_FORMATS

BUCKET = "artifacts"  # the conftest s3 fixture creates it
STEP_SHAPES = {
    "Transform": ("CreateTransformJobRequest", "DescribeTransformJobResponse"),
    "Model": ("CreateModelInput", "DescribeModelOutput"),
    "Processing": ("CreateProcessingJobRequest", "DescribeProcessingJobResponse"),
}
CASES = [
    pytest.param(config, network, id=f"{config.name}-{network}")
    for config in [stage("local"), stage("dev"), stage("prod"), isolated_stage()]
    for network in config.networks
]


def with_drift(config: StageConfig) -> StageConfig:
    raw = {**test_pipeline_definition.CDK_CONTEXT["stages"][config.name], "batch": {"monitor_drift": True}}
    return parse_stage_config({config.name: raw}, config.name)


@pytest.fixture(autouse=True)
def names_filled_by_pipelines(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline service names the jobs and models it creates: requests omit the name."""
    monkeypatch.setattr(
        test_pipeline_definition,
        "FILLED_BY_PIPELINES",
        {*test_pipeline_definition.FILLED_BY_PIPELINES, "TransformJobName", "ModelName"},
    )


@pytest.mark.parametrize(("config", "network"), [*CASES, pytest.param(with_drift(stage("local")), "cnn", id="drift")])
def test_every_step_is_a_valid_sagemaker_request_and_every_reference_resolves(config, network):
    built = definition.transform_definition(config, network)
    parameters = {parameter["Name"] for parameter in built["Parameters"]}
    steps = list(steps_of(built["Steps"]))
    by_name = {step["Name"]: step for step in steps}
    used = set()
    for position, step in enumerate(steps):
        if step["Type"] in STEP_SHAPES:
            check_against_shape(step["Arguments"], SAGEMAKER.shape_for(STEP_SHAPES[step["Type"]][0]), step["Name"])
        earlier = {other["Name"] for other in steps[:position]}
        for reference in expressions(step, "Get"):
            root, _, path = reference.partition(".")
            if root == "Parameters":
                assert path in parameters, reference
                used.add(path)
            elif root == "Execution":
                assert path in EXECUTION_VARIABLES, reference
            else:
                source, _, property_path = path.partition(".")
                assert source in earlier, f"{step['Name']} reads {source}, which does not run before it"
                if property_path.startswith("PropertyFiles."):
                    declared = {item["PropertyFileName"] for item in by_name[source].get("PropertyFiles", [])}
                    assert property_path.removeprefix("PropertyFiles.") in declared
                else:
                    resolve_property(SAGEMAKER.shape_for(STEP_SHAPES[by_name[source]["Type"]][1]), property_path)
    assert used == parameters


@pytest.mark.parametrize(("config", "network"), CASES)
def test_each_record_format_is_split_batched_joined_to_its_id_and_encrypted(config, network):
    steps = {step["Name"]: step for step in steps_of(definition.transform_definition(config, network)["Steps"])}
    condition = steps["RecordFormat"]["Arguments"]
    assert condition["Conditions"] == [
        {"Type": "Equals", "LeftValue": {"Get": "Parameters.ContentType"}, "RightValue": "text/csv"}
    ]
    assert [step["Name"] for step in condition["IfSteps"] + condition["ElseSteps"]] == [
        "TransformCsv",
        "TransformJsonLines",
    ]
    for name, content_type in (("TransformCsv", "text/csv"), ("TransformJsonLines", "application/jsonlines")):
        job = steps[name]["Arguments"]
        assert job["ModelName"] == {"Get": "Steps.CreateModel.ModelName"}
        assert job["TransformInput"]["SplitType"] == "Line" and job["TransformInput"]["ContentType"] == content_type
        assert job["TransformOutput"]["AssembleWith"] == "Line"
        assert job["TransformOutput"]["Accept"] == RECORD_FORMATS[content_type].accept
        assert job["DataProcessing"]["JoinSource"] == "Input"
        assert job["DataProcessing"] == RECORD_FORMATS[content_type].data_processing()
        assert job["TransformOutput"]["KmsKeyId"] == job["TransformResources"]["VolumeKmsKeyId"] == "${KeyArn}"
        assert (job["BatchStrategy"], job["MaxPayloadInMB"], job["MaxConcurrentTransforms"]) == (
            "MultiRecord",
            config.batch.max_payload_mb,
            config.batch.max_concurrent_transforms,
        )
        assert job["TransformResources"]["InstanceType"] == {"Get": "Parameters.TransformInstanceType"}


@pytest.mark.parametrize(("config", "network"), CASES)
def test_the_model_version_is_resolved_when_a_run_starts_and_the_model_is_isolated(config, network):
    built = definition.transform_definition(config, network)
    steps = {step["Name"]: step for step in steps_of(built["Steps"])}
    model = steps["CreateModel"]["Arguments"]
    assert model["EnableNetworkIsolation"] is True
    assert model["PrimaryContainer"] == {
        "ModelPackageName": {
            "Std:JsonGet": {
                "PropertyFile": {"Get": "Steps.ResolveModel.PropertyFiles.ModelVersion"},
                "Path": "model_package_arn",
            }
        }
    }
    assert ("VpcConfig" in model) == (config.vpc is not None)
    # Nothing of the registry is in the definition: no version ARN, no model location.
    text = json.dumps(built)
    assert ":model-package/" not in text and "model.tar.gz" not in text
    resolve = steps["ResolveModel"]["Arguments"]
    assert resolve["NetworkConfig"]["EnableNetworkIsolation"] is False  # it calls the registry
    assert resolve["Environment"] == {
        "MODEL_VERSION": {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.ModelVersion"}]}}
    }
    assert (
        f"--group {config.served_model_package_group(network)} "
        in resolve["AppSpecification"]["ContainerEntrypoint"][-1]
    )
    version = next(item for item in built["Parameters"] if item["Name"] == "ModelVersion")
    assert (version["Type"], version["DefaultValue"]) == ("Integer", 0)


@pytest.mark.parametrize(("config", "network"), CASES)
def test_the_default_input_is_a_folder_so_no_sibling_prefix_is_read(config, network):
    parameters = {item["Name"]: item for item in definition.transform_definition(config, network)["Parameters"]}
    for name in ("InputDataUri", "OutputDataUri"):
        assert parameters[name]["DefaultValue"].endswith("/"), name
    assert parameters["InputDataUri"]["DefaultValue"] == f"s3://${{DataBucket}}/{network}/batch/input/"
    assert parameters["ContentType"]["EnumValues"] == list(RECORD_FORMATS)


@pytest.mark.parametrize(("config", "network"), CASES)
def test_the_instance_type_is_one_batch_transform_offers(config, network):
    instance_types = botocore.session.get_session().get_service_model("sagemaker").shape_for("TransformInstanceType")
    parameters = {item["Name"]: item for item in definition.transform_definition(config, network)["Parameters"]}
    assert parameters["TransformInstanceType"]["DefaultValue"] in instance_types.enum


def test_the_drift_monitor_of_a_batch_is_optional_and_reads_the_batchs_inputs_and_the_versions_baseline():
    assert [step["Name"] for step in definition.transform_definition(stage("local"), "cnn")["Steps"]] == [
        "ResolveModel",
        "CreateModel",
        "RecordFormat",
    ]
    steps = {step["Name"]: step for step in definition.transform_definition(with_drift(stage("local")), "cnn")["Steps"]}
    inputs = {
        item["InputName"]: item["S3Input"]["S3Uri"]
        for item in steps["MonitorBatchInput"]["Arguments"]["ProcessingInputs"]
    }
    assert inputs["batch"] == {"Get": "Parameters.InputDataUri"}
    assert inputs["baseline"]["Std:JsonGet"]["Path"] == "baseline_uri"
    assert inputs["model"]["Std:JsonGet"]["Path"] == "model_data_url"
    assert (
        "--batch-dir /opt/ml/processing/batch"
        in steps["MonitorBatchInput"]["Arguments"]["AppSpecification"]["ContainerEntrypoint"][-1]
    )
    assert steps["PublishBatchDrift"]["Arguments"]["NetworkConfig"]["EnableNetworkIsolation"] is False


def test_the_paths_the_pipeline_reads_from_model_json_are_what_resolve_model_writes(s3):
    """ResolveModel against moto's model registry: model.json holds every path the steps read."""
    import boto3

    from processing.find_model_version import NotServable, resolve

    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    sagemaker.create_model_package_group(ModelPackageGroupName="mlops-local-cnn")
    for status in ("Approved", "Rejected"):
        sagemaker.create_model_package(
            ModelPackageGroupName="mlops-local-cnn",
            ModelApprovalStatus=status,
            InferenceSpecification={
                "Containers": [{"Image": "image", "ModelDataUrl": f"s3://artifacts/models/{status}/model.tar.gz"}],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
            DriftCheckBaselines={
                "ModelDataQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": "s3://a/baseline.json"}}
            },
        )
    newest_approved = resolve(sagemaker, "mlops-local-cnn", 0)
    assert newest_approved["version"] == 1 and newest_approved["model_data_url"].endswith("Approved/model.tar.gz")
    built = definition.transform_definition(with_drift(stage("local")), "cnn")
    read = {item["Path"] for item in expressions(built, "Std:JsonGet")}
    assert read <= set(newest_approved) and newest_approved["baseline_uri"] == "s3://a/baseline.json"
    assert resolve(sagemaker, "mlops-local-cnn", 1)["version"] == 1
    with pytest.raises(NotServable, match="version 2 is Rejected, not Approved"):
        resolve(sagemaker, "mlops-local-cnn", 2)
    with pytest.raises(NotServable, match="has no version 7"):
        resolve(sagemaker, "mlops-local-cnn", 7)
