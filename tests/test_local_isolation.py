"""Network isolation emulated (`mlops.local.isolation`): an isolated job reaches neither the local
AWS nor anything else where this machine allows a network namespace, holds no AWS credentials in
either mode, and still gets its channels, inputs and outputs moved for it by the executor.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops.local.isolation import Confinement, detect
from mlops.local.moto import LocalAws, moto_server
from mlops.local.moto_records import MotoRecords
from mlops.local.pipeline_jobs import JobFailed, JobRuntime, run_processing_step, run_training_step

BUCKET = "isolation-test"
ROLE = "arn:aws:iam::123456789012:role/execution"
ENVIRONMENT_ONLY = Confinement("environment", (), "chosen by the test")

# What a job can reach and which credentials it finds, as one JSON line.
PROBE = textwrap.dedent(
    """
    import json, os, socket, sys, urllib.request
    import boto3

    def connects(host, port):
        try:
            socket.create_connection((host, port), timeout=5).close()
            return True
        except OSError:
            return False

    def answers(url):
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return True
        except OSError:
            return False

    own = socket.socket()
    own.bind(("127.0.0.1", 0))
    own.listen()
    port = int(sys.argv[1])
    print(json.dumps({
        "interfaces": sorted(name for _, name in socket.if_nameindex()),
        "own_loopback": connects(*own.getsockname()),
        "local_aws_socket": connects("127.0.0.1", port),
        "local_aws_http": answers(f"http://127.0.0.1:{port}/moto-api/"),
        "credentials": boto3.Session().get_credentials() is not None,
        "cached_weights": os.path.exists(os.path.expanduser("~/.keras/models/weights.h5")),
    }))
    """
)


@pytest.fixture(scope="module")
def aws() -> Iterator[LocalAws]:
    with moto_server() as server:
        server.client("s3").create_bucket(Bucket=BUCKET)
        yield server


def probe(aws: LocalAws, tmp_path: Path, confinement: Confinement | None) -> dict[str, Any]:
    """The probe run with the local AWS's endpoint and credentials in its environment, and a home
    holding a credentials file and Keras' downloaded weights, confined or not."""
    home = tmp_path / "machine-home"
    (home / ".aws").mkdir(parents=True, exist_ok=True)
    (home / ".aws" / "credentials").write_text("[default]\naws_access_key_id = AKIAHOME\naws_secret_access_key = x\n")
    (home / ".keras" / "models").mkdir(parents=True, exist_ok=True)
    (home / ".keras" / "models" / "weights.h5").write_bytes(b"downloaded once, outside any job")
    argv = [sys.executable, "-c", PROBE, str(aws.port)]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), **aws.env}
    if confinement is not None:
        argv, env = confinement.confine(argv, env, home=tmp_path / "job-home")
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_unconfined_the_probe_reaches_the_local_aws_and_finds_credentials(aws: LocalAws, tmp_path: Path) -> None:
    """The control for the tests below: what they take away is there to take."""
    seen = probe(aws, tmp_path, None)
    assert seen["local_aws_socket"] and seen["local_aws_http"] and seen["credentials"], seen
    assert seen["cached_weights"], seen


def test_a_network_namespace_leaves_a_job_only_its_own_loopback(aws: LocalAws, tmp_path: Path) -> None:
    confinement = detect()
    if confinement.kind != "namespace":
        pytest.skip(f"this machine makes no network namespace: {confinement.reason}")
    seen = probe(aws, tmp_path, confinement)
    assert seen["interfaces"] == ["lo"], seen
    assert seen["own_loopback"], "the job's own loopback is up, as in a SageMaker container"
    assert not seen["local_aws_socket"] and not seen["local_aws_http"], seen
    assert not seen["credentials"] and not seen["cached_weights"], seen


def test_without_a_namespace_a_job_keeps_no_credentials_and_proxied_calls_fail(aws: LocalAws, tmp_path: Path) -> None:
    seen = probe(aws, tmp_path, ENVIRONMENT_ONLY)
    assert not seen["credentials"], "neither the environment's keys nor the home's credentials file"
    assert not seen["cached_weights"], "a home of its own, empty, as a container's"
    assert not seen["local_aws_http"], "HTTP clients that honour the proxy variables reach nothing"
    # Looser than AWS, and said so in docs/isolation.md: a raw socket still connects.
    assert seen["local_aws_socket"]


# --- the executor: what SageMaker moves for an isolated job, and what the job cannot do itself --

PROCESSING_SCRIPT = textwrap.dedent(
    """
    import os, shutil, sys
    import boto3
    shutil.copy("/opt/ml/processing/input/note.txt", "/opt/ml/processing/output/note.txt")
    try:
        boto3.client("s3").list_objects_v2(Bucket=sys.argv[1])
    except Exception as error:
        print(f"no S3 from inside: {type(error).__name__}", flush=True)
        sys.exit(0)
    print("reached S3 from inside", flush=True)
    sys.exit(3)
    """
)


def runtime(aws: LocalAws, work_dir: Path, confinement: Confinement) -> JobRuntime:
    return JobRuntime(
        s3=aws.client("s3"),
        records=MotoRecords(aws),
        env=aws.env,
        work_dir=work_dir,
        on_line=lambda step, line: None,
        isolation=confinement,
    )


def processing_request(isolated: bool) -> dict[str, Any]:
    return {
        "AppSpecification": {
            "ImageUri": "image",
            "ContainerEntrypoint": ["python3", "-c", PROCESSING_SCRIPT],
            "ContainerArguments": [BUCKET],
        },
        "ProcessingInputs": [
            {
                "InputName": "note",
                "S3Input": {
                    "S3Uri": f"s3://{BUCKET}/notes/note.txt",
                    "LocalPath": "/opt/ml/processing/input",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            }
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "out",
                    "S3Output": {
                        "S3Uri": f"s3://{BUCKET}/out/{isolated}",
                        "LocalPath": "/opt/ml/processing/output",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1}
        },
        "NetworkConfig": {"EnableNetworkIsolation": isolated},
        "RoleArn": ROLE,
    }


@pytest.mark.parametrize(
    "confinement", [pytest.param(None, id="detected"), pytest.param(ENVIRONMENT_ONLY, id="environment")]
)
def test_an_isolated_processing_job_gets_its_input_and_output_moved_but_reaches_no_s3(
    aws: LocalAws, tmp_path: Path, confinement: Confinement | None
) -> None:
    aws.client("s3").put_object(Bucket=BUCKET, Key="notes/note.txt", Body=b"moved by SageMaker")
    isolation = confinement or detect()
    described = run_processing_step(
        "Isolated", f"isolated-{isolation.kind}", processing_request(True), runtime(aws, tmp_path, isolation)
    )
    assert described["ProcessingJobStatus"] == "Completed"
    output = aws.client("s3").get_object(Bucket=BUCKET, Key="out/True/note.txt")["Body"].read()
    assert output == b"moved by SageMaker"
    assert "no S3 from inside" in (tmp_path / "Isolated" / "log.txt").read_text()


def test_the_same_processing_job_not_isolated_reaches_s3_as_its_role(aws: LocalAws, tmp_path: Path) -> None:
    aws.client("s3").put_object(Bucket=BUCKET, Key="notes/note.txt", Body=b"moved by SageMaker")
    with pytest.raises(JobFailed, match="exited with code 3"):
        run_processing_step("Open", "open-job", processing_request(False), runtime(aws, tmp_path, detect()))
    assert "reached S3 from inside" in (tmp_path / "Open" / "log.txt").read_text()


ENTRY_POINT = textwrap.dedent(
    """
    import os, sys
    import boto3
    data = open(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "rows.csv")).read()
    credentials = boto3.Session().get_credentials()
    print(f"[job] read {len(data)} bytes; credentials: {credentials is not None}", flush=True)
    open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w").write(data.upper())
    sys.exit(3 if credentials is not None else 0)
    """
)


def test_an_isolated_training_job_takes_its_code_from_the_code_channel(aws: LocalAws, tmp_path: Path) -> None:
    """As the isolated Train step does: the submit directory is the bundle in the `code` channel
    (a path in the container), the toolkit unpacks it from there, and the job holds no credentials."""
    s3 = aws.client("s3")
    bundle = io.BytesIO()
    with tarfile.open(fileobj=bundle, mode="w:gz") as archive:
        info = tarfile.TarInfo("job.py")
        info.size = len(ENTRY_POINT.encode())
        archive.addfile(info, io.BytesIO(ENTRY_POINT.encode()))
    s3.put_object(Bucket=BUCKET, Key="assets/0123abcd.gz", Body=bundle.getvalue())
    s3.put_object(Bucket=BUCKET, Key="data/train/rows.csv", Body=b"a,b\n1,2\n")

    def channel(name: str, uri: str) -> dict[str, Any]:
        return {
            "ChannelName": name,
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}
            },
        }

    request = {
        "AlgorithmSpecification": {"TrainingImage": "image", "TrainingInputMode": "File", "MetricDefinitions": []},
        "HyperParameters": {
            "sagemaker_program": "job.py",
            "sagemaker_submit_directory": "/opt/ml/input/data/code/0123abcd.gz",
        },
        "InputDataConfig": [
            channel("train", f"s3://{BUCKET}/data/train/"),
            channel("code", f"s3://{BUCKET}/assets/0123abcd.gz"),
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
        "EnableNetworkIsolation": True,
        "RoleArn": ROLE,
    }
    described = run_training_step("Train", "isolated-training", request, runtime(aws, tmp_path, detect()))
    log = (tmp_path / "Train" / "log.txt").read_text()
    assert "[job] read 8 bytes; credentials: False" in log, log[-2000:]
    model = s3.get_object(Bucket=BUCKET, Key="models/isolated-training/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(model)) as archive:
        member = archive.extractfile("model.txt")
        assert member is not None
        assert member.read() == b"A,B\n1,2\n"
    assert described["ModelArtifacts"]["S3ModelArtifacts"].endswith("isolated-training/output/model.tar.gz")
