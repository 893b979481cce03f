"""SageMaker's TensorFlow image URIs come from the SDK's offline table, and name their repository."""

from __future__ import annotations

import pytest

from infra.images import ImageRepository, image_repository, inference_image_uri, training_image_uri


def test_training_and_serving_images_for_cpu_and_gpu() -> None:
    registry = "763104351884.dkr.ecr.us-east-1.amazonaws.com"
    assert training_image_uri("us-east-1", "ml.m7i.xlarge") == f"{registry}/tensorflow-training:2.19-cpu-py312"
    assert training_image_uri("us-east-1", "ml.g5.xlarge") == f"{registry}/tensorflow-training:2.19-gpu-py312"
    assert inference_image_uri("us-east-1", "ml.c7i.large") == f"{registry}/tensorflow-inference:2.19-cpu"


def test_the_registry_account_depends_on_the_region() -> None:
    assert image_repository(training_image_uri("cn-north-1", "ml.m5.xlarge")) == ImageRepository(
        account="727897471807", region="cn-north-1", name="tensorflow-training")


@pytest.mark.parametrize("uri", ["tensorflow-training:2.19", "public.ecr.aws/x/y:1",
                                 "1.dkr.ecr.us-east-1.amazonaws.com"])
def test_anything_but_an_ecr_image_uri_is_rejected(uri: str) -> None:
    with pytest.raises(ValueError, match="not an ECR image URI"):
        image_repository(uri)
