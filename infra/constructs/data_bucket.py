"""The training data bucket: one folder per network, one subfolder per channel.

<network>/train/  <network>/validation/  <network>/test/  <network>/pretrained/
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.buckets import READ_ACTIONS, ProjectBucket
from infra.constructs.key import ProjectKey
from training.networks import get_network

CHANNELS = ("train", "validation", "test", "pretrained")


def network_prefix(network: str) -> str:
    """`cnn/`: everything of one network. Raises KeyError for a network not in the registry."""
    return f"{get_network(network).name}/"


def channel_prefix(network: str, channel: str) -> str:
    """`cnn/train/`: the keys SageMaker reads as one input channel."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r} (known: {', '.join(CHANNELS)})")
    return f"{network_prefix(network)}{channel}/"


class DataBucket(ProjectBucket):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: StageConfig, key: ProjectKey, access_logs: s3.IBucket
    ) -> None:
        super().__init__(scope, construct_id, purpose="data", config=config, key=key, access_logs=access_logs)

    def channel_uri(self, network: str, channel: str) -> str:
        """`s3://<bucket>/cnn/train/`, a training job's S3DataSource.S3Uri."""
        return self.s3_uri(channel_prefix(network, channel))

    def send_object_events_to_eventbridge(self) -> None:
        """Publish this bucket's object events (e.g. `Object Created`) to the default event bus,
        where the training pipelines' retraining rules match them.

        Set on the CloudFormation resource: `event_bridge_enabled=True` would add a Lambda-backed
        custom resource, which the local moto server cannot run.
        """
        bucket = self.bucket.node.default_child
        assert isinstance(bucket, s3.CfnBucket)
        bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(event_bridge_enabled=True)
        )

    def allow_read_training_data(self, grantee: iam.IGrantable, networks: Iterable[str]) -> None:
        """List and read every channel of the given networks."""
        self._allow(
            grantee,
            sid="ReadTrainingData",
            actions=READ_ACTIONS,
            prefixes=[network_prefix(name) for name in networks],
            list_objects=True,
        )
