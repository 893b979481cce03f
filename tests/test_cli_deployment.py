"""`mlops deploy` against a moto server, and `mlops cost` for the stages in cdk.json.

One moto server for the module (moto keeps one state per process). Its registry holds
mlops-local-cnn versions 1 and 2 approved and 3 pending; rnn has no group at all.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_support import run_mlops
from synth_support import CDK_CONTEXT
from werkzeug.serving import make_server

from infra import naming
from infra.config import parse_stage_config
from mlops import aws as aws_module
from mlops import cdk as cdk_runner
from mlops import costs
from mlops.aws import ShellAws, answers_as_moto
from mlops.cdk import CdkCli, CdkRun
from mlops.errors import UsageError
from mlops.local.moto import LocalAws, moto_server
from mlops.registry import approved_version
from mlops.stages import enabled_network
from training.networks import NETWORKS

GROUP = "mlops-local-cnn"
STATUSES = ("Approved", "Approved", "PendingManualApproval")
STAGES = CDK_CONTEXT["stages"]


def _inference_specification() -> dict:
    return {
        "Containers": [
            {
                "Image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.19-cpu",
                "ModelDataUrl": "s3://bucket/models/model.tar.gz",
            }
        ],
        "SupportedContentTypes": ["application/json"],
        "SupportedResponseMIMETypes": ["application/json"],
    }


@pytest.fixture(scope="module")
def aws() -> Iterator[LocalAws]:
    with moto_server() as server:
        sagemaker = server.client("sagemaker")
        sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
        for status in STATUSES:
            sagemaker.create_model_package(
                ModelPackageGroupName=GROUP,
                ModelApprovalStatus=status,
                InferenceSpecification=_inference_specification(),
            )
        yield server


@pytest.fixture()
def shell_on(aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> LocalAws:
    """This process's environment pointing at the moto server, as a user's shell would."""
    for key, value in aws.env.items():
        monkeypatch.setenv(key, value)
    return aws


def version_arn(version: int, group: str = GROUP) -> str:
    return f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{group}/{version}"


# --- choosing the version -------------------------------------------------------------------


def test_newest_approved_version_wins_over_a_newer_pending_one(aws: LocalAws) -> None:
    chosen = approved_version(aws.client("sagemaker"), GROUP)
    assert (chosen.arn, chosen.version, chosen.status) == (version_arn(2), 2, "Approved")


def test_an_explicit_version_must_be_approved(aws: LocalAws) -> None:
    sagemaker = aws.client("sagemaker")
    assert approved_version(sagemaker, GROUP, 1).arn == version_arn(1)
    with pytest.raises(UsageError, match=f"version 3 of {GROUP} is PendingManualApproval, not Approved"):
        approved_version(sagemaker, GROUP, 3)
    with pytest.raises(UsageError, match=f"{GROUP} has no version 9"):
        approved_version(sagemaker, GROUP, 9)


def test_a_group_without_approved_versions_is_a_usage_error(aws: LocalAws) -> None:
    with pytest.raises(UsageError, match="no approved version in model package group mlops-local-rnn"):
        approved_version(aws.client("sagemaker"), "mlops-local-rnn")


# --- the cdk command --------------------------------------------------------------------------


@dataclass(frozen=True)
class CliCall:
    argv: list[str]
    env: dict[str, str]
    attached: bool
    """Run on this terminal, where the CLI can show a change and ask, rather than with its output captured."""

    def option(self, name: str) -> str | None:
        return self.argv[self.argv.index(name) + 1] if name in self.argv else None


def record_cli(monkeypatch: pytest.MonkeyPatch) -> list[CliCall]:
    """The CDK CLI's commands as `mlops` runs them, recorded instead of run."""
    calls: list[CliCall] = []

    def record(argv: list[str], env: dict[str, str], *_: object, attached: bool = False, **__: object) -> CdkRun:
        calls.append(CliCall(argv, env, attached))
        return CdkRun(stdout="", stderr="")

    monkeypatch.setattr(cdk_runner, "_run", record)
    return calls


def test_deploy_releases_the_version_through_its_endpoint_stack_alone(
    shell_on: LocalAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    calls = record_cli(monkeypatch)
    code, out, _ = run_mlops(monkeypatch, capsys, "deploy", "cnn", "--yes")

    assert code == 0
    assert f"{GROUP} version 2" in out
    (call,) = calls
    assert call.argv[1:3] == ["deploy", "mlops-local-endpoint-cnn"] and "--all" not in call.argv
    assert "--exclusively" in call.argv  # the stacks it imports from are left alone
    assert f"model_package.cnn={version_arn(2)}" in call.argv
    # The drift monitor's schedule watches the version deployed: its model (and its baseline,
    # which these versions, registered without one, do not have).
    assert "--parameters=mlops-local-endpoint-cnn:MonitoredModelDataUrl=s3://bucket/models/model.tar.gz" in call.argv
    assert "--parameters=mlops-local-endpoint-cnn:MonitoredBaselineUri=" in call.argv
    assert call.env["AWS_ENDPOINT_URL"] == shell_on.endpoint_url
    assert call.env["AWS_REGION"] == "us-east-1"


def test_against_moto_deploy_goes_direct_and_asks_nothing(
    shell_on: LocalAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """moto fails change-set updates and reports outputs only for direct deploys: its workarounds,
    only there (the integration test below deploys this way for real)."""
    calls = record_cli(monkeypatch)
    code, _, _ = run_mlops(monkeypatch, capsys, "deploy", "cnn", "--yes")
    assert code == 0
    (call,) = calls
    assert "--method=direct" in call.argv
    assert call.option("--require-approval") == "never"
    assert not call.attached


@pytest.mark.parametrize(
    ("args", "approval", "attached"),
    [
        ((), "broadening", True),
        (("--require-approval", "any-change"), "any-change", True),
        (("--require-approval", "never"), "never", False),
    ],
    ids=["by-default", "any-change", "told-never"],
)
def test_in_aws_deploy_makes_a_change_set_and_asks_on_this_terminal_before_a_broadening(
    shell_on: LocalAws,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    args: tuple[str, ...],
    approval: str,
    attached: bool,
) -> None:
    """The registry here is moto's, but the CloudFormation the shell points at is taken for AWS
    (how moto is told from AWS is the next test)."""
    monkeypatch.setattr(ShellAws, "is_moto", property(lambda _: False))
    calls = record_cli(monkeypatch)
    code, _, err = run_mlops(monkeypatch, capsys, "deploy", "cnn", *args, "--yes")
    assert code == 0, err
    (call,) = calls
    assert not any(argument.startswith("--method") for argument in call.argv), "a change set is the CLI's default"
    assert call.option("--require-approval") == approval
    # The CLI can show the broadening and ask only on a terminal, and only one stack at a time.
    assert call.attached is attached
    if attached:
        assert call.option("--concurrency") == "1"


def test_a_moto_server_is_told_from_aws_by_its_own_api(shell_on: LocalAws, monkeypatch: pytest.MonkeyPatch) -> None:
    assert answers_as_moto(shell_on.endpoint_url)

    def not_found(environ: dict, start_response: Any) -> list[bytes]:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such path"]

    other = make_server("127.0.0.1", 0, not_found)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        assert not answers_as_moto(f"http://127.0.0.1:{other.server_port}")
    finally:
        other.shutdown()
    assert not answers_as_moto("http://127.0.0.1:9")  # nothing listens: not moto either

    monkeypatch.setattr(aws_module.requests, "get", lambda *_, **__: pytest.fail("AWS itself is never asked"))
    assert not answers_as_moto("https://cloudformation.us-east-1.amazonaws.com")


def test_deploy_of_a_chosen_version(
    shell_on: LocalAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    calls = record_cli(monkeypatch)
    code, _, _ = run_mlops(monkeypatch, capsys, "deploy", "cnn", "--version", "1", "--yes")
    assert code == 0
    assert f"model_package.cnn={version_arn(1)}" in calls[0].argv


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("deploy", "rnn"), "no approved version in model package group mlops-local-rnn"),
        (("deploy", "cnn", "--version", "3"), "version 3 of mlops-local-cnn is PendingManualApproval"),
        (("deploy", "lstm"), "unknown network 'lstm'"),
        (("deploy", "cnn", "--stage", "qa"), "unknown stage 'qa'"),
        (("cost", "--stage", "qa"), "unknown stage 'qa'"),
        (("deploy", "cnn", "--require-approval", "sometimes"), "--require-approval 'sometimes': expected one of never"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    shell_on: LocalAws,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    args: tuple[str, ...],
    message: str,
) -> None:
    monkeypatch.setattr(cdk_runner, "_run", lambda *_, **__: pytest.fail("cdk must not run on bad input"))
    code, _, err = run_mlops(monkeypatch, capsys, *args)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_a_network_left_out_of_a_stage_cannot_be_deployed_there() -> None:
    config = parse_stage_config({"solo": {"region": "us-east-1", "networks": ["cnn"]}}, "solo")
    assert enabled_network(config, "cnn") == "cnn"
    with pytest.raises(UsageError, match="network 'rnn' is not enabled in stage solo"):
        enabled_network(config, "rnn")


# --- a real `cdk deploy` against the moto server ----------------------------------------------


@pytest.mark.slow
@pytest.mark.integration
def test_deploy_creates_the_endpoint_in_moto(
    shell_on: LocalAws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    base = CdkCli(target=shell_on, stage="local", output_dir=tmp_path).synth_and_bootstrap()
    # Only what the endpoint stack imports from.
    storage = base.deploy([naming.stack_name("mlops-local", suffix) for suffix in ("storage", "execution-role")])[
        "mlops-local-storage"
    ]

    code, out, err = run_mlops(monkeypatch, capsys, "deploy", "cnn", "--yes")
    assert code == 0, err

    stack = naming.endpoint_stack_name("mlops-local", "cnn")
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in shell_on.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]
    }
    assert outputs["ModelPackageArn"] == version_arn(2)
    assert f"endpoint {outputs['EndpointName']} serves version 2" in " ".join(out.split())

    sagemaker = shell_on.client("sagemaker")
    endpoint = sagemaker.describe_endpoint(EndpointName=outputs["EndpointName"])
    assert endpoint["EndpointStatus"] == "InService"
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    assert config["KmsKeyId"] == storage["KeyArn"]
    capture_uri = f"s3://{storage['ArtifactsBucketName']}/data-capture/cnn/"
    assert config["DataCaptureConfig"]["DestinationS3Uri"] == capture_uri
    (variant,) = config["ProductionVariants"]
    assert (variant["VariantName"], variant["InstanceType"]) == ("AllTraffic", "ml.c5.large")
    model = sagemaker.describe_model(ModelName=variant["ModelName"])
    assert model["PrimaryContainer"]["ModelPackageName"] == version_arn(2)


# --- cost -------------------------------------------------------------------------------------


def test_cost_of_every_stage(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = run_mlops(monkeypatch, capsys, "cost")
    assert code == 0
    stages = out.split("stage ")[1:]
    assert [block.split(" ", 1)[0] for block in stages] == sorted(STAGES)
    by_stage = {block.split(" ", 1)[0]: block for block in stages}

    # prod: 2..6 instances, 730 h; ml.c7i.large at 0.107/h, transfer's ml.c7i.xlarge at 0.214/h.
    prod = by_stage["prod"]
    assert "cnn          ml.c7i.large   2..6 instances x $0.107/h x 730 h = $156.22 .. $468.66 / month" in prod
    assert "transfer     ml.c7i.xlarge  2..6 instances x $0.214/h x 730 h = $312.44 .. $937.32 / month" in prod
    hourly = costs.load_prices()["real_time_inference"]["per_instance_hour"]
    per_instance = sum(hourly[network.inference_instance_type] * 730 for network in NETWORKS.values())
    assert f"total                       ${2 * per_instance:,.2f} .. ${6 * per_instance:,.2f} / month" in prod
    assert "retrieved 2026-11-28" in by_stage["prod"]

    # dev is serverless: usage-based, with the traffic it assumes written out.
    assert "usage-based, $0.000040 per second of processing (2 GB x $0.00002/GB-s)" in by_stage["dev"]
    assert "cnn          $4.00 / month assuming 1,000,000 requests/month of 100 ms each" in by_stage["dev"]
    assert "not included: data processed" in by_stage["dev"]

    assert "nothing is billed" in by_stage["local"]
    assert "1 instance x $0.102/h x 730 h = $74.46 / month" in by_stage["local"]


def test_cost_of_one_stage(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_mlops(monkeypatch, capsys, "cost", "--stage", "prod")
    assert code == 0
    assert out.startswith("stage prod") and "stage dev" not in out


def test_an_instance_type_without_a_price_is_named_and_the_total_marked_incomplete() -> None:
    config = parse_stage_config(
        {"big": {"region": "us-east-1", "networks": ["cnn", "rnn"], "endpoint": {"instance_type": "ml.g5.xlarge"}}},
        "big",
    )
    lines = costs.endpoint_cost_lines(config, costs.load_prices())
    assert "  cnn          ml.g5.xlarge   no price in prices.json" in lines
    assert any("incomplete: no price for ml.g5.xlarge" in line for line in lines)


def test_a_region_without_prices_is_said_not_guessed() -> None:
    config = parse_stage_config({"eu": {"region": "eu-west-1", "networks": ["cnn"]}}, "eu")
    lines = costs.endpoint_cost_lines(config, costs.load_prices())
    assert lines[1] == "  no prices for eu-west-1 in prices.json (it holds us-east-1 only)"
    assert not any("$" in line for line in lines)


def test_every_price_is_dated_and_sourced() -> None:
    prices = costs.load_prices()
    for table in ("real_time_inference", "serverless_inference"):
        assert prices[table]["retrieved"] and prices[table]["source"]
    for stage in STAGES:
        config = parse_stage_config(STAGES, stage)
        if config.endpoint.serverless is None:
            for network in config.networks:
                assert config.endpoint_instance_type(network) in prices["real_time_inference"]["per_instance_hour"]
