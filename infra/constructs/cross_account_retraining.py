"""Retraining where the models are trained: a stage that promotes from another (prod) trains
nothing, so its drift alarms start its source stage's (dev's) training pipelines, across the two
accounts through EventBridge, as AWS's guide to sending events between accounts sets it up:

    prod  alarm mlops-prod-cnn-drift --ALARM--> rule RetrainOnDrift (prod's default bus)
          --target: dev's default event bus, as a role that may only put events on that bus-->
    dev   default bus policy: the prod account may put CloudWatch alarm state changes on it
          rule RetrainOnDriftInProd-cnn: that alarm's event, from the prod account only
          --starts, as the role that may start only it--> mlops-dev-cnn

Both sides, since AWS needs both: prod's role's identity policy, and dev's bus policy naming the
prod account (so prod's IAM decides which of its roles may; only this one is granted). The event
keeps the account it was raised in, which dev's rules match: an alarm of dev's own, or of another
account dev admits, with the same name, starts nothing. The new version is then approved in dev
and released to prod as any other (docs/cicd.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra import naming
from infra.config import PromotionConsumer, PromotionSource, StageConfig
from infra.constructs.drift_monitor import ALARM_EVENT_SOURCE, ALARM_STATE_CHANGE, Retraining, drift_alarm_pattern
from infra.constructs.principals import EVENTS_PRINCIPAL, acting_for_this_account
from infra.constructs.rule_targets import TargetAsRole
from infra.constructs.training_pipeline import TrainingPipeline

DEFAULT_EVENT_BUS = "default"  # where AWS services, CloudWatch alarms included, send their events
# EventBridge's limit on a bus policy's statement id.
STATEMENT_ID_LENGTH = 64
# The one kind of event the bus policy admits from a consumer account: a CloudWatch alarm's state
# change. EventBridge's guide shows `StringEquals` on these keys; the service authorization
# reference types both as ArrayOfString, and IAM matches a multivalued key only through a set
# operator, so: every value one of these, and the keys present (ForAllValues alone admits an
# event without them). The guide's own example of allowed sources has the same form.
ADMITTED_EVENT = {
    "ForAllValues:StringEquals": {"events:source": ALARM_EVENT_SOURCE, "events:detail-type": ALARM_STATE_CHANGE},
    "Null": {"events:source": "false", "events:detail-type": "false"},
}


def default_event_bus_arn(scope: Construct, account: str | None = None, region: str | None = None) -> str:
    """The ARN of `account`'s default event bus in `region` (the scope's stack's by default)."""
    return cdk.Stack.of(scope).format_arn(
        service="events", account=account, region=region, resource="event-bus", resource_name=DEFAULT_EVENT_BUS
    )


class DriftAlarmsToSource(Construct):
    """In a promoting stage's pipelines stack: the role, and the target, that put its drift
    alarms' events on its promotion source's default event bus."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, source: PromotionSource) -> None:
        super().__init__(scope, construct_id)
        self.source = source
        self.bus_arn = default_event_bus_arn(self, source.account, source.region)
        self.role = iam.Role(
            self,
            "ForwardingRole",
            description=f"Assumed by EventBridge to put the drift alarms of {config.prefix()} on "
            f"{source.stage}'s default event bus (account {source.account})",
            assumed_by=acting_for_this_account(EVENTS_PRINCIPAL, self),
            inline_policies={
                "PutEventsOnSourceStageDefaultBus": iam.PolicyDocument(
                    statements=[iam.PolicyStatement(actions=["events:PutEvents"], resources=[self.bus_arn])]
                )
            },
        )
        self.target = TargetAsRole(self.bus_arn, self.role)

    def retraining(self, network: str) -> Retraining:
        pipeline = naming.pipeline_name(self.source.prefix, network)
        return Retraining(
            self.target,
            f"Sends the alarm's event to {self.source.stage}'s default event bus (account {self.source.account}), "
            f"where it starts {pipeline},",
        )


class DriftAlarmsFromConsumer(Construct):
    """In the source stage's pipelines stack, per stage that promotes from it and retrains on
    drift: the consumer's account may put CloudWatch alarm state changes on this account's default
    event bus, and a rule per network starts its training pipeline when the consumer's drift alarm
    of that network goes into ALARM."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        consumer: PromotionConsumer,
        pipelines: Mapping[str, TrainingPipeline],
    ) -> None:
        super().__init__(scope, construct_id)
        # Unique on the account's default bus, which other projects and stages share; letters and
        # digits only, as IAM's policy grammar has a Sid (EventBridge would also take - and _).
        words = re.split(r"[^A-Za-z0-9]+", f"{config.prefix()}-drift-alarms-from-{consumer.stage}")
        statement_id = "".join(word[:1].upper() + word[1:] for word in words)[:STATEMENT_ID_LENGTH]
        statement = iam.PolicyStatement(
            sid=statement_id,
            principals=[iam.AccountPrincipal(consumer.account)],
            actions=["events:PutEvents"],
            resources=[default_event_bus_arn(self)],
            conditions=ADMITTED_EVENT,
        )
        self.bus_policy = events.CfnEventBusPolicy(
            self,
            "AdmitDriftAlarms",
            event_bus_name=DEFAULT_EVENT_BUS,
            statement_id=statement_id,
            statement=statement.to_json(),
        )
        self.rules: dict[str, events.Rule] = {}
        for network in consumer.retrained_networks:
            training = pipelines[network]
            alarm_name = naming.drift_alarm_name(consumer.prefix, network)
            rule = events.Rule(
                self,
                f"RetrainOnDrift-{network}",
                description=f"Starts {training.pipeline_name} when {alarm_name} of {consumer.stage} "
                f"(account {consumer.account}) goes into ALARM",
                event_pattern=drift_alarm_pattern(alarm_name, account=consumer.account),
                targets=[training.retraining_target],
            )
            rule.node.add_dependency(training.pipeline)
            self.rules[network] = rule
