"""`<prefix>-pipelines`: a training pipeline, model registry group and retraining triggers per network,
its tuning pipelines, and its drift monitor (monitor pipeline, drift alarm, retraining on the alarm).

A stage that promotes from another (prod) trains nothing: it has the drift monitors only, whose
alarms start the training pipelines of its source stage (dev), whose stack admits them
(infra/constructs/cross_account_retraining.py, docs/cicd.md).

The training code bundle is one CDK asset shared by every pipeline of the stage. Its hash is the
hash of the bundle's contents (`source_bundle_hash`), so the template is the same on every
machine and only changes when the code does.
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from infra import naming
from infra.config import StageConfig
from infra.constructs.cross_account_retraining import DriftAlarmsFromConsumer, DriftAlarmsToSource
from infra.constructs.drift_monitor import DriftMonitor, Retraining
from infra.constructs.training_pipeline import TrainingPipeline
from infra.constructs.tuning_pipelines import TuningPipelines
from infra.source_bundle import build_source_bundle, source_bundle_hash
from infra.stacks.base import ProjectStack
from infra.stacks.execution_role_stack import ExecutionRoleStack
from infra.stacks.storage_stack import StorageStack


class PipelinesStack(ProjectStack):
    def __init__(
        self, scope: Construct, config: StageConfig, *, storage: StorageStack, execution_role: ExecutionRoleStack
    ) -> None:
        source = config.promotion_source
        super().__init__(
            scope,
            config,
            naming.PIPELINES_STACK_SUFFIX,
            description="SageMaker training pipelines, model registry groups, retraining triggers and drift monitors"
            if source is None
            else f"Drift monitors of the endpoints, whose alarms retrain in {source.stage}",
        )
        # Inside the cloud assembly, so each synth writes its own copy and none shares a path.
        bundle_dir = Path(cdk.Stage.of(self).outdir) / ".bundles"  # type: ignore[union-attr]  # the app is a Stage
        self.source_bundle = s3_assets.Asset(
            self,
            "SourceBundle",
            path=str(build_source_bundle(bundle_dir)),
            asset_hash=source_bundle_hash(),
            asset_hash_type=cdk.AssetHashType.CUSTOM,
        )
        execution_role.execution_role.allow_read_source_bundle(self.source_bundle)
        if config.trains:
            # The retraining rules match the data bucket's object events.
            storage.data.send_object_events_to_eventbridge()

        self.pipelines = {
            network: TrainingPipeline(
                self,
                f"TrainingPipeline-{network}",
                config=config,
                network=network,
                source_bundle=self.source_bundle,
                key=storage.key,
                data=storage.data,
                artifacts=storage.artifacts,
                execution_role=execution_role.execution_role.role,
            )
            for network in config.networks
            if config.trains
        }
        # Whether a run trains or tunes is which pipeline it starts (infra/definitions/tuning_pipeline.py).
        self.tuning = {
            network: TuningPipelines(
                self,
                f"TuningPipelines-{network}",
                config=config,
                training=self.pipelines[network],
                network=network,
                source_bundle=self.source_bundle,
                key=storage.key,
                data=storage.data,
                artifacts=storage.artifacts,
                execution_role=execution_role.execution_role.role,
            )
            for network in self.pipelines
        }
        for network, pipeline in self.pipelines.items():
            cdk.CfnOutput(self, f"PipelineName{network.capitalize()}", value=pipeline.pipeline_name)
        # The drift alarms of the stages that serve this one's versions, admitted and retrained on.
        self.drift_alarms_from = {
            consumer.stage: DriftAlarmsFromConsumer(
                self, f"DriftAlarmsFrom-{consumer.stage}", config=config, consumer=consumer, pipelines=self.pipelines
            )
            for consumer in config.promotion_consumers
            if consumer.retrained_networks
        }
        self.drift_alarms_to_source = (
            DriftAlarmsToSource(self, "DriftAlarmsToSource", config=config, source=source)
            if source is not None and config.retrains_on_drift
            else None
        )
        # Only where endpoints record their traffic (not serverless, not at 0%).
        self.drift_monitors = {
            network: DriftMonitor(
                self,
                f"DriftMonitor-{network}",
                config=config,
                network=network,
                source_bundle=self.source_bundle,
                key=storage.key,
                data=storage.data,
                artifacts=storage.artifacts,
                execution_role=execution_role.execution_role.role,
                retraining=self._retraining(network),
            )
            for network in config.networks
            if config.captures_data
        }

    def _retraining(self, network: str) -> Retraining | None:
        """What the network's drift alarm starts: its own training pipeline, or its promotion
        source's; nothing with `monitor.retrain_on_drift` off."""
        if not self.config.retrains_on_drift:
            return None
        if self.drift_alarms_to_source is not None:
            return self.drift_alarms_to_source.retraining(network)
        training = self.pipelines[network]
        return Retraining(training.retraining_target, f"Starts {training.pipeline_name}", after=training.pipeline)
