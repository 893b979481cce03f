"""SageMaker's TensorFlow image URIs: the copied table is the SDK's, for every region and every
instance type SageMaker lists, and each URI names its repository."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest
from sagemaker.core import common_utils

from infra import images
from infra.images import ImageRepository, image_repository, inference_image_uri, training_image_uri


@pytest.fixture(autouse=True)
def one_endpoint_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK loads botocore's endpoint rules on every `retrieve` (70 ms); once is enough here."""
    monkeypatch.setattr(common_utils, "_botocore_resolver", functools.cache(common_utils._botocore_resolver))


def test_the_copied_table_is_the_sdks() -> None:
    """Every region's images, and the image of every instance type SageMaker lists."""
    assert json.loads(images.TABLE_PATH.read_text()) == images.sdk_table(), (
        "infra/image_uris.json differs from the pinned SageMaker SDK: run .venv/bin/python -m infra.images"
    )


@pytest.mark.parametrize(
    ("region", "instance_type", "scope"),
    [
        ("eu-west-1", "ml.p4d.24xlarge", "training"),
        ("ap-southeast-2", "ml.c6i.large", "inference"),
        ("cn-northwest-1", "local_gpu", "inference"),
        ("us-gov-west-1", "ml.m7i.xlarge", "training"),
    ],
)
def test_a_lookup_is_the_sdks_retrieve(region: str, instance_type: str, scope: str) -> None:
    lookup = training_image_uri if scope == "training" else inference_image_uri
    assert lookup(region, instance_type) == images.sdk_retrieve(region, instance_type, scope)


@pytest.mark.parametrize("instance_type", ["ml.p2.xlarge", "ml.inf1.xlarge", "ml.trn1.2xlarge", "m5.xlarge"])
def test_an_instance_type_the_sdk_refuses_is_refused(instance_type: str) -> None:
    with pytest.raises(ValueError):
        images.sdk_retrieve("us-east-1", instance_type, "training")
    with pytest.raises(ValueError, match=f"no tensorflow 2.19 training image for '{instance_type}'"):
        training_image_uri("us-east-1", instance_type)


def test_training_and_serving_images_for_cpu_and_gpu() -> None:
    registry = "763104351884.dkr.ecr.us-east-1.amazonaws.com"
    assert training_image_uri("us-east-1", "ml.m7i.xlarge") == f"{registry}/tensorflow-training:2.19-cpu-py312"
    assert training_image_uri("us-east-1", "ml.g5.xlarge") == f"{registry}/tensorflow-training:2.19-gpu-py312"
    assert inference_image_uri("us-east-1", "ml.c7i.large") == f"{registry}/tensorflow-inference:2.19-cpu"


def test_the_registry_account_depends_on_the_region() -> None:
    assert image_repository(training_image_uri("cn-north-1", "ml.m5.xlarge")) == ImageRepository(
        account="727897471807", region="cn-north-1", name="tensorflow-training"
    )


def test_a_region_without_images_is_named() -> None:
    with pytest.raises(ValueError, match=r"no tensorflow 2\.19 images in region 'mars-east-1'"):
        training_image_uri("mars-east-1", "ml.m5.xlarge")


@pytest.mark.parametrize(
    "uri", ["tensorflow-training:2.19", "public.ecr.aws/x/y:1", "1.dkr.ecr.us-east-1.amazonaws.com"]
)
def test_anything_but_an_ecr_image_uri_is_rejected(uri: str) -> None:
    with pytest.raises(ValueError, match="not an ECR image URI"):
        image_repository(uri)


@pytest.mark.parametrize("instance_type", ["ml.c8g.xlarge", "ml.m8g.large", "ml.r7gd.2xlarge", "ml.p6e-gb200.36xlarge"])
def test_an_arm64_instance_type_is_refused_naming_it(instance_type: str) -> None:
    """The SDK answers the x86 image for these Graviton/Grace types; no lookup here may."""
    for lookup in (inference_image_uri, training_image_uri):
        with pytest.raises(ValueError, match=rf"'{re.escape(instance_type)}' is an arm64"):
            lookup("us-east-1", instance_type)


def test_a_stage_serving_on_graviton_fails_synth_naming_the_instance_type(tmp_path: Path) -> None:
    from synth_support import app_module, new_app

    from infra.config import load_stage_config

    app = new_app("dev", tmp_path)
    config = load_stage_config(app.node)
    config = config.model_copy(
        update={"endpoint": config.endpoint.model_copy(update={"instance_type": "ml.c8g.large"})}
    )
    with pytest.raises(ValueError, match=r"'ml\.c8g\.large' is an arm64"):
        app_module().compose(app, config)
