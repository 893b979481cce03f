"""What an `mlops` command does with an exception it did not expect: one line naming the command
(and the phase) and a log file holding the traceback, exit code 1, nothing left running; with
`--debug` or MLOPS_DEBUG the traceback on the terminal instead. Failures of the AWS environment
(credentials, an expired token) are one line too, without a log. Faults are injected by patching
the code in the test's own process, or in a `python -c` bootstrap of the subprocess."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import psutil
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from cli_support import run_mlops
from process_support import free_port, left_running, listening
from rich.console import Console
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from mlops.cdk import CDK_BIN
from mlops.errors import PhaseCrashed, RunFailed
from mlops.failures import environment_failure
from mlops.local.progress import PlainProgress
from mlops.local.run import LocalRun
from mlops.phases import Phase, run_phases
from training.networks import NETWORKS

BOOTSTRAP = "Synthesize the app and bootstrap CDK in the local account"


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _unexpected_line(command: str, phase: str | None, error: str) -> re.Pattern[str]:
    where = f'unexpected error in phase "{phase}"' if phase else "unexpected error"
    return re.compile(rf"{re.escape(command)}: {re.escape(where)}: {re.escape(error)} \(traceback in (?P<log>\S+)\)")


def _children() -> set[psutil.Process]:
    return set(psutil.Process().children(recursive=True))


# --- in this process ----------------------------------------------------------------------------


def test_an_unexpected_error_in_a_phase_is_one_line_and_a_log_in_the_report_folder(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    def broken_bootstrap(self: LocalRun) -> None:
        raise TypeError("injected fault\nwith a second line")

    monkeypatch.setattr(LocalRun, "synth_and_bootstrap", broken_bootstrap)
    before, port, report = _children(), free_port(), tmp_path / "report"
    code, out, err = run_mlops(monkeypatch, capsys, "local", "--port", str(port), "--report-dir", str(report))

    assert code == 1
    line = _unexpected_line("mlops local", BOOTSTRAP, "TypeError: injected fault").fullmatch(_one_line(err))
    assert line, err
    log = Path(line["log"])
    assert log.parent == report and re.fullmatch(r"mlops-error-\d{8}-\d{6}\.log", log.name)
    text = log.read_text()
    assert "command line: mlops local --port" in text
    assert "Traceback (most recent call last)" in text and "in broken_bootstrap" in text
    assert "TypeError: injected fault\nwith a second line" in text
    assert f'PhaseCrashed: unexpected error in phase "{BOOTSTRAP}"' in text
    assert f"✗ [2/9] {BOOTSTRAP}" in out
    phases = json.loads((report / "phases.json").read_text())
    assert phases["outcome"] == "failed"
    assert phases["failure"] == f'unexpected error in phase "{BOOTSTRAP}": TypeError: injected fault'
    assert not listening(port), "the moto server is still listening"
    assert left_running(_children() - before) == []


def test_an_unexpected_error_outside_phases_names_the_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setattr("mlops.datasets.PREPARERS", None)  # what `mlops data list` lists
    code, _, err = run_mlops(monkeypatch, capsys, "data", "list")
    assert code == 1
    line = _unexpected_line(
        "mlops data list", None, "AttributeError: 'NoneType' object has no attribute 'values'"
    ).fullmatch(_one_line(err))
    assert line, err
    assert Path(line["log"]).parent == tmp_path / "state" / "mlops" / "logs"


@pytest.mark.parametrize("state", ["XDG_STATE_HOME", "HOME"])
def test_the_log_goes_to_the_state_folder_or_else_the_temporary_folder(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path, state: str
) -> None:
    monkeypatch.setattr("mlops.commands.deployment.load_prices", _raise_type_error)
    if state == "HOME":
        monkeypatch.delenv("XDG_STATE_HOME", raising=False)
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        expected = tmp_path / "home" / ".local" / "state" / "mlops" / "logs"
    else:
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
        expected = tmp_path / "state" / "mlops" / "logs"
    _, _, err = run_mlops(monkeypatch, capsys, "cost")
    assert _cost_failure_log(err).parent == expected

    # A state folder that cannot be made (a file is in the way): the system's temporary folder.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "a-file"))
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    code, _, err = run_mlops(monkeypatch, capsys, "cost")
    assert code == 1
    log = _cost_failure_log(err)
    assert log.parent == tmp_path / "tmp" and "TypeError: injected" in log.read_text()


def test_two_failures_in_one_second_get_two_logs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setattr("mlops.commands.deployment.load_prices", _raise_type_error)
    logs = {_cost_failure_log(run_mlops(monkeypatch, capsys, "cost")[2]) for _ in range(3)}
    assert len(logs) == 3


def _raise_type_error() -> None:
    raise TypeError("injected")


def _cost_failure_log(err: str) -> Path:
    """The log that `mlops cost`'s one line names for the injected TypeError."""
    line = _unexpected_line("mlops cost", None, "TypeError: injected").fullmatch(_one_line(err))
    assert line, err
    return Path(line["log"])


def test_expected_failures_keep_their_message_and_write_no_log(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert run_mlops(monkeypatch, capsys, "train", "gan") == (
        2,
        "",
        f"error: unknown network 'gan' (known: {', '.join(NETWORKS)})\n",
    )
    assert not (tmp_path / "mlops").exists()


def test_phases_name_the_phase_of_an_unexpected_error_and_pass_expected_ones_unchanged() -> None:
    console = Console(file=io.StringIO(), width=100)
    view = PlainProgress(console, show_logs=False)
    original = ValueError("bug")

    def fail() -> None:
        raise original

    with pytest.raises(PhaseCrashed) as crashed:
        run_phases(view, [Phase("first", lambda: None), Phase("second", fail)])
    assert crashed.value.phase == "second" and crashed.value.__cause__ is original
    assert str(crashed.value) == 'unexpected error in phase "second": ValueError: bug'
    for expected in (RunFailed("deploy broke"), KeyboardInterrupt()):

        def fail_as_expected(error: BaseException = expected) -> None:
            raise error

        with pytest.raises(type(expected)) as raised:
            run_phases(view, [Phase("only", fail_as_expected)])
        assert raised.value is expected


# --- the AWS environment ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (NoCredentialsError(), "AWS credentials or configuration: Unable to locate credentials; check this shell's"),
        (
            EndpointConnectionError(endpoint_url="https://api.sagemaker.us-east-1.amazonaws.com/"),
            'cannot reach AWS: Could not connect to the endpoint URL: "https://api.sagemaker',
        ),
        (
            ClientError({"Error": {"Code": "ExpiredTokenException", "Message": "expired"}}, "DescribePipeline"),
            "AWS refused this shell's credentials: An error occurred (ExpiredTokenException)",
        ),
        (
            ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "DescribePipeline"),
            "AWS refused the request: An error occurred (AccessDeniedException)",
        ),
    ],
)
def test_failures_of_the_aws_environment_are_recognized(error: Exception, words: str) -> None:
    assert (environment_failure(error) or "").startswith(words)


def test_no_validation_error_is_taken_for_the_environment() -> None:
    assert environment_failure(ClientError({"Error": {"Code": "ValidationException"}}, "DescribePipeline")) is None
    assert environment_failure(TypeError("bug")) is None


@pytest.fixture
def expiring_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A SageMaker endpoint that knows the pipeline and one execution, and answers the next call as
    AWS answers an expired session token (HTTP 400, ExpiredTokenException)."""
    answers = {
        "DescribePipeline": (200, {"PipelineName": "mlops-local-cnn"}),
        "ListPipelineExecutions": (
            200,
            {
                "PipelineExecutionSummaries": [
                    {
                        "PipelineExecutionArn": (
                            "arn:aws:sagemaker:us-east-1:123456789012:pipeline/mlops-local-cnn/execution/x"
                        ),
                        "StartTime": time.time(),
                    }
                ]
            },
        ),
    }

    @Request.application
    def sagemaker(request: Request) -> Response:
        operation = request.headers["X-Amz-Target"].rsplit(".", 1)[-1]
        status, body = answers.get(
            operation,
            (
                400,
                {"__type": "ExpiredTokenException", "message": "The security token included in the request is expired"},
            ),
        )
        return Response(json.dumps(body), status=status, content_type="application/x-amz-json-1.1")

    server = make_server("127.0.0.1", 0, sagemaker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for name, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.port}",
        "AWS_ACCESS_KEY_ID": "ASIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "expired",
    }.items():
        monkeypatch.setenv(name, value)
    try:
        yield server.port
    finally:
        server.shutdown()


def test_an_expired_token_is_one_line_without_a_log(
    expiring_aws: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    code, _, err = run_mlops(monkeypatch, capsys, "runs", "cnn")
    assert code == 1
    assert _one_line(err) == (
        "failed: mlops runs: AWS refused this shell's credentials: An error occurred (ExpiredTokenException) when "
        "calling the DescribePipelineExecution operation: The security token included in the request is expired; "
        "check this shell's AWS profile, credentials and region (aws sts get-caller-identity)"
    )
    assert not (tmp_path / "mlops").exists()


def test_no_credentials_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in {
        "AWS_CONFIG_FILE": tmp_path / "none",
        "AWS_SHARED_CREDENTIALS_FILE": tmp_path / "none",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it keeps the credentials it found first
    for command in ("train", "runs", "models", "approve"):
        code, _, err = run_mlops(monkeypatch, capsys, command, "cnn")
        assert (code, _one_line(err)) == (
            1,
            "failed: cannot reach SageMaker in us-east-1: Unable to locate credentials",
        )


# --- in a subprocess ----------------------------------------------------------------------------


def _mlops_with_fault(fault: str, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """`mlops ARGS...` in a new interpreter that first runs `fault` (the test's own patch)."""
    script = (
        textwrap.dedent(fault)
        + "\nimport sys\nfrom mlops.cli import main\nsys.argv = ['mlops', *sys.argv[1:]]\nmain()\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **env},
    )


_BROKEN_PRICES = """
    import mlops.commands.deployment
    def broken():
        raise TypeError("injected")
    mlops.commands.deployment.load_prices = broken
"""


@pytest.mark.slow
@pytest.mark.parametrize(("args", "env"), [(("--debug", "cost"), {}), (("cost",), {"MLOPS_DEBUG": "1"})])
def test_debug_shows_the_traceback_instead(tmp_path: Path, args: tuple[str, ...], env: dict[str, str]) -> None:
    process = _mlops_with_fault(_BROKEN_PRICES, *args, env={"XDG_STATE_HOME": str(tmp_path), **env})
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert err.startswith("Traceback (most recent call last)") and err.rstrip().endswith("TypeError: injected"), err
    assert "in broken" in err
    assert not (tmp_path / "mlops").exists()


@pytest.mark.slow
@pytest.mark.integration
def test_an_unexpected_error_while_the_cdk_cli_runs_stops_everything(tmp_path: Path) -> None:
    # The fault: `mlops local`'s wait for `cdk synth` (beside `cdk bootstrap`) fails once the CLIs'
    # process trees are at work.
    fault = """
        import subprocess, time
        wait = subprocess.Popen.wait
        armed = [True]
        def broken_wait(self, timeout=None):
            if armed[0] and self.args[1:2] == ["synth"]:
                armed[0] = False
                time.sleep(4)
                if self.poll() is not None:
                    raise AssertionError("cdk synth ended before the fault")
                raise TypeError("injected while cdk synthesizes")
            return wait(self, timeout)
        subprocess.Popen.wait = broken_wait
    """
    port, report = free_port(), tmp_path / "report"
    process = _mlops_with_fault(fault, "local", "--port", str(port), "--report-dir", str(report), env={})
    seen: dict[psutil.Process, list[str]] = {}  # every descendant, with its last command line (after exec)
    while process.poll() is None:
        try:
            for child in psutil.Process(process.pid).children(recursive=True):
                seen[child] = _cmdline(child) or seen.get(child, [])
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    out, err = process.communicate(timeout=60)

    assert process.returncode == 1, err
    assert {(str(CDK_BIN), "synth"), (str(CDK_BIN), "bootstrap")} <= {tuple(argv[1:3]) for argv in seen.values()}, seen
    line = _unexpected_line("mlops local", BOOTSTRAP, "TypeError: injected while cdk synthesizes").fullmatch(
        err.strip()
    )
    assert line, err
    log = Path(line["log"])
    assert log.parent == report and "in broken_wait" in log.read_text()
    assert f"✗ [2/9] {BOOTSTRAP}" in out
    assert left_running(seen) == [], "part of the process tree was left running"
    assert not listening(port), "the moto server is still listening"


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.usefixtures("sigint_as_in_a_terminal")
def test_ctrl_c_is_exit_130_without_a_traceback_or_a_log(tmp_path: Path) -> None:
    port, report = free_port(), tmp_path / "report"
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlops"), "local", "--port", str(port), "--report-dir", str(report)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")},
    )
    deadline, cdk = time.monotonic() + 120, None
    while cdk is None and time.monotonic() < deadline and process.poll() is None:
        cdk = next(
            (
                child
                for child in psutil.Process(process.pid).children(recursive=True)
                if _cmdline(child)[1:3] == [str(CDK_BIN), "bootstrap"]
            ),
            None,
        )
        time.sleep(0.2)
    assert cdk is not None, "cdk bootstrap never ran"
    tree = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)

    assert process.returncode == 130, err
    assert "Traceback" not in err and "error" not in err
    assert left_running(tree) == [], "part of the process tree was left running"
    assert not listening(port), "the moto server is still listening"
    assert json.loads((report / "phases.json").read_text())["outcome"] == "interrupted"
    assert not list(report.glob("mlops-error-*")) and not (tmp_path / "state").exists()
