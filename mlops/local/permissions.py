"""The permissions report of an `mlops local` run with IAM enforced: per role, every (action,
resource) it was allowed or refused, and every statement of its deployed policies that no call
matched, with why (a path the run does not take, or a candidate to remove).

    write_permissions_report(folder, roles, network="cnn", networks=[...])   # while moto runs
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from moto.iam.access_control import IAMPolicyStatement, PermissionResult
from moto.iam.models import iam_backends

from mlops.local.iam import Decision, EnforcedRoleSessions, role_policies

# The CDK bootstrap's roles are the CDK CLI's, not the project's.
_BOOTSTRAP_ROLE_PREFIX = "cdk-"
_NOT_EXERCISED = {
    "logs": "CloudWatch Logs: the local runner keeps each job's log in its folder; in AWS SageMaker's agent "
    "writes the job's log streams as this role (not exercised locally)",
    "cloudwatch": "job metrics: in AWS SageMaker publishes them as this role; locally they are parsed from the "
    "log (not exercised locally)",
    "ecr": "image pulls: the local runner runs the jobs in this machine's Python, not in the framework image "
    "(not exercised locally)",
    "sagemaker": "SageMaker Pipelines' own bookkeeping (tagging, polling, stopping jobs): the local executor "
    "records jobs in moto itself, not as this role (not exercised locally)",
    "kms": "the key: moto's S3 encrypts and decrypts with it without a KMS request in the caller's name, so "
    "the use is real but not authorized here (nor is the key policy, a resource policy)",
}
_CHOSEN_BY_MOTO = "the request's bucket, object, role or session, as moto reads it"
_NOT_EXERCISED_PREFIXES = {
    "checkpoints/": "checkpoints: in AWS SageMaker uploads them during training and a resumed job (spot "
    "interruption, retry) reads them back; the local runner syncs at the end of the job, when a "
    "finished entry point has removed them (not exercised: spot resume)",
    "data-capture/": "the endpoint's data capture: the local endpoint captures nothing (not exercised locally)",
}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(statement: dict[str, Any], decision: Decision) -> bool:
    return (
        IAMPolicyStatement(statement).is_action_permitted(decision.action, decision.resource)
        == PermissionResult.PERMITTED
    )


def _why_unmatched(statement: dict[str, Any], network: str, other_networks: list[str]) -> str:
    resources = " ".join(str(resource) for resource in _as_list(statement.get("Resource", [])))

    def names(name: str) -> bool:
        # A network's S3 prefix (`.../<network>/...`) or its model package group (`<prefix>-<network>/`).
        return f"/{name}/" in resources or f"-{name}/" in resources

    if not names(network) and any(names(other) for other in other_networks):
        return f"another network's resources (this run trains {network})"
    actions = _as_list(statement.get("Action", []))
    services = {action.split(":")[0] for action in actions}
    if len(services) == 1 and (service := next(iter(services))) in _NOT_EXERCISED:
        return _NOT_EXERCISED[service]
    for prefix, why in _NOT_EXERCISED_PREFIXES.items():
        if prefix in resources:
            return why
    return "no call of this run matched it: a candidate to remove, unless a path this run does not take needs it"


def _role_section(
    account: str, role: Any, decisions: list[Decision], network: str, networks: list[str]
) -> dict[str, Any]:
    calls = Counter((decision.action, decision.resource, decision.basis, decision.allowed) for decision in decisions)
    statements = []
    for document in role_policies(account, role.arn):
        for statement in _as_list(json.loads(document)["Statement"]):
            matched = [decision for decision in decisions if decision.allowed and _matches(statement, decision)]
            used_actions = sorted({decision.action for decision in matched})
            entry = {
                "sid": statement.get("Sid"),
                "effect": statement["Effect"],
                "actions": _as_list(statement.get("Action", [])),
                "resources": _as_list(statement.get("Resource", [])),
                "condition": statement.get("Condition"),
                "calls_matched": len(matched),
                "actions_used": used_actions,
            }
            if not matched:
                entry["why_unmatched"] = _why_unmatched(statement, network, [n for n in networks if n != network])
            statements.append(entry)
    return {
        "role": role.name,
        "arn": role.arn,
        "calls": [
            {"action": action, "resource": resource, "resource_from": basis, "allowed": allowed, "count": count}
            for (action, resource, basis, allowed), count in sorted(calls.items())
        ],
        "statements": statements,
    }


def permissions_report(account: str, decisions: list[Decision], *, network: str, networks: list[str]) -> dict[str, Any]:
    """Every project role in moto, with its calls and statements; roles that made no call say why."""
    backend = iam_backends[account]["aws"]
    by_role: dict[str, list[Decision]] = {}
    for decision in decisions:
        if decision.role_name:
            by_role.setdefault(decision.role_name, []).append(decision)
    roles = []
    for role in sorted(backend.roles.values(), key=lambda role: role.name):
        if role.name.startswith(_BOOTSTRAP_ROLE_PREFIX):
            continue
        section = _role_section(account, role, by_role.get(role.name, []), network, networks)
        if role.name not in by_role:
            section["why_no_calls"] = _why_no_calls(role.name, network)
        roles.append(section)
    administrator_calls = sum(1 for decision in decisions if not decision.role_name)
    return {"network": network, "administrator_calls": administrator_calls, "roles": roles}


def _why_no_calls(role_name: str, network: str) -> str:
    if "RetrainingTrigger" in role_name:
        return (
            "the retraining rules' role: mlops local starts the pipeline execution itself (moto's EventBridge "
            "does not start SageMaker pipelines), so no rule assumes it (not exercised locally)"
        )
    if "Pipeline" in role_name and f"Pipeline{network}" not in role_name:
        return f"another network's pipeline (this run trains {network})"
    return "no call of this run was made as this role"


def write_permissions_report(folder: Path, roles: EnforcedRoleSessions, *, network: str, networks: list[str]) -> None:
    """permissions.json and permissions.md of what `roles` recorded (while moto still runs)."""
    report = permissions_report(roles.aws.account, roles.decisions, network=network, networks=networks)
    (folder / "permissions.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (folder / "permissions.md").write_text(_markdown(report))


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Permissions used by the {report['network']} run",
        "",
        "IAM enforced by moto on every call; the administrator (CLI, CDK CLI, harness) made "
        f"{report['administrator_calls']} calls. Each resource is the one AWS authorizes the call against: "
        "S3's, IAM's and STS's as moto reads them from the request, every other service's derived from AWS's "
        "service authorization data. What is checked and how: docs/iam.md.",
        "",
    ]
    for role in report["roles"]:
        lines += [f"## {role['role']}", ""]
        if "why_no_calls" in role:
            lines += [f"No calls: {role['why_no_calls']}.", ""]
            continue
        lines += ["| action | resource | why that resource | allowed | calls |", "|---|---|---|---|---|"]
        lines += [
            f"| {call['action']} | `{call['resource']}` | {call['resource_from'] or _CHOSEN_BY_MOTO} | "
            f"{'yes' if call['allowed'] else '**no**'} | {call['count']} |"
            for call in role["calls"]
        ]
        lines += ["", "| statement | actions | calls matched | why unmatched |", "|---|---|---|---|"]
        for statement in role["statements"]:
            name = statement["sid"] or ", ".join(statement["actions"])[:60]
            lines.append(
                f"| {name} | {', '.join(statement['actions'])} | {statement['calls_matched']} | "
                f"{statement.get('why_unmatched', '')} |"
            )
        lines.append("")
    return "\n".join(lines)
