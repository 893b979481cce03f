"""IAM's evaluation logic, offline: `@cloud-copilot/iam-simulate` (pinned in package.json) decides
requests against identity and resource policies together, conditions included, which moto's
evaluator does not (docs/local.md, "IAM enforced on every call").

One node process (tests/iam_simulate.mjs) answers every batch of a test session:

    with IamSimulator() as simulator:
        (decision,) = simulator.decide([Request(principal=..., action="s3:GetObject", ...)])
        decision.result  # "Allowed", "ExplicitlyDenied" or "ImplicitlyDenied"

A request the simulator refuses as invalid (an action IAM does not know, a resource of a type the
action does not take) raises `InvalidRequest`: it is a mistake in the test, not a denial.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policy_documents import PolicyDocument

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).with_name("iam_simulate.mjs")


class InvalidRequest(ValueError):
    pass


def session_arn(role_arn: str, session: str = "simulated") -> str:
    """The principal of a call made with the role's credentials, as STS names it."""
    account, name = role_arn.removeprefix("arn:aws:iam::").split(":role/", 1)
    return f"arn:aws:sts::{account}:assumed-role/{name.rsplit('/', 1)[-1]}/{session}"


@dataclass(frozen=True)
class Request:
    principal: str
    action: str
    resource: str
    resource_account: str
    """The account that owns the resource (an S3 ARN does not say)."""
    identity_policies: Sequence[PolicyDocument]
    resource_policy: PolicyDocument | None = None
    context: Mapping[str, str | list[str]] = field(default_factory=dict)
    """The request's condition keys, e.g. {"aws:SecureTransport": "true"}."""
    context_as_given: bool = False
    """For a web identity's sts:AssumeRoleWithWebIdentity on a trust policy: the context's keys are
    taken as given, not only those IAM's reference lists for the action (it omits STS's OIDC keys
    `<provider>:aud` and `:sub`), and the decision comes without its reasons."""

    def as_json(self) -> dict[str, Any]:
        return {
            "principal": self.principal,
            "action": self.action,
            "resource": self.resource,
            "resourceAccount": self.resource_account,
            "identityPolicies": [
                {"name": document.where, "policy": document.policy} for document in self.identity_policies
            ],
            "resourcePolicy": self.resource_policy.policy if self.resource_policy else None,
            "context": dict(self.context),
            "contextAsGiven": self.context_as_given,
        }


@dataclass(frozen=True)
class Decision:
    result: str
    reasons: tuple[str, ...]
    """The statements that allowed or explicitly denied it (`identity <policy> <Sid or #n>`,
    `resource <Sid or #n>`), or the kinds of policy that allowed nothing."""
    ignored_context_keys: tuple[str, ...]
    """Keys of the request that requests of this action never carry (IAM ignores them)."""

    def __str__(self) -> str:
        return f"{self.result} ({'; '.join(self.reasons) or 'no statement'})"


def _reason(entry: dict[str, Any]) -> str:
    if entry.get("denialType") == "Implicit":
        return f"no {entry['policyType']} statement allows it"
    statement = entry.get("statementId") or f"#{entry['statementIndex']}"
    return " ".join(part for part in (entry["policyType"], entry.get("policyIdentifier"), statement) if part)


class IamSimulator:
    def __init__(self) -> None:
        self._process = subprocess.Popen(
            ["node", str(SCRIPT)],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def decide(self, requests: Sequence[Request]) -> list[Decision]:
        assert self._process.stdin and self._process.stdout
        self._process.stdin.write(json.dumps([request.as_json() for request in requests]) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(
                f"{SCRIPT.name} stopped: {self._stopped()} (the package comes from package.json: "
                "`npm ci`, which ./dev.sh test runs)"
            )
        decisions = []
        for request, answer in zip(requests, json.loads(line), strict=True):
            if "error" in answer:
                raise InvalidRequest(f"{request.action} on {request.resource}: {answer['error']}")
            decisions.append(
                Decision(
                    answer["decision"],
                    tuple(_reason(entry) for entry in answer["grants"] + answer["denials"]),
                    tuple(answer["ignoredContextKeys"]),
                )
            )
        return decisions

    def _stopped(self) -> str:
        assert self._process.stderr
        self._process.wait(timeout=10)
        return self._process.stderr.read().strip() or f"exit status {self._process.returncode}"

    def close(self) -> None:
        assert self._process.stdin
        self._process.stdin.close()
        self._process.wait(timeout=10)

    def __enter__(self) -> IamSimulator:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def expect(simulator: IamSimulator, cases: Sequence[tuple[str, Request, str]]) -> None:
    """Each case (what, request, expected result) decided as expected; else the ones that were not,
    with the statements that decided them. A condition key that requests of the action never carry
    would make a case prove nothing: it fails too."""
    decisions = simulator.decide([request for _, request, _ in cases])
    wrong = [
        f"{what}: expected {expected}, got {decision}"
        for (what, _, expected), decision in zip(cases, decisions, strict=True)
        if decision.result != expected
    ]
    wrong += [
        f"{what}: {request.action} requests never carry {', '.join(decision.ignored_context_keys)}"
        for (what, request, _), decision in zip(cases, decisions, strict=True)
        if decision.ignored_context_keys
    ]
    assert not wrong, "\n".join(wrong)
