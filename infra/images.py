"""SageMaker's managed TensorFlow images: their URIs and the ECR repositories they live in.

The URIs are those of the SageMaker SDK's own table (`sagemaker.core.image_uris.retrieve`),
copied into `image_uris.json` beside this module: importing the SDK takes about two seconds,
which every synth paid, and a lookup here is a dictionary read. `tests/test_images.py` checks
the copy against the SDK for every region and every SageMaker instance type, so a new pin of the
SDK that changes an image fails there; regenerate with `.venv/bin/python -m infra.images`.
TensorFlow 2.19 is the newest version with managed containers for both training and serving
(py312 inside).

Every image here is x86_64. Arm64 instance types (AWS Graviton, NVIDIA Grace) are refused with an
error naming them: the SDK's arm64 scope (`inference_graviton`) stops at TensorFlow 2.16, and for
the Graviton families it does not list (c8g, m8g, r8g, r7gd, ...) `retrieve` answers the x86 image,
which cannot run there. The table leaves those out rather than copy that answer; the model
artifact's `code/lib` holds x86_64 packages too (`inference/model_lib.py`).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FRAMEWORK = "tensorflow"
FRAMEWORK_VERSION = "2.19"
PYTHON_VERSION = "py312"
SCOPES = ("training", "inference")
TABLE_PATH = Path(__file__).with_name("image_uris.json")
# The SageMaker API's own lists of instance types, per scope; a region to read which image each gets.
INSTANCE_TYPE_SHAPES = {"training": "TrainingInstanceType", "inference": "ProductionVariantInstanceType"}
REFERENCE_REGION = "us-east-1"
PROCESSOR_EXAMPLES = {"cpu": "ml.m5.xlarge", "gpu": "ml.g5.xlarge"}
# Arm64 families: a "g" (Graviton) right after the generation (c7g, m8g, r7gd, c6gn), or a GB
# accelerator, whose host is NVIDIA's Arm CPU Grace (p6e-gb200).
_ARM64_FAMILY = re.compile(r"^ml\.[a-z]+\d+g[a-z]*(\.|-)|^ml\.[a-z0-9]+-gb\d")


@dataclass(frozen=True)
class ImageRepository:
    """An ECR repository of SageMaker's deep learning containers (owned by an AWS account)."""

    account: str
    region: str
    name: str


def training_image_uri(region: str, instance_type: str) -> str:
    """e.g. 763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-training:2.19-cpu-py312"""
    return _lookup(region, instance_type, "training")


def inference_image_uri(region: str, instance_type: str) -> str:
    """e.g. 763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.19-cpu"""
    return _lookup(region, instance_type, "inference")


def is_arm64(instance_type: str) -> bool:
    """Whether a SageMaker instance type has an arm64 host CPU (AWS Graviton or NVIDIA Grace)."""
    return bool(_ARM64_FAMILY.match(instance_type))


def _lookup(region: str, instance_type: str, scope: str) -> str:
    if is_arm64(instance_type):
        raise ValueError(
            f"{instance_type!r} is an arm64 (Graviton or Grace) instance type: SageMaker's SDK lists no "
            f"{FRAMEWORK} {FRAMEWORK_VERSION} {scope} image for arm64 (its Graviton images stop at 2.16), "
            f"and the model artifact's code/lib holds x86_64 packages; choose an x86 instance type "
            f"such as {PROCESSOR_EXAMPLES['cpu']}"
        )
    table = _table()
    if region not in table["uris"]:
        raise ValueError(
            f"SageMaker has no {FRAMEWORK} {FRAMEWORK_VERSION} images in region {region!r} "
            f"(it has them in {', '.join(sorted(table['uris']))})"
        )
    processor = table["processors"][scope].get(instance_type)
    if processor is None:
        raise ValueError(f"SageMaker has no {FRAMEWORK} {FRAMEWORK_VERSION} {scope} image for {instance_type!r}")
    return table["uris"][region][scope][processor]


@functools.cache
def _table() -> dict[str, Any]:
    return json.loads(TABLE_PATH.read_text())


def sdk_retrieve(region: str, instance_type: str, scope: str) -> str:
    """The SDK's own answer for one image (ValueError where it has none)."""
    from sagemaker.core import image_uris

    return image_uris.retrieve(
        FRAMEWORK,
        region=region,
        version=FRAMEWORK_VERSION,
        py_version=PYTHON_VERSION,
        instance_type=instance_type,
        image_scope=scope,
    )


def sdk_table() -> dict[str, Any]:
    """The table as the SageMaker SDK gives it: the image of each scope and processor in every
    region it lists, and the processor of every instance type SageMaker names that it gives one
    for (p2 is deprecated, Graviton has no 2.19 images, ...); arm64 ones left out (above)."""
    import botocore.session
    from sagemaker.core import image_uris

    config = image_uris.config_for_framework(FRAMEWORK)["training"]
    release = config.get("version_aliases", {}).get(FRAMEWORK_VERSION, FRAMEWORK_VERSION)
    regions = sorted(config["versions"][release]["registries"])
    uris = {
        region: {
            scope: {
                name: sdk_retrieve(region, instance_type, scope) for name, instance_type in PROCESSOR_EXAMPLES.items()
            }
            for scope in SCOPES
        }
        for region in regions
    }
    model = botocore.session.get_session().get_service_model("sagemaker")
    processors: dict[str, dict[str, str]] = {}
    for scope, shape in INSTANCE_TYPE_SHAPES.items():
        by_uri = {uri: name for name, uri in uris[REFERENCE_REGION][scope].items()}
        processors[scope] = {}
        for instance_type in ["local", "local_gpu", *model.shape_for(shape).enum]:
            if is_arm64(instance_type):
                continue  # the SDK answers the x86 image for the Graviton families it does not know
            try:
                processors[scope][instance_type] = by_uri[sdk_retrieve(REFERENCE_REGION, instance_type, scope)]
            except ValueError:
                continue  # the SDK refuses it: so does the lookup
    return {
        "framework": FRAMEWORK,
        "version": FRAMEWORK_VERSION,
        "py_version": PYTHON_VERSION,
        "uris": uris,
        "processors": processors,
    }


def image_repository(image_uri: str) -> ImageRepository:
    """The repository an image URI points into: `<account>.dkr.ecr.<region>.<domain>/<name>:<tag>`."""
    registry, _, path = image_uri.partition("/")
    host_parts = registry.split(".")
    if len(host_parts) < 4 or host_parts[1:3] != ["dkr", "ecr"] or not path:
        raise ValueError(f"not an ECR image URI: {image_uri!r}")
    return ImageRepository(account=host_parts[0], region=host_parts[3], name=path.split(":")[0])


if __name__ == "__main__":
    TABLE_PATH.write_text(json.dumps(sdk_table(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {TABLE_PATH}")
