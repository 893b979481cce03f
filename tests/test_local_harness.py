"""The local harness: the moto server's lifecycle, the CDK CLI runner, emptying buckets, phases."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import boto3
import psutil
import pytest
from moto import mock_aws
from process_support import free_port, left_running, listening
from rich.console import Console

from mlops import buckets, processes
from mlops import cdk as cdk_runner
from mlops.cdk import CdkCli
from mlops.errors import RunFailed, UsageError
from mlops.local.moto import LocalAws, moto_server
from mlops.local.progress import PlainProgress
from mlops.phases import Phase, run_phases

# --- moto server --------------------------------------------------------------------------------


def test_server_serves_aws_apis_and_gives_subprocesses_what_they_need() -> None:
    with moto_server() as aws:
        assert listening(aws.port)
        aws.client("s3").create_bucket(Bucket="probe")
        assert [b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]] == ["probe"]
        assert aws.env == {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{aws.port}",
            "AWS_ENDPOINT_URL_S3_FOR_CLOUDFORMATION": f"http://localhost:{aws.port}",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        assert aws.environment == "aws://123456789012/us-east-1"
    assert not listening(aws.port)


def test_every_server_starts_empty() -> None:
    with moto_server() as first:
        first.client("s3").create_bucket(Bucket="left-behind")
    with moto_server() as second:
        assert second.client("s3").list_buckets()["Buckets"] == []


def test_server_stops_when_the_body_fails_or_is_interrupted() -> None:
    for failure in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(failure)), moto_server() as aws:
            raise failure
        assert not listening(aws.port)


def test_a_chosen_port_is_used_and_can_be_reused_at_once() -> None:
    port = free_port()
    for _ in range(2):
        with moto_server(port) as aws:
            assert aws.port == port
            aws.client("s3").list_buckets()


def test_a_busy_port_is_a_usage_error_naming_it() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UsageError, match=f"port {port} on 127.0.0.1 is already in use"), moto_server(port):
            pytest.fail("must not start")


@pytest.mark.parametrize("port", [-1, 65536])
def test_a_port_out_of_range_is_a_usage_error(port: int) -> None:
    with pytest.raises(UsageError, match=f"port {port} is not a TCP port"), moto_server(port):
        pytest.fail("must not start")


# --- CDK CLI runner -----------------------------------------------------------------------------


def _cli(tmp_path: Path, echo=None) -> CdkCli:
    return CdkCli(target=LocalAws(port=1), stage="local", output_dir=tmp_path / "cdk.out", echo=echo)


def test_cli_environment_is_the_targets_and_this_venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "production")
    env = _cli(tmp_path)._env()
    assert "AWS_PROFILE" not in env
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1"
    assert env["CDK_DISABLE_CLI_TELEMETRY"] == env["CDK_DISABLE_VERSION_CHECK"] == "true"
    assert env["AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED"] == "true", "no Node 22 notice on Node 20"
    assert env["PATH"].split(":")[0] == str(Path(cdk_runner.sys.executable).parent)


@pytest.mark.slow
def test_a_failing_cli_raises_run_failed_with_its_stderr_tail(tmp_path: Path) -> None:
    lines: list[str] = []
    with pytest.raises(RunFailed, match=r"`cdk no-such-command` exited with 1:\n(.|\n)*no-such-command") as failure:
        _cli(tmp_path, echo=lines.append).run("no-such-command")
    assert len(str(failure.value).splitlines()) <= cdk_runner.STDERR_TAIL_LINES + 1
    assert any("no-such-command" in line for line in lines), "echo sees the output as it comes"


def test_a_missing_cli_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cdk_runner, "CDK_BIN", tmp_path / "absent" / "cdk")
    with pytest.raises(UsageError, match=r"the CDK CLI is not installed .* run ./dev.sh"):
        _cli(tmp_path).run("--version")


def _group_members(group: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == group and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


@pytest.mark.usefixtures("sigint_as_in_a_terminal")
def test_interrupting_a_run_stops_the_whole_process_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    started = threading.Event()

    # A real SIGINT, as Ctrl-C sends: unlike _thread.interrupt_main() it also ends a blocking wait.
    def interrupt() -> None:
        if started.wait(30):
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    groups: list[int] = []
    original_popen = processes.subprocess.Popen

    def recording_popen(*args, **kwargs):
        process = original_popen(*args, **kwargs)
        groups.append(process.pid)  # its own session: the group id is its pid
        return process

    monkeypatch.setattr(processes.subprocess, "Popen", recording_popen)
    with pytest.raises(KeyboardInterrupt):
        # A shell that starts a grandchild and says so; Ctrl-C arrives while both run.
        cdk_runner._run(
            ["sh", "-c", "sleep 60 & echo started; wait"],
            {"PATH": "/usr/bin:/bin"},
            lambda line: started.set(),
            "probe",
        )
    (group,) = groups
    assert left_running(_group_members(group)) == [], "part of the process tree was left running"


def test_the_ctrl_c_test_passes_in_a_suite_started_with_sigint_ignored() -> None:
    """`nohup`, `&` in a script and some CI runners start the suite with SIGINT ignored; the test
    above still sees a Ctrl-C (tests/conftest.py, `sigint_as_in_a_terminal`)."""
    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the child, as from such a shell
    try:
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-p",
                "no:randomly",
                __file__,
                "-k",
                "test_interrupting_a_run_stops_the_whole_process_tree",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        signal.signal(signal.SIGINT, ignored)
    assert child.returncode == 0, child.stdout[-3000:]
    assert "1 passed" in child.stdout


def test_destroy_empties_only_the_buckets_cloudformation_will_delete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = {
        "Resources": {
            "Scratch": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "scratch"}, "DeletionPolicy": "Delete"},
            "Kept": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "kept"}, "DeletionPolicy": "Retain"},
        }
    }
    calls: list[list[str]] = []

    def recorded_run(argv: list[str], *_: object) -> cdk_runner.CdkRun:
        calls.append(argv)
        return cdk_runner.CdkRun("", "")

    monkeypatch.setattr(cdk_runner, "_run", recorded_run)
    with moto_server() as aws:
        aws.client("cloudformation").create_stack(StackName="data", TemplateBody=json.dumps(template))
        s3 = aws.client("s3")
        for bucket in ("scratch", "kept"):
            s3.put_object(Bucket=bucket, Key="cnn/train/part-0", Body=b"records")

        CdkCli(target=aws, stage="local", output_dir=tmp_path).destroy(["data"])

        assert s3.list_objects_v2(Bucket="scratch")["KeyCount"] == 0
        assert s3.list_objects_v2(Bucket="kept")["KeyCount"] == 1
    ((command, *args),) = calls
    assert Path(command).name == "cdk" and args[:3] == ["destroy", "data", "--force"]


# --- emptying buckets ---------------------------------------------------------------------------


def test_empty_bucket_removes_every_version_and_delete_marker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(buckets, "_DELETE_BATCH", 2)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="versioned")
        s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
        for body in (b"1", b"2", b"3"):
            s3.put_object(Bucket="versioned", Key="cnn/train/part-0", Body=body)
        s3.put_object(Bucket="versioned", Key="models/m.tar.gz", Body=b"m")
        s3.delete_object(Bucket="versioned", Key="models/m.tar.gz")

        assert buckets.empty_bucket(s3, "versioned") == 5  # 3 + 1 versions, 1 delete marker
        listing = s3.list_object_versions(Bucket="versioned")
        assert "Versions" not in listing and "DeleteMarkers" not in listing
        s3.delete_bucket(Bucket="versioned")


# --- phases -------------------------------------------------------------------------------------


def test_phases_run_in_order_and_report_their_time() -> None:
    output = io.StringIO()
    view = PlainProgress(Console(file=output, width=100), show_logs=False)
    ran: list[str] = []
    seconds = run_phases(
        view, [Phase("first", lambda: ran.append("first")), Phase("second", lambda: ran.append("second"))]
    )
    assert ran == ["first", "second"]
    assert list(seconds) == ["first", "second"]
    assert "✓ [1/2] first" in output.getvalue() and "✓ [2/2] second" in output.getvalue()


def test_a_failing_phase_is_marked_and_stops_the_sequence() -> None:
    output = io.StringIO()
    view = PlainProgress(Console(file=output, width=100), show_logs=False)
    ran: list[str] = []

    def fail() -> None:
        raise RunFailed("deploy broke")

    with pytest.raises(RunFailed, match="deploy broke"):
        run_phases(view, [Phase("deploy", fail), Phase("train", lambda: ran.append("train"))])
    assert ran == []
    assert "✗ [1/2] deploy" in output.getvalue()
