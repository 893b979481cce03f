"""The pipelines stack, asserted on the synthesized templates (moto skips AWS::SageMaker::Pipeline
and AWS::SageMaker::ModelPackageGroup, so this is where they are checked)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from synth_support import Synthesized, app_module, logical_id_of, new_app, synthesized

from infra import naming
from infra.constructs.training_pipeline import trigger_object_key
from infra.definitions import training_pipeline as definition
from infra.definitions import tuning_pipeline
from infra.images import FRAMEWORK_VERSION
from infra.nag import flatten_cfn_reference
from infra.source_bundle import source_bundle_hash
from mlops.local.authorization import Where, authorized_resources

# slow: synthesizes the whole app per stage.
pytestmark = pytest.mark.slow

STAGES = ("local", "dev", "prod")
# The stages with training pipelines: prod promotes from dev and trains nothing
# (tests/test_retraining_across_accounts.py shows what it has instead).
TRAINING_STAGES = ("local", "dev")
PARTITION_ACCOUNT = "arn:<AWS::Partition>:sagemaker:us-east-1:{account}"


def resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def account(synth: Synthesized) -> str:
    return synth.config.account or "<AWS::AccountId>"


def bundle_asset_hash() -> str:
    """The code bundle's CDK asset hash: CDK hashes the custom hash (the bundle's content hash) once more."""
    return hashlib.sha256(source_bundle_hash().encode()).hexdigest()


class Pipelines:
    """The pipelines template of one stage, with each network's resources found by construct."""

    def __init__(self, synth: Synthesized) -> None:
        self.synth = synth
        self.stack = synth.stacks.pipelines
        self.json = synth.template_json(self.stack)

    def logical_id(self, construct: Any) -> str:
        return logical_id_of(construct)

    def resource(self, construct: Any) -> dict[str, Any]:
        return self.json["Resources"][self.logical_id(construct)]

    def pipeline(self, network: str) -> dict[str, Any]:
        return self.resource(self.stack.pipelines[network].pipeline)

    def body_and_values(self, network: str) -> tuple[dict[str, Any], dict[str, Any]]:
        body, values = self.pipeline(network)["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
        return json.loads(body), values

    def role_statements(self, role: Any) -> dict[str, list[dict[str, Any]]]:
        return {
            policy["PolicyName"]: policy["PolicyDocument"]["Statement"]
            for policy in self.resource(role)["Properties"]["Policies"]
        }


@pytest.fixture(scope="module", params=STAGES)
def pipelines(request: pytest.FixtureRequest) -> Pipelines:
    return Pipelines(synthesized(request.param))


@pytest.fixture(scope="module", params=TRAINING_STAGES)
def training(request: pytest.FixtureRequest) -> Pipelines:
    return Pipelines(synthesized(request.param))


def test_one_pipeline_and_one_group_per_enabled_network(training: Pipelines) -> None:
    config = training.synth.config
    found = {r["Properties"]["PipelineName"]: r for r in resources(training.json, "AWS::SageMaker::Pipeline").values()}
    groups = {
        r["Properties"]["ModelPackageGroupName"]: r
        for r in resources(training.json, "AWS::SageMaker::ModelPackageGroup").values()
    }
    expected = {naming.pipeline_name(config.prefix(), network) for network in config.networks}
    # two tuning pipelines each, from nothing and warm (infra/definitions/tuning_pipeline.py)
    expected |= {naming.tuning_pipeline_name(config.prefix(), network) for network in config.networks}
    expected |= {naming.warm_start_pipeline_name(config.prefix(), network) for network in config.networks}
    # and a drift monitor pipeline each, where the stage's endpoints capture traffic
    expected |= {
        naming.monitor_pipeline_name(config.prefix(), network) for network in config.networks if config.captures_data
    }
    assert set(found) == expected
    assert set(groups) == {naming.model_package_group_name(config.prefix(), n) for n in config.networks}
    retained = "Retain" if config.removal_policy == "retain" else "Delete"
    assert {group["DeletionPolicy"] for group in groups.values()} == {retained}
    for network in config.networks:
        construct = training.stack.pipelines[network]
        pipeline = training.pipeline(network)
        assert pipeline["Properties"]["RoleArn"] == {"Fn::GetAtt": [training.logical_id(construct.role), "Arn"]}
        assert training.logical_id(construct.model_package_group) in pipeline["DependsOn"]


def _processor(instance_type: str) -> str:
    """SageMaker's GPU instance families are ml.g* and ml.p*."""
    return "gpu" if instance_type.split(".")[1][0] in "gp" else "cpu"


def test_the_definition_is_a_pipeline_with_a_value_for_every_placeholder(training: Pipelines) -> None:
    config = training.synth.config
    for network in config.networks:
        body, values = training.pipeline(network)["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"][
            "Fn::Sub"
        ]
        # Fn::Sub fills `${Name}` and writes `${!Name}` as a literal `${Name}`.
        assert set(re.findall(r"\$\{(\w+)\}", body)) == set(values), "a placeholder without a value, or the reverse"
        document = json.loads(re.sub(r"\$\{(\w+)\}", "filled", body).replace("${!", "${"))
        assert document["Version"] == "2020-12-01" and document["Steps"]
        flat = {name: flatten_cfn_reference(value) for name, value in values.items()}
        # SageMaker's TensorFlow images of the stage's region, for the processor of each job's instance.
        region, version = re.escape(config.region), re.escape(FRAMEWORK_VERSION)
        training_processor = _processor(config.training_instance_type(network))
        assert re.fullmatch(
            rf"\d{{12}}\.dkr\.ecr\.{region}\.amazonaws\.com/tensorflow-training:{version}-{training_processor}-py3\d+",
            flat[definition.TRAINING_IMAGE_URI],
        ), flat[definition.TRAINING_IMAGE_URI]
        assert re.fullmatch(
            rf"\d{{12}}\.dkr\.ecr\.{region}\.amazonaws\.com/tensorflow-inference:{version}-"
            f"{_processor(config.endpoint_instance_type(network))}",
            flat[definition.INFERENCE_IMAGE_URI],
        ), flat[definition.INFERENCE_IMAGE_URI]
        assert flat[definition.SOURCE_BUNDLE_URI] == (
            f"s3://cdk-hnb659fds-assets-{account(training.synth)}-us-east-1/{bundle_asset_hash()}.gz"
        )
        # The name SageMaker gives the one object of that URI in an input or channel.
        assert flat[definition.SOURCE_BUNDLE_FILE] == f"{bundle_asset_hash()}.gz"
        assert flat[definition.DATA_BUCKET] == f"{config.prefix()}-data-{account(training.synth)}-us-east-1"
        assert flat[definition.ARTIFACTS_BUCKET] == f"{config.prefix()}-artifacts-{account(training.synth)}-us-east-1"
        assert "Fn::ImportValue" in values[definition.KEY_ARN]
        assert "Fn::ImportValue" in values[definition.EXECUTION_ROLE_ARN]


def test_train_step_uses_the_stage_spot_setting_checkpoints_kms_and_the_tf_image(training: Pipelines) -> None:
    config = training.synth.config
    body, _ = training.body_and_values("cnn")
    train = body["Steps"][0]["Arguments"]
    assert train["EnableManagedSpotTraining"] is config.training.use_spot
    assert train["AlgorithmSpecification"]["TrainingImage"] == "${TrainingImageUri}"
    assert train["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
    assert train["CheckpointConfig"]["S3Uri"]["Std:Join"]["Values"][0] == "s3://${ArtifactsBucket}/checkpoints/cnn/"
    assert train["OutputDataConfig"]["KmsKeyId"] == train["ResourceConfig"]["VolumeKmsKeyId"] == "${KeyArn}"


def test_retraining_rule_starts_its_own_pipeline_on_the_train_spec_through_a_scoped_role(training: Pipelines) -> None:
    synth = training.synth
    for network in synth.config.networks:
        construct = training.stack.pipelines[network]
        rule = training.resource(construct.new_data_rule)["Properties"]
        assert rule["EventPattern"]["source"] == ["aws.s3"]
        assert rule["EventPattern"]["detail-type"] == ["Object Created"]
        detail = rule["EventPattern"]["detail"]
        assert [flatten_cfn_reference(name) for name in detail["bucket"]["name"]] == [
            f"{synth.config.prefix()}-data-{account(synth)}-us-east-1"
        ]
        assert detail["object"]["key"] == [trigger_object_key(network)] == [f"{network}/train/spec.json"]
        pipeline_arn = (
            PARTITION_ACCOUNT.format(account=account(synth))
            + f":pipeline/{naming.pipeline_name(synth.config.prefix(), network)}"
        )
        (target,) = rule["Targets"]
        assert flatten_cfn_reference(target["Arn"]) == pipeline_arn
        trigger_role = training.json["Resources"][target["RoleArn"]["Fn::GetAtt"][0]]
        (trust,) = trigger_role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": "events.amazonaws.com"}
        (policy,) = trigger_role["Properties"]["Policies"]
        assert policy["PolicyDocument"]["Statement"] == [
            {"Action": "sagemaker:StartPipelineExecution", "Effect": "Allow", "Resource": target["Arn"]}
        ]
        schedule = construct.schedule_rule
        if synth.config.retrain_schedule:
            properties = training.resource(schedule)["Properties"]
            assert properties["ScheduleExpression"] == synth.config.retrain_schedule
            assert properties["Targets"][0]["RoleArn"] == target["RoleArn"]
        else:
            assert schedule is None


def test_nothing_reads_an_attribute_of_a_resource_moto_skips(pipelines: Pipelines) -> None:
    """moto's CloudFormation skips pipelines and model package groups; a Fn::GetAtt (or Ref) on
    one fails the whole stack there."""
    skipped = set(resources(pipelines.json, "AWS::SageMaker::Pipeline")) | set(
        resources(pipelines.json, "AWS::SageMaker::ModelPackageGroup")
    )
    text = json.dumps({"Resources": pipelines.json["Resources"], "Outputs": pipelines.json.get("Outputs", {})})
    for logical_id in skipped:
        assert f'"Fn::GetAtt": ["{logical_id}"' not in text and f'"Ref": "{logical_id}"' not in text


def test_data_bucket_sends_object_events_to_eventbridge_without_a_custom_resource(training: Pipelines) -> None:
    storage = training.synth.template_json(training.synth.stacks.storage)
    data = training.synth.stacks.storage.data.bucket.node.default_child
    bucket = storage["Resources"][training.synth.stacks.storage.get_logical_id(data)]
    assert bucket["Properties"]["NotificationConfiguration"] == {
        "EventBridgeConfiguration": {"EventBridgeEnabled": True}
    }
    for template in (storage, training.json):
        assert not resources(template, "Custom::S3BucketNotifications")
        assert not resources(template, "AWS::Lambda::Function")


def test_pipeline_role_is_scoped_to_named_resources(training: Pipelines) -> None:
    synth = training.synth
    prefix = synth.config.prefix()
    arn = PARTITION_ACCOUNT.format(account=account(synth))
    for network in synth.config.networks:
        construct = training.stack.pipelines[network]
        role = training.resource(construct.role)["Properties"]
        (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
        assert "aws:SourceAccount" in trust["Condition"]["StringEquals"]
        policies = training.role_statements(construct.role)
        assert set(policies) == {
            "RunTrainingAndEvaluationJobs",
            "PassExecutionRoleToSageMaker",
            "RegisterModelVersions",
            "ReadEvaluationReports",
            "EncryptJobVolumesWithProjectKey",
        }
        group = naming.model_package_group_name(prefix, network)
        allowed = {
            f"{arn}:training-job/pipelines-*",
            f"{arn}:processing-job/pipelines-*",
            f"{arn}:model-package/{group}/*",
            f"{arn}:model-package-group/{group}",
            f"arn:<AWS::Partition>:s3:::{prefix}-artifacts-{account(synth)}-us-east-1/pipelines/{network}/*",
        }
        for name, statements in policies.items():
            for statement in statements:
                for resource in as_list(statement["Resource"]):
                    flat = flatten_cfn_reference(resource)
                    if flat == "*":
                        # Registering only, whose one resource type is optional in AWS's data (docs/iam.md).
                        assert statement["Action"] == "sagemaker:CreateModelPackage", f"{name}: unscoped"
                        where = Where("aws", synth.config.region, account(synth))
                        assert authorized_resources(statement["Action"], {}, where)[0].arn == "*"
                        continue
                    if "ImportValue" not in json.dumps(resource):
                        assert flat in allowed, f"{name}: {flat}"
        (pass_role,) = policies["PassExecutionRoleToSageMaker"]
        assert pass_role["Action"] == "iam:PassRole"
        assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
        assert "execution-role" in json.dumps(pass_role["Resource"])


def test_tuning_pipelines_run_as_a_role_scoped_like_the_training_pipeline_s(training: Pipelines) -> None:
    """The same gate's grants; tuning jobs instead of training jobs, the account's and region's only
    (SageMaker Pipelines names its tuning jobs in a form AWS does not document)."""
    pipelines = training
    synth = pipelines.synth
    prefix = synth.config.prefix()
    arn = PARTITION_ACCOUNT.format(account=account(synth))
    for network in synth.config.networks:
        construct = pipelines.stack.tuning[network]
        trainings = pipelines.role_statements(pipelines.stack.pipelines[network].role)
        policies = pipelines.role_statements(construct.role)
        assert set(policies) == set(trainings) - {"RunTrainingAndEvaluationJobs"} | {"RunTuningAndEvaluationJobs"}
        for name in set(policies) & set(trainings):
            assert policies[name] == trainings[name], name
        tuning_job, processing_job = f"{arn}:hyper-parameter-tuning-job/*", f"{arn}:processing-job/pipelines-*"
        group = naming.model_package_group_name(prefix, network)
        granted = {
            (action, flatten_cfn_reference(resource))
            for statement in policies["RunTuningAndEvaluationJobs"]
            for action in as_list(statement["Action"])
            for resource in as_list(statement["Resource"])
        }
        tuning_actions = ("Create", "Describe", "Stop")
        assert granted == {
            *((f"sagemaker:{verb}HyperParameterTuningJob", tuning_job) for verb in tuning_actions),
            ("sagemaker:ListTrainingJobsForHyperParameterTuningJob", tuning_job),
            *((f"sagemaker:{verb}ProcessingJob", processing_job) for verb in tuning_actions),
            *(
                ("sagemaker:AddTags", resource)
                for resource in (tuning_job, processing_job, f"{arn}:model-package/{group}/*")
            ),
        }
        for warm_start, pipeline in construct.pipelines.items():
            properties = pipelines.resource(pipeline)["Properties"]
            assert properties["RoleArn"] == {"Fn::GetAtt": [pipelines.logical_id(construct.role), "Arn"]}
            body, values = properties["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
            assert body == tuning_pipeline.tuning_definition_body(synth.config, network, warm_start=warm_start)
            assert values == pipelines.body_and_values(network)[1]
            group_id = pipelines.logical_id(pipelines.stack.pipelines[network].model_package_group)
            assert group_id in pipelines.resource(pipeline)["DependsOn"]


def test_pipeline_role_grants_job_volumes_the_key_and_describes_it_only_through_sagemaker(training: Pipelines) -> None:
    """kms:GrantIsForAWSResource is a key of CreateGrant requests only: DescribeKey needs its own
    condition (tests/test_iam_vocabulary.py found it under the grant's, where it never held)."""
    region = training.synth.config.region
    for network in training.synth.config.networks:
        statements = training.role_statements(training.stack.pipelines[network].role)["EncryptJobVolumesWithProjectKey"]
        assert {
            (statement["Action"], json.dumps(statement["Condition"], sort_keys=True)) for statement in statements
        } == {
            ("kms:CreateGrant", json.dumps({"Bool": {"kms:GrantIsForAWSResource": "true"}})),
            ("kms:DescribeKey", json.dumps({"StringEquals": {"kms:ViaService": f"sagemaker.{region}.amazonaws.com"}})),
        }


def test_execution_role_reads_exactly_the_source_bundle_the_pipelines_use(pipelines: Pipelines) -> None:
    synth = pipelines.synth
    role = synth.template_json(synth.stacks.execution_role)
    statements = [
        s
        for policy in resources(role, "AWS::IAM::Policy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Sid") == "ReadSourceBundle"
    ]
    (statement,) = statements
    assert statement["Action"] == "s3:GetObject"
    assert flatten_cfn_reference(statement["Resource"]) == (
        f"arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-{account(synth)}-us-east-1/{bundle_asset_hash()}.gz"
    )


def test_execution_role_reads_only_its_networks_model_versions_for_the_champion_step(training: Pipelines) -> None:
    """The Champion step lists the versions of its network's group as the execution role (a List
    call, on `*`) and describes them: on that group's versions only, one statement per network."""
    synth = training.synth
    arn = PARTITION_ACCOUNT.format(account=account(synth))
    role = synth.template_json(synth.stacks.execution_role)
    statements = [
        statement
        for policy in resources(role, "AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if any(action.startswith("sagemaker:") for action in as_list(statement["Action"]))
    ]
    expected = {"ListModelVersions": ("sagemaker:ListModelPackages", "*")}
    for network in synth.config.networks:
        group = naming.model_package_group_name(synth.config.prefix(), network)
        expected[f"ReadModelVersionsOf{group.title().replace('-', '')}"] = (
            "sagemaker:DescribeModelPackage",
            f"{arn}:model-package/{group}/*",
        )
        source = synth.config.promotion_source
        if source is not None:
            # The batch transform's ResolveModel step describes the served versions: the source's.
            served = source.model_package_group_arn(network).replace(":model-package-group/", ":model-package/")
            expected[f"ReadServedVersionsOf{network.capitalize()}"] = ("sagemaker:DescribeModelPackage", f"{served}/*")
    assert {
        statement["Sid"]: (statement["Action"], flatten_cfn_reference(statement["Resource"]))
        for statement in statements
    } == expected
    for statement in statements:
        assert "Condition" not in statement


def test_template_is_deployed_by_url_and_fits(pipelines: Pipelines) -> None:
    """Inline definitions make this template larger than CloudFormation's 51,200-byte inline body,
    which is fine because CDK publishes every template as an asset and deploys it by TemplateURL
    (limit 1 MB); this asserts that path is the one taken."""
    synth = pipelines.synth
    manifest = json.loads((synth.outdir / f"{pipelines.stack.artifact_id}.assets.json").read_text())
    template_file = f"{pipelines.stack.artifact_id}.template.json"
    assert any(asset["source"]["path"] == template_file for asset in manifest["files"].values())
    # Three training pipelines (train, tune, tune warm) and a monitor per network: about 400 KB
    # for five networks, of the 1 MB limit.
    assert (synth.outdir / template_file).stat().st_size < 1_000_000 / 2


def test_nag_findings_of_the_pipelines_are_all_acknowledged_with_reasons(pipelines: Pipelines) -> None:
    report = pipelines.synth.validation_report
    (nag,) = [plugin for plugin in report["pluginReports"] if plugin["pluginName"] == "AwsSolutions"]
    assert nag["violations"] == []
    ours = [
        violation
        for violation in nag["suppressedViolations"]
        if violation["acknowledgedAt"].startswith(pipelines.stack.stack_name + "/")
    ]
    assert ours, "the pipeline roles' prefix wildcards must show up as acknowledged findings"
    for violation in ours:
        assert violation["ruleName"].startswith("AwsSolutions-IAM5[Resource::")
        assert len(violation["reason"].split()) >= 8


def test_cfn_lint_is_clean() -> None:
    templates = [
        str(synthesized(stage).outdir / f"{synthesized(stage).stacks.pipelines.artifact_id}.template.json")
        for stage in STAGES
    ]
    result = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), *templates], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_second_synth_gives_the_same_template() -> None:
    first = synthesized("dev")
    outdir = Path(tempfile.mkdtemp(prefix="synth-again-"))
    try:
        app = new_app("dev", outdir)
        stacks = app_module().compose(app, first.config)
        app.synth()
        name = f"{stacks.pipelines.artifact_id}.template.json"
        assert (outdir / name).read_bytes() == (first.outdir / name).read_bytes()
        bundle = f"asset.{bundle_asset_hash()}.tar.gz"
        assert (outdir / bundle).read_bytes() == (first.outdir / bundle).read_bytes()
    finally:
        shutil.rmtree(outdir, ignore_errors=True)
