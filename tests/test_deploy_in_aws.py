"""What `mlops deploy` does around `cdk deploy` in AWS, each test on a moto server of its own (moto
keeps one state per process, so these stay out of tests/test_cli_deployment.py's shared registry):
the real CDK CLI asking on a terminal before a broadening, and autoscaling set aside for a new
instance type (mlops/endpoint_autoscaling.py)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from autoscaling_support import AS_DEPLOYED, registered, serve_with_autoscaling
from cli_support import run_mlops

from mlops import cdk as cdk_runner
from mlops.cdk import CdkCli, CdkRun
from mlops.local.moto import moto_server

GROUP = "mlops-local-cnn"


# Run in a child whose terminal is a pseudo-terminal, as a user's shell runs `mlops deploy`.
DEPLOY_ON_A_TERMINAL = """
import sys
from pathlib import Path

from mlops.cdk import CdkCli
from mlops.local.moto import LocalAws


class TakenForAws(LocalAws):
    @property
    def is_moto(self) -> bool:
        return False


assembly = Path(sys.argv[2])
CdkCli(target=TakenForAws(port=int(sys.argv[1])), stage="local", output_dir=assembly, assembly=assembly).deploy(
    ["mlops-local-storage"]
)
"""


@pytest.mark.integration
@pytest.mark.slow
def test_in_aws_the_real_cli_shows_a_broadening_on_the_terminal_and_deploys_nothing_refused(tmp_path: Path) -> None:
    """The real CDK CLI, run as `mlops deploy` runs it in AWS, on a terminal: it makes a change set,
    stops at the storage stack's new key and bucket policies and asks; answered "n", nothing is
    deployed. (A captured CLI could not ask: it fails with "terminal (TTY) is not attached".)"""
    with moto_server() as aws:
        CdkCli(target=aws, stage="local", output_dir=tmp_path / "cdk.out").synth_and_bootstrap()
        controller, terminal = pty.openpty()
        child = subprocess.Popen(
            [sys.executable, "-c", DEPLOY_ON_A_TERMINAL, str(aws.port), str(tmp_path / "cdk.out")],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            env={**os.environ, **aws.env, "FORCE_COLOR": "0"},
        )
        os.close(terminal)
        seen = _read_until(controller, b"Do you wish to deploy these changes", timeout=180)
        os.write(controller, b"n\n")
        seen += _read_until(controller, None, timeout=60)
        os.close(controller)
        assert child.wait(timeout=30) != 0
        shown = seen.decode(errors="replace")
        assert "creating CloudFormation changeset" in shown and "IAM Statement Changes" in shown, shown[-3000:]
        # The change set was refused: the stack CloudFormation made for it is deleted with it.
        stacks = aws.client("cloudformation").list_stacks()["StackSummaries"]
        assert {stack["StackStatus"] for stack in stacks if stack["StackName"] == "mlops-local-storage"} == {
            "DELETE_COMPLETE"
        }, stacks


def _read_until(controller: int, marker: bytes | None, timeout: float) -> bytes:
    """What the terminal shows until `marker` (or until the child closes it)."""
    seen, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline and (marker is None or marker not in seen):
        ready, _, _ = select.select([controller], [], [], 1)
        if ready:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: every process that had the terminal has ended
                chunk = b""
            if not chunk:
                break
            seen += chunk
    assert marker is None or marker in seen, seen.decode(errors="replace")[-3000:]
    return seen


def test_a_new_instance_type_is_deployed_with_autoscaling_set_aside(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The endpoint runs ml.m5.large and is registered for autoscaling; the stage now says
    ml.c5.large. SageMaker refuses that UpdateEndpoint while the variant is a scalable target, so
    `mlops deploy` deregisters it for the deploy and registers it again after."""
    with moto_server() as aws:
        for key, value in aws.env.items():
            monkeypatch.setenv(key, value)
        sagemaker = aws.client("sagemaker")
        sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
        sagemaker.create_model_package(
            ModelPackageGroupName=GROUP,
            ModelApprovalStatus="Approved",
            InferenceSpecification={
                "Containers": [{"Image": "image", "ModelDataUrl": "s3://bucket/models/model.tar.gz"}],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
        )
        serve_with_autoscaling(aws, "mlops-local-cnn", "ml.m5.large")
        during: list[tuple[list, list]] = []

        def deploy(*_: object, **__: object) -> CdkRun:
            during.append(registered(aws, "mlops-local-cnn"))
            return CdkRun("", "")

        monkeypatch.setattr(cdk_runner, "_run", deploy)
        code, out, err = run_mlops(monkeypatch, capsys, "deploy", "cnn", "--yes")
        assert code == 0, err
        assert during == [([], [])]
        assert registered(aws, "mlops-local-cnn") == AS_DEPLOYED
        assert "SageMaker refuses to change its instance type to ml.c5.large" in " ".join(out.split())
