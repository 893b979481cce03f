"""Shared test set-up: offline, credential-free, quiet CDK/jsii."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TRAINING_DIR = REPO_ROOT / "training"

# Entry points import their siblings as top-level modules, as in the training container.
sys.path.insert(0, str(TRAINING_DIR))

# The training tests' shared fixtures (small data slices, one training run per network), found by
# name in every test module without an import.
pytest_plugins = ["training_support"]

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("CDK_DISABLE_CLI_TELEMETRY", "true")
os.environ.setdefault("CDK_DISABLE_VERSION_CHECK", "true")
os.environ.setdefault("AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# No test may reach a real AWS account, even by accident.
for variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(variable, None)
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
# The CLI's rich consoles are built at import; a fixed width keeps captured tables from
# wrapping differently under different terminals and pytest-xdist workers.
os.environ["COLUMNS"] = "200"


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory):
    """Data preparation caches what it writes (mlops/datasets/cache.py): each test session gets
    a cache of its own, empty at the start, never the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_CACHE_DIR", str(tmp_path_factory.mktemp("mlops-cache")))
        yield


@pytest.fixture
def s3(request):
    """An S3 client on moto's in-process mock, with the requesting test module's `BUCKET` created
    (the data capture tests write captures into it, the drift monitor's read them)."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=request.module.BUCKET)
        yield client


@pytest.fixture
def sigint_as_in_a_terminal():
    """Ctrl-C as a program started from a terminal gets it: SIGINT raising KeyboardInterrupt here,
    and its default action in every child started meanwhile (a handled signal is reset to its
    default by exec), whatever disposition this test process inherited. A shell that starts a
    job in the background from a script, `nohup` and some CI runners start it with SIGINT
    ignored, which Python and every child keep (the POSIX convention: Ctrl-C is not for
    background jobs), so a test that sends SIGINT would otherwise test nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
