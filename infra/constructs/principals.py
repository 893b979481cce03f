"""The AWS services that assume this project's roles, trusted only while acting for the stack's account."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import Construct

SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"
EVENTS_PRINCIPAL = "events.amazonaws.com"


def acting_for_this_account(service: str, scope: Construct) -> iam.ServicePrincipal:
    """`service` as a role's trusted principal, under aws:SourceAccount = `scope`'s account: SageMaker
    and EventBridge set it to the account of the job, pipeline or rule they act for, so the service
    acting for another account cannot assume the role (the confused deputy)."""
    return iam.ServicePrincipal(
        service, conditions={"StringEquals": {"aws:SourceAccount": cdk.Stack.of(scope).account}}
    )
