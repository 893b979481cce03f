"""SageMaker's managed TensorFlow images: their URIs and the ECR repositories they live in.

The URIs come from the SageMaker SDK's own table (`sagemaker.core.image_uris.retrieve`),
which works offline and without credentials, so synth stays offline. TensorFlow 2.19 is
the newest version with managed containers for both training and serving (py312 inside).
"""

from __future__ import annotations

from dataclasses import dataclass

from sagemaker.core import image_uris

FRAMEWORK = "tensorflow"
FRAMEWORK_VERSION = "2.19"
PYTHON_VERSION = "py312"


@dataclass(frozen=True)
class ImageRepository:
    """An ECR repository of SageMaker's deep learning containers (owned by an AWS account)."""

    account: str
    region: str
    name: str


def _retrieve(region: str, instance_type: str, scope: str) -> str:
    return image_uris.retrieve(FRAMEWORK, region=region, version=FRAMEWORK_VERSION,
                               py_version=PYTHON_VERSION, instance_type=instance_type,
                               image_scope=scope)


def training_image_uri(region: str, instance_type: str) -> str:
    """e.g. 763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-training:2.19-cpu-py312"""
    return _retrieve(region, instance_type, "training")


def inference_image_uri(region: str, instance_type: str) -> str:
    """e.g. 763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.19-cpu"""
    return _retrieve(region, instance_type, "inference")


def image_repository(image_uri: str) -> ImageRepository:
    """The repository an image URI points into: `<account>.dkr.ecr.<region>.<domain>/<name>:<tag>`."""
    registry, _, path = image_uri.partition("/")
    host_parts = registry.split(".")
    if len(host_parts) < 4 or host_parts[1:3] != ["dkr", "ecr"] or not path:
        raise ValueError(f"not an ECR image URI: {image_uri!r}")
    return ImageRepository(account=host_parts[0], region=host_parts[3], name=path.split(":")[0])
