"""A new instance type for an endpoint registered for autoscaling (mlops/endpoint_autoscaling.py):
SageMaker refuses UpdateEndpoint then, so the variant's scaling policies and target are set aside
for the deploy and registered again after it, as AWS documents. Against a moto server, whose
Application Auto Scaling keeps targets and policies (it does not refuse the update itself: what is
checked is what is registered while the deploy runs; and it knows no ml.c7i, hence ml.c5)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from autoscaling_support import AS_DEPLOYED, POLICY, registered, serve_with_autoscaling

from mlops.endpoint_autoscaling import DIMENSION, NAMESPACE, autoscaling_set_aside
from mlops.errors import RunFailed
from mlops.local.moto import LocalAws, moto_server

ENDPOINT = "mlops-prod-cnn"
RESOURCE = {
    "ServiceNamespace": NAMESPACE,
    "ScalableDimension": DIMENSION,
    "ResourceId": f"endpoint/{ENDPOINT}/variant/AllTraffic",
}


@pytest.fixture()
def aws() -> Iterator[LocalAws]:
    with moto_server() as server:
        serve_with_autoscaling(server, ENDPOINT, "ml.c5.large")
        yield server


def test_a_new_instance_type_is_deployed_with_the_variant_deregistered_then_registered_again(aws: LocalAws) -> None:
    said: list[str] = []
    assert registered(aws, ENDPOINT) == AS_DEPLOYED
    with autoscaling_set_aside(aws, ENDPOINT, "ml.c5.xlarge", say=said.append):
        assert registered(aws, ENDPOINT) == ([], [])  # what UpdateEndpoint needs to change the instance type
    assert registered(aws, ENDPOINT) == AS_DEPLOYED
    assert "SageMaker refuses to change its instance type to ml.c5.xlarge" in said[0]


def test_a_failed_deploy_gets_its_autoscaling_back_too(aws: LocalAws) -> None:
    with (
        pytest.raises(RunFailed, match="cdk deploy failed"),
        autoscaling_set_aside(aws, ENDPOINT, "ml.c5.xlarge", say=lambda _: None),
    ):
        raise RunFailed("cdk deploy failed")
    assert registered(aws, ENDPOINT) == AS_DEPLOYED


def test_what_cloudformation_registered_during_the_deploy_is_left_as_it_made_it(aws: LocalAws) -> None:
    """The same deploy raised the maximum: CloudFormation registered the target (after the
    endpoint's update) with its new capacity, which must not be put back to the old one."""
    scaling = aws.client("application-autoscaling")
    with autoscaling_set_aside(aws, ENDPOINT, "ml.c5.xlarge", say=lambda _: None):
        scaling.register_scalable_target(**RESOURCE, MinCapacity=2, MaxCapacity=10)
    assert registered(aws, ENDPOINT) == ([{"MinCapacity": 2, "MaxCapacity": 10}], [POLICY])


@pytest.mark.parametrize(
    ("endpoint", "instance_type"),
    [(ENDPOINT, "ml.c5.large"), (ENDPOINT, None), ("mlops-prod-rnn", "ml.c5.xlarge")],
    ids=["a-new-model-on-the-same-instance-type", "serverless", "no-endpoint-yet"],
)
def test_autoscaling_stays_registered_where_sagemaker_allows_the_update(
    aws: LocalAws, endpoint: str, instance_type: str | None
) -> None:
    with autoscaling_set_aside(aws, endpoint, instance_type, say=pytest.fail):
        assert registered(aws, ENDPOINT) == AS_DEPLOYED
    assert registered(aws, ENDPOINT) == AS_DEPLOYED
