"""An EventBridge rule target named by its ARN and invoked as a role of the project's."""

from __future__ import annotations

import jsii
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk.interfaces import aws_events as events_interfaces


@jsii.implements(events.IRuleTarget)
class TargetAsRole:
    """EventBridge invokes `arn` as `role`: a SageMaker pipeline, started with its default
    parameters, or another account's event bus, on which the role puts the event. The role and
    its policy are the caller's, written next to what they grant (CDK's own targets would add a
    default policy of their own)."""

    def __init__(self, arn: str, role: iam.IRole) -> None:
        self._arn = arn
        self._role = role

    def bind(self, rule: events_interfaces.IRuleRef, id: str | None = None) -> events.RuleTargetConfig:
        return events.RuleTargetConfig(arn=self._arn, role=self._role)
