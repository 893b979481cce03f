"""Train in dev, promote to prod (infra/constructs/cross_account_retraining.py): prod trains nothing
of its own, and its drift alarms start dev's training pipelines through EventBridge, from prod's
account to dev's. On the synthesized templates of both stages: what prod no longer has; prod's
rule, its target (dev's default event bus) and its role; dev's bus policy and the rules that take
the forwarded event, matched against the event CloudWatch sends by moto's EventBridge pattern
matcher (as `mlops local --drift` matches its rule); and IAM's decision on both sides of the
cross-account PutEvents (tests/iam_simulator.py), with prod's identity policy and dev's bus policy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from iam_simulator import IamSimulator, Request, expect, session_arn
from moto.events.models import EventPattern
from policy_documents import PolicyDocument
from synth_support import Synthesized, logical_id_of
from test_promotion import ANOTHER_ACCOUNT, Accounts, accounts_fixture, simulator_fixture  # noqa: F401 (fixtures)

from infra import naming
from infra.constructs.principals import EVENTS_PRINCIPAL, SAGEMAKER_PRINCIPAL
from infra.nag import flatten_cfn_reference

if TYPE_CHECKING:
    from moto.events.utils import EventMessageType

# slow: synthesizes dev and prod.
pytestmark = pytest.mark.slow

ALLOWED, IMPLICITLY_DENIED = "Allowed", "ImplicitlyDenied"
ALARM_EVENT = {"events:source": "aws.cloudwatch", "events:detail-type": "CloudWatch Alarm State Change"}


def template_resources(synth: Synthesized) -> Iterator[tuple[str, dict[str, Any]]]:
    """(stack name, resource) of every resource of every template of the stage."""
    for path in synth.template_files:
        for resource in json.loads(path.read_text())["Resources"].values():
            yield path.name.removesuffix(".template.json"), resource


def resource(synth: Synthesized, construct: Any) -> dict[str, Any]:
    return synth.template_json(synth.stacks.pipelines)["Resources"][logical_id_of(construct)]


def alarm_state_change(alarm_name: str, *, account: str, state: str = "ALARM") -> EventMessageType:
    """The event CloudWatch sends EventBridge when an alarm changes state, in the shape of the
    example in CloudWatch's user guide ("Alarm events and EventBridge", single metric alarm)."""
    return {
        "version": "0",
        "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": account,
        "time": "2026-12-07T17:04:40Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:cloudwatch:us-east-1:{account}:alarm:{alarm_name}"],
        "detail": {
            "alarmName": alarm_name,
            "state": {"value": state, "reason": "Threshold Crossed", "timestamp": "2026-12-07T17:04:40.985+0000"},
            "previousState": {"value": "OK" if state == "ALARM" else "ALARM"},
            "configuration": {"description": "drift"},
        },
    }


def matches(rule: dict[str, Any], event: EventMessageType) -> bool:
    return bool(EventPattern.load(json.dumps(rule["Properties"]["EventPattern"])).matches_event(event))


def test_prod_trains_nothing_of_its_own(accounts: Accounts) -> None:
    """No training pipeline, no model package group, no rule on new data or a schedule: prod's
    pipelines are its drift monitors and its batch transforms (of dev's approved versions), and its
    data bucket sends no events to retrain on."""
    prod = accounts.prod
    found = list(template_resources(prod))
    assert [stack for stack, r in found if r["Type"] == "AWS::SageMaker::ModelPackageGroup"] == []
    pipelines = {r["Properties"]["PipelineName"] for _, r in found if r["Type"] == "AWS::SageMaker::Pipeline"}
    assert pipelines == {
        name("mlops-prod", network)
        for name in (naming.monitor_pipeline_name, naming.transform_pipeline_name)
        for network in prod.config.networks
    }
    rules = [r["Properties"] for _, r in found if r["Type"] == "AWS::Events::Rule"]
    assert rules and all("ScheduleExpression" not in rule for rule in rules)
    assert {source for rule in rules for source in rule["EventPattern"]["source"]} == {"aws.cloudwatch"}
    (data,) = [
        r
        for _, r in found
        if r["Type"] == "AWS::S3::Bucket" and r["Properties"].get("BucketName", "").startswith("mlops-prod-data-")
    ]
    assert "NotificationConfiguration" not in data["Properties"]


def test_prods_drift_alarm_goes_to_devs_default_bus_as_a_role_that_may_only_put_events_there(
    accounts: Accounts,
) -> None:
    prod, dev_bus = accounts.prod, f"arn:<AWS::Partition>:events:us-east-1:{accounts.dev_account}:event-bus/default"
    template = prod.template_json(prod.stacks.pipelines)
    for network in prod.config.networks:
        rule = resource(prod, prod.stacks.pipelines.drift_monitors[network].retrain_rule)
        alarm = naming.drift_alarm_name("mlops-prod", network)
        assert matches(rule, alarm_state_change(alarm, account=accounts.prod_account))
        assert not matches(rule, alarm_state_change(alarm, account=accounts.prod_account, state="OK"))
        (target,) = rule["Properties"]["Targets"]
        assert flatten_cfn_reference(target["Arn"]) == dev_bus
        role = template["Resources"][target["RoleArn"]["Fn::GetAtt"][0]]["Properties"]
        (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": EVENTS_PRINCIPAL}
        assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": accounts.prod_account}}
        (policy,) = role["Policies"]
        assert policy["PolicyDocument"]["Statement"] == [
            {"Action": "events:PutEvents", "Effect": "Allow", "Resource": target["Arn"]}
        ]


def test_dev_starts_each_networks_pipeline_on_prods_drift_alarm_of_that_network_only(accounts: Accounts) -> None:
    """The event keeps prod's account when forwarded: dev's rules match it by that account and the
    alarm's name, so an alarm of the same name in dev or another account, another network's alarm
    or a return to OK starts nothing; each starts its pipeline as the role that may start only it."""
    dev = accounts.dev
    (from_prod,) = dev.stacks.pipelines.drift_alarms_from.values()
    rules = {network: resource(dev, rule) for network, rule in from_prod.rules.items()}
    assert set(rules) == set(accounts.prod.config.networks)
    for network in rules:
        alarm = naming.drift_alarm_name("mlops-prod", network)
        forwarded = alarm_state_change(alarm, account=accounts.prod_account)
        assert [name for name, rule in rules.items() if matches(rule, forwarded)] == [network]
        rule = rules[network]
        for account in (accounts.dev_account, ANOTHER_ACCOUNT):
            assert not matches(rule, alarm_state_change(alarm, account=account))
        assert not matches(rule, alarm_state_change(alarm, account=accounts.prod_account, state="OK"))
        (target,) = rule["Properties"]["Targets"]
        assert flatten_cfn_reference(target["Arn"]) == (
            f"arn:<AWS::Partition>:sagemaker:us-east-1:{accounts.dev_account}:pipeline/mlops-dev-{network}"
        )
        (new_data_target,) = resource(dev, dev.stacks.pipelines.pipelines[network].new_data_rule)["Properties"][
            "Targets"
        ]
        assert target["RoleArn"] == new_data_target["RoleArn"]


class BusRequests:
    """PutEvents requests on dev's default event bus, decided with dev's bus policy."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts
        dev = accounts.dev
        (from_prod,) = dev.stacks.pipelines.drift_alarms_from.values()
        where = f"{dev.stacks.pipelines.artifact_id}/{logical_id_of(from_prod.bus_policy)}"
        (self.bus_policy,) = [d for d in accounts.dev_documents if d.where == where]
        (self.bus,) = self.bus_policy.attached_to
        forwarding = accounts.prod.stacks.pipelines.drift_alarms_to_source
        self.forwarding_role = accounts.prod_role(forwarding.role)
        where = f"{accounts.prod.stacks.pipelines.artifact_id}/{logical_id_of(forwarding.role)}"
        (self.forwarding_trust,) = [
            d for d in accounts.prod_documents if d.where == f"{where}/AssumeRolePolicyDocument"
        ]

    def put(self, role: tuple[str, tuple[PolicyDocument, ...]], event: dict[str, str], bus: str = "") -> Request:
        return Request(
            principal=session_arn(role[0]),
            action="events:PutEvents",
            resource=bus or self.bus,
            resource_account=self.accounts.dev_account,
            identity_policies=role[1],
            resource_policy=self.bus_policy if not bus else None,
            context=event,
        )

    def assume(self, service: str, source_account: str) -> Request:
        return Request(
            principal=service,
            action="sts:AssumeRole",
            resource=self.forwarding_role[0],
            resource_account=self.accounts.prod_account,
            identity_policies=(),
            resource_policy=self.forwarding_trust,
            context={"aws:SourceAccount": source_account},
        )


def test_prods_role_puts_the_alarm_event_on_devs_bus_and_nothing_else_gets_through(
    simulator: IamSimulator, accounts: Accounts
) -> None:
    """Both sides of the cross-account PutEvents: prod's role's identity policy, and dev's bus
    policy, which names the prod account and the CloudWatch alarm event; prod's other roles lack
    the identity grant, another account the bus policy's."""
    bus = BusRequests(accounts)
    everything = PolicyDocument(
        "stranger",
        "identity",
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "events:*", "Resource": "*"}]},
        (),
    )
    stranger = (f"arn:aws:iam::{ANOTHER_ACCOUNT}:role/stranger", (everything,))
    execution_role = accounts.prod_role(accounts.prod.stacks.execution_role.execution_role.role)
    s3_event = {"events:source": "aws.s3", "events:detail-type": "Object Created"}
    other_bus = f"arn:aws:events:us-east-1:{accounts.dev_account}:event-bus/other"
    expect(
        simulator,
        [
            ("prod's forwarding role, the alarm event", bus.put(bus.forwarding_role, ALARM_EVENT), ALLOWED),
            ("prod's forwarding role, an S3 event", bus.put(bus.forwarding_role, s3_event), IMPLICITLY_DENIED),
            ("prod's forwarding role, an event without source", bus.put(bus.forwarding_role, {}), IMPLICITLY_DENIED),
            (
                "prod's forwarding role, dev's other bus",
                bus.put(bus.forwarding_role, ALARM_EVENT, other_bus),
                IMPLICITLY_DENIED,
            ),
            ("prod's execution role, the alarm event", bus.put(execution_role, ALARM_EVENT), IMPLICITLY_DENIED),
            ("another account, events:* on *, the alarm event", bus.put(stranger, ALARM_EVENT), IMPLICITLY_DENIED),
            (
                "EventBridge acting for prod assumes the forwarding role",
                bus.assume(EVENTS_PRINCIPAL, accounts.prod_account),
                ALLOWED,
            ),
            (
                "EventBridge acting for dev assumes it",
                bus.assume(EVENTS_PRINCIPAL, accounts.dev_account),
                IMPLICITLY_DENIED,
            ),
            ("SageMaker assumes it", bus.assume(SAGEMAKER_PRINCIPAL, accounts.prod_account), IMPLICITLY_DENIED),
        ],
    )
    principals = [statement["Principal"] for statement in bus.bus_policy.policy["Statement"]]
    assert principals == [{"AWS": f"arn:aws:iam::{accounts.prod_account}:root"}]
