"""The batch transform on the templates (`<prefix>-batch`, infra/stacks/batch_stack.py): one pipeline
per network whose definition is the data one, a role that may do only what its steps ask of
SageMaker (evaluated as IAM evaluates it, conditions included, by `@cloud-copilot/iam-simulate`),
the execution role writing its outputs, and a schedule that is off unless the stage sets one.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from iam_simulator import IamSimulator, expect
from policy_documents import policy_documents
from synth_support import CDK_CONTEXT, Synthesized, app_module, new_app, synthesized
from test_iam_simulation import ALLOWED, IMPLICITLY_DENIED, OVER_TLS, SOME_ACCOUNT, Stage
from test_pipeline_stack import resources

from infra import naming
from infra.config import load_stage_config
from infra.definitions import transform_pipeline as definition

# slow: synthesizes the whole app.
pytestmark = pytest.mark.slow

NETWORK = "cnn"
SCHEDULE = "cron(0 2 * * ? *)"


@pytest.fixture(scope="module")
def local() -> Stage:
    synth = synthesized("local")
    account = synth.config.account or SOME_ACCOUNT
    return Stage(synth, account, policy_documents(synth.template_files, account=account, region=synth.config.region))


@pytest.fixture(scope="module")
def scheduled() -> Iterator[Synthesized]:
    """The local stage with a nightly batch transform and its drift monitor on."""
    stages = {**CDK_CONTEXT["stages"]}
    stages["local"] = {**stages["local"], "batch": {"schedule": SCHEDULE, "monitor_drift": True}}
    outdir = Path(tempfile.mkdtemp(prefix="synth-batch-"))
    try:
        app = new_app("local", outdir, stages=stages)
        config = load_stage_config(app.node)
        stacks = app_module().compose(app, config)
        app.synth()
        yield Synthesized(config=config, stacks=stacks, outdir=outdir)
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


@pytest.fixture(scope="module")
def simulator() -> Iterator[IamSimulator]:
    with IamSimulator() as running:
        yield running


def test_every_network_has_a_transform_pipeline_with_the_data_definition_and_no_schedule(local: Stage) -> None:
    synth = local.synth
    template = synth.template_json(synth.stacks.batch)
    pipelines = {
        item["Properties"]["PipelineName"]: item for item in resources(template, "AWS::SageMaker::Pipeline").values()
    }
    config = synth.config
    assert set(pipelines) == {naming.transform_pipeline_name(config.prefix(), network) for network in config.networks}
    for network in config.networks:
        body, values = pipelines[naming.transform_pipeline_name(config.prefix(), network)]["Properties"][
            "PipelineDefinition"
        ]["PipelineDefinitionBody"]["Fn::Sub"]
        assert body == definition.transform_definition_body(config, network)
        assert set(values) == {
            "ArtifactsBucket",
            "DataBucket",
            "ExecutionRoleArn",
            "KeyArn",
            "SourceBundleUri",
            "SourceBundleFile",
            "TrainingImageUri",
        }
    assert resources(template, "AWS::Events::Rule") == {}, "no schedule unless the stage sets one"


def test_a_stage_schedule_starts_each_transform_pipeline_as_a_role_that_may_start_only_it(
    scheduled: Synthesized,
) -> None:
    template = scheduled.template_json(scheduled.stacks.batch)
    rules = list(resources(template, "AWS::Events::Rule").values())
    assert len(rules) == len(scheduled.config.networks)
    roles = resources(template, "AWS::IAM::Role")
    for rule in rules:
        assert rule["Properties"]["ScheduleExpression"] == SCHEDULE
        (target,) = rule["Properties"]["Targets"]
        role = roles[target["RoleArn"]["Fn::GetAtt"][0]]
        ((statement,),) = [policy["PolicyDocument"]["Statement"] for policy in role["Properties"]["Policies"]]
        assert statement["Action"] == "sagemaker:StartPipelineExecution"
        assert statement["Resource"] == target["Arn"]
    steps = json.loads(
        next(iter(resources(template, "AWS::SageMaker::Pipeline").values()))["Properties"]["PipelineDefinition"][
            "PipelineDefinitionBody"
        ]["Fn::Sub"][0]
    )["Steps"]
    assert [step["Name"] for step in steps][-2:] == ["MonitorBatchInput", "PublishBatchDrift"]


def test_the_transform_pipeline_role_may_do_only_what_its_steps_ask(local: Stage, simulator: IamSimulator) -> None:
    construct = local.synth.stacks.batch.transforms[NETWORK]
    role = local.role(construct.role)
    config = local.synth.config
    job = local.arn("sagemaker", "transform-job/pipelines-abc123-TransformJsonLines-x1y2z3")
    model = local.arn("sagemaker", "model/pipelines-abc123-CreateModel-x1y2z3")
    group = naming.model_package_group_name(config.prefix(), NETWORK)
    other_key = local.arn("kms", "key/99999999-9999-9999-9999-999999999999")
    keys = {"sagemaker:OutputKmsKeyArn": local.key_arn, "sagemaker:VolumeKmsKeyArn": local.key_arn}
    artifacts = local.synth.stacks.storage.artifacts
    expect(
        simulator,
        [
            (
                "a transform job encrypted with the project key",
                local.call(role, "sagemaker:CreateTransformJob", job, **keys),
                ALLOWED,
            ),
            (
                "a transform job whose output another key encrypts",
                local.call(
                    role, "sagemaker:CreateTransformJob", job, **{**keys, "sagemaker:OutputKmsKeyArn": other_key}
                ),
                IMPLICITLY_DENIED,
            ),
            (
                "a transform job whose volume another key encrypts",
                local.call(
                    role, "sagemaker:CreateTransformJob", job, **{**keys, "sagemaker:VolumeKmsKeyArn": other_key}
                ),
                IMPLICITLY_DENIED,
            ),
            (
                "a transform job not named by the pipeline",
                local.call(role, "sagemaker:CreateTransformJob", local.arn("sagemaker", "transform-job/mine"), **keys),
                IMPLICITLY_DENIED,
            ),
            (
                "an isolated model",
                local.call(role, "sagemaker:CreateModel", model, **{"sagemaker:NetworkIsolation": "true"}),
                ALLOWED,
            ),
            (
                "a model with a network",
                local.call(role, "sagemaker:CreateModel", model, **{"sagemaker:NetworkIsolation": "false"}),
                IMPLICITLY_DENIED,
            ),
            (
                "a version of the served group",
                local.call(role, "sagemaker:DescribeModelPackage", local.arn("sagemaker", f"model-package/{group}/3")),
                ALLOWED,
            ),
            (
                "a version of another group",
                local.call(
                    role,
                    "sagemaker:DescribeModelPackage",
                    local.arn("sagemaker", f"model-package/{config.prefix()}-rnn/3"),
                ),
                IMPLICITLY_DENIED,
            ),
            (
                "a training job",
                local.call(role, "sagemaker:CreateTrainingJob", local.arn("sagemaker", "training-job/pipelines-x")),
                IMPLICITLY_DENIED,
            ),
            (
                "a model version registered",
                local.call(role, "sagemaker:CreateModelPackage", local.arn("sagemaker", f"model-package/{group}/9")),
                IMPLICITLY_DENIED,
            ),
            (
                "its runs' model.json",
                local.s3(
                    role,
                    "s3:GetObject",
                    artifacts,
                    f"{definition.work_prefix(NETWORK)}abc/model/model.json",
                    **OVER_TLS,
                ),
                ALLOWED,
            ),
            (
                "another network's runs",
                local.s3(
                    role, "s3:GetObject", artifacts, f"{definition.work_prefix('rnn')}abc/model/model.json", **OVER_TLS
                ),
                IMPLICITLY_DENIED,
            ),
        ],
    )


def test_the_execution_role_reads_the_batch_input_and_writes_only_the_batch_outputs(
    local: Stage, simulator: IamSimulator
) -> None:
    role, storage = local.execution_role, local.synth.stacks.storage
    output = f"{definition.output_prefix(NETWORK)}abc123/records.jsonl.out"
    expect(
        simulator,
        [
            (
                "an input record file",
                local.s3(role, "s3:GetObject", storage.data, f"{definition.input_prefix(NETWORK)}x.jsonl", **OVER_TLS),
                ALLOWED,
            ),
            ("an output file", local.s3(role, "s3:PutObject", storage.artifacts, output, **OVER_TLS), ALLOWED),
            (
                "an output file elsewhere in the artifacts bucket",
                local.s3(role, "s3:PutObject", storage.artifacts, "elsewhere/records.jsonl.out", **OVER_TLS),
                IMPLICITLY_DENIED,
            ),
            (
                "overwriting its input",
                local.s3(role, "s3:PutObject", storage.data, f"{definition.input_prefix(NETWORK)}x.jsonl", **OVER_TLS),
                IMPLICITLY_DENIED,
            ),
        ],
    )
