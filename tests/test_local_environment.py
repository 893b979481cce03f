"""`mlops up` / `env` / `down`: a local AWS that stays up, used as a user uses it, through real
processes: the `mlops` console script, the AWS CLI, and the environment's own process, which
outlives `mlops up`. The slow test trains the CNN on a slice of data: `mlops up` (its first
version), `mlops train cnn` twice against it (each run's evaluation names the version before as
its champion), a batch scored by `mlops transform`, the endpoint invoked through the local AWS,
`mlops down`, and nothing left running.

Every test has a state folder of its own (XDG_STATE_HOME): one environment per user is the rule,
and tests in parallel are different users here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from cli_support import run_mlops
from process_support import left_running, listening, watched_descendants

from infra import naming
from mlops.local.environment_state import STATE_FILE, UP, EnvironmentLock, EnvironmentState, write_state
from training.networks import NETWORKS

BIN = Path(sys.executable).parent
PREFIX = "mlops-local"
QUICK = ("--limit", "200", "--param", "epochs=1", "--param", "QualityThreshold=0.1")
# Any candidate passes the gate against its champion: each run registers a version, so the next
# run meets it as the champion (the comparison itself is tests/test_champion_challenger.py's).
ANY_CANDIDATE = ("--param", "QualityThreshold=0.1", "--param", "ChampionTolerance=1")


@pytest.fixture
def own_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path


@pytest.mark.usefixtures("own_state")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("up", "gan"), f"unknown network 'gan' (known: {', '.join(NETWORKS)})"),
        (("up", "cnn", "--limit", "0"), "--limit must be at least 1, got 0"),
        (("up", "cnn", "--param", "epochs=0"), "--param epochs: epochs must be at least 1, got '0'"),
        (("up", "cnn", "--port", "70000"), "port 70000 is not a TCP port (1-65535)"),
        (("env",), "no local AWS is up: mlops up starts one"),
        (("down",), "no local AWS is up: mlops up starts one"),
        (("follow", "gan"), f"unknown network 'gan' (known: {', '.join(NETWORKS)})"),
        (("logs", "gan", "Train"), f"unknown network 'gan' (known: {', '.join(NETWORKS)})"),
        (("undeploy", "gan"), f"unknown network 'gan' (known: {', '.join(NETWORKS)})"),
        (("undeploy", "cnn", "--stage", "qa"), "unknown stage 'qa'"),
        (("destroy", "qa"), "unknown stage 'qa'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, args: tuple[str, ...], message: str
) -> None:
    code, _, err = run_mlops(monkeypatch, capsys, *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"error: {message}"), err


def test_a_second_up_says_where_the_first_is(
    own_state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    lock = EnvironmentLock.take()  # what the first environment's process holds
    try:
        first = EnvironmentState(os.getpid(), UP, "cnn", str(own_state / "env"), "2026-12-07T10:00:00+00:00", 45123)
        write_state(first)
        code, _, err = run_mlops(monkeypatch, capsys, "up", "rnn", "--folder", str(own_state / "second"))
    finally:
        lock.release()
    assert code == 2
    assert err == (
        f"error: a local AWS is up at http://127.0.0.1:45123, pid {os.getpid()}, since 2026-12-07T10:00:00+00:00, "
        f"folder {own_state / 'env'}: one per user of this machine (mlops down stops it)\n"
    )
    assert not (own_state / "second").exists(), "nothing started"


def test_the_lock_dies_with_its_holder(
    own_state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    EnvironmentLock.take().release()  # a process that held it, then crashed: its state file may remain
    write_state(EnvironmentState(999999, UP, "cnn", "gone", "earlier", 45123))
    code, _, err = run_mlops(monkeypatch, capsys, "env")
    assert (code, err) == (2, "error: no local AWS is up: mlops up starts one\n")


@pytest.mark.slow
@pytest.mark.integration
def test_up_then_the_aws_cli_two_trainings_each_against_the_last_as_champion_invoke_and_down(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    env.update(XDG_STATE_HOME=str(tmp_path / "state"), COLUMNS="200", PYTHONUNBUFFERED="1")

    def mlops(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "mlops"), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900
        )

    up = mlops("up", "cnn", *QUICK, "--folder", str(tmp_path / "env"))
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    assert "✓ [9/9] Invoke it with held-out test samples" in up.stdout
    state = json.loads((tmp_path / "state" / "mlops" / STATE_FILE).read_text())
    try:
        environment = psutil.Process(state["pid"])
        with watched_descendants(environment) as tree:
            exercise_the_environment(mlops, env, tmp_path)
            down = mlops("down")
            assert down.returncode == 0, down.stderr
    finally:
        mlops("down")  # whatever failed above, nothing stays up
    assert left_running([environment, *tree]) == [], "part of the environment was left running"
    assert not listening(state["port"]), "the local AWS still listens"
    assert not (tmp_path / "state" / "mlops" / STATE_FILE).exists()
    assert mlops("env").returncode == 2


def exercise_the_environment(
    mlops: Callable[..., subprocess.CompletedProcess[str]], env: dict[str, str], tmp_path: Path
) -> None:
    """What a user does once `mlops up` has returned, through the console scripts."""
    variables = mlops("env", "--json")
    assert variables.returncode == 0, variables.stderr
    env.update(json.loads(variables.stdout))

    def aws(*args: str) -> dict:
        answer = subprocess.run(
            [str(BIN / "aws"), *args, "--output", "json"], env=env, capture_output=True, text=True, timeout=120
        )
        assert answer.returncode == 0, answer.stderr
        return dict(json.loads(answer.stdout))

    pipelines = {item["PipelineName"] for item in aws("sagemaker", "list-pipelines")["PipelineSummaries"]}
    assert pipelines == {
        name(PREFIX, network)
        for network in NETWORKS
        for name in (
            naming.pipeline_name,
            naming.monitor_pipeline_name,
            naming.tuning_pipeline_name,
            naming.warm_start_pipeline_name,
            naming.transform_pipeline_name,
        )
    }
    groups = aws("sagemaker", "list-model-package-groups")["ModelPackageGroupSummaryList"]
    assert {group["ModelPackageGroupName"] for group in groups} == {
        naming.model_package_group_name(PREFIX, network) for network in NETWORKS
    }

    second = mlops("up", "cnn")
    assert second.returncode == 2
    assert second.stderr.count("\n") == 1 and f"a local AWS is up at {env['AWS_ENDPOINT_URL']}" in second.stderr

    for run in (1, 2):
        train = mlops("train", "cnn", *ANY_CANDIDATE, "--wait", "--poll-seconds", "1")
        assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
        assert "step Register: Succeeded" in train.stdout
        assert f"model-package/{PREFIX}-cnn/{run + 1}" in train.stdout
    models = {row["version"]: row for row in json.loads(mlops("models", "cnn", "--json").stdout)}
    assert models[1]["champion_then"] == {"summary": "none"}  # mlops up's run met an empty registry
    assert models[2]["champion_then"]["version"] == 1
    assert models[3]["champion_then"]["version"] == 2
    evaluate_log = mlops("logs", "cnn", "Evaluate")
    assert evaluate_log.returncode == 0, evaluate_log.stderr
    assert f"champion {PREFIX}-cnn version 2 has test_accuracy" in evaluate_log.stdout

    # The batch stack's pipeline, started by mlops transform and run by the environment.
    records = tmp_path / "records.jsonl"
    records.write_text(
        "".join(json.dumps({"id": f"r{index}", "features": [[[0.0]] * 28] * 28}) + "\n" for index in range(3))
    )
    scored = mlops("transform", "cnn", str(records), "--wait", "--poll-seconds", "1")
    assert scored.returncode == 0, scored.stdout[-3000:] + scored.stderr[-3000:]
    assert "step TransformJsonLines: Succeeded" in scored.stdout
    assert "3 records from 1 object(s)" in scored.stdout

    zeros = tmp_path / "zeros.json"
    zeros.write_text(json.dumps({"instances": [[[[0.0]] * 28] * 28]}))
    invoked = mlops("invoke", "cnn", str(zeros))
    assert invoked.returncode == 0, invoked.stderr
    (prediction,) = json.loads(invoked.stdout)["predictions"]
    assert prediction["label"] in [str(digit) for digit in range(10)]
