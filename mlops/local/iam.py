"""IAM enforced by the embedded moto server: every call of `mlops local` authorized against the
deployed policies of whoever makes it, and every decision recorded.

    with enforced_iam(aws) as iam:          # after the server starts: an administrator, then enforcement
        iam.client(execution_role_arn, "s3")  # SageMaker's calls as a job's role (STS credentials)
        iam.credentials(execution_role_arn)   # the same, for a job's own process
        iam.authorize(pipeline_role_arn, "sagemaker:CreateModelPackage", request)  # a call SageMaker makes
        iam.decisions                          # (principal, action, resource, allowed, basis), in order

The administrator is an IAM user with `Action: *` whose access key is the harness's test
credentials, so the CLI, the CDK CLI and the harness go on signing as before. moto decides from
then on (`moto.core` settings: the server runs in this process, so they apply to it). moto knows
which resource a call is on for S3, IAM, STS and SQS only and authorizes every other call against
`*`; for those calls made as a role, the resources AWS authorizes them against are derived from
AWS's service authorization data (`mlops.local.authorization`) and each one is checked. What moto's
evaluator checks, and what it does not, is in docs/iam.md.

`RoleSessions` is the same interface with nothing enforced (`mlops local --no-iam`): every
"role" is the harness's own credentials.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from moto import settings as moto_settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import AccessDeniedError
from moto.iam.access_control import IAMPolicy, IAMRequestBase, PermissionResult
from moto.iam.models import iam_backends
from moto.s3.exceptions import S3ClientError
from moto.sts.models import sts_backends

from mlops.local.authorization import CannotDerive, Resource, Where, authorized_resources
from mlops.local.moto import CREDENTIALS, LocalAws

ADMINISTRATOR = "mlops-local-administrator"
_ALLOW_EVERYTHING = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)
_PARTITION = "aws"
_SESSION_SECONDS = 12 * 3600
# moto names an action after the service's signing name, where IAM's prefix differs for some:
# CloudWatch signs as `monitoring`, its actions are `cloudwatch:PutMetricData`, ...
_IAM_PREFIXES = {"monitoring": "cloudwatch"}


@dataclass(frozen=True)
class Decision:
    principal: str
    """The caller's ARN: `arn:aws:iam::ACCOUNT:user/NAME` or `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`."""
    action: str
    resource: str
    allowed: bool
    basis: str = ""
    """Why the call is authorized against `resource` (mlops.local.authorization), or empty where moto
    chose the resource itself (S3, IAM, STS, SQS)."""

    @property
    def role_name(self) -> str | None:
        kind, _, rest = self.principal.rpartition(":")[2].partition("/")
        return rest.split("/")[0] if kind == "assumed-role" else None


def denial_message(principal: str, action: str, resource: str) -> str:
    """AWS's words for an implicit deny."""
    return (
        f"User: {principal} is not authorized to perform: {action} on resource: {resource} "
        f"because no identity-based policy allows the {action} action"
    )


class AccessDenied(Exception):
    """A call the caller's role does not allow, checked here for a call moto cannot authorize itself."""


class RoleSessions:
    """Credentials for the calls SageMaker makes as a role; here, with IAM not enforced, the
    harness's own."""

    def __init__(self, aws: LocalAws) -> None:
        self.aws = aws

    @property
    def enforced(self) -> bool:
        return False

    def credentials(self, role_arn: str, session: str = "SageMaker") -> dict[str, str]:
        """AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) of `role_arn`, for a process."""
        return dict(CREDENTIALS)

    def client(self, role_arn: str, service: str, session: str = "SageMaker") -> Any:
        return self.aws.client(service, credentials=self.credentials(role_arn, session))

    def authorize(self, role_arn: str, action: str, request: Mapping[str, Any]) -> None:
        """Nothing to check with IAM off."""

    @property
    def decisions(self) -> list[Decision]:
        return []


class EnforcedRoleSessions(RoleSessions):
    """Roles assumed through moto's STS; decisions recorded as moto makes them."""

    def __init__(self, aws: LocalAws) -> None:
        super().__init__(aws)
        self._decisions: list[Decision] = []
        self._lock = threading.Lock()

    @property
    def enforced(self) -> bool:
        return True

    def credentials(self, role_arn: str, session: str = "SageMaker") -> dict[str, str]:
        # SageMaker, the service, assumes the role. moto cannot sign a request as a service
        # principal (its trust check compares AWS principals only), so the harness asks moto's STS
        # backend in process, as the service would ask STS; the trust policies stay asserted on the
        # templates.
        _inline_policies_as_json(self.aws.account, role_arn)
        assumed = sts_backends[self.aws.account][_PARTITION].assume_role(
            region_name=self.aws.region,
            role_session_name=session,
            role_arn=role_arn,
            policy="",
            duration=_SESSION_SECONDS,
            external_id="",
        )
        return {
            "AWS_ACCESS_KEY_ID": assumed.access_key_id,
            "AWS_SECRET_ACCESS_KEY": assumed.secret_access_key,
            "AWS_SESSION_TOKEN": assumed.session_token,
        }

    def authorize(self, role_arn: str, action: str, request: Mapping[str, Any]) -> None:
        """Evaluates `action` with the `request` SageMaker sends for it (its top-level parameters),
        made as the role: a call SageMaker Pipelines or EventBridge makes as the pipeline's or a
        rule's role, which no process of this run makes through moto. Each resource AWS authorizes
        it against (from AWS's data) is checked with moto's own evaluator against the role's
        deployed policies. Raises AccessDenied as AWS would word it."""
        role = iam_backends[self.aws.account][_PARTITION].get_role_by_arn(role_arn)
        principal = f"arn:aws:sts::{self.aws.account}:assumed-role/{role.name}/SageMakerPipelines"
        documents = role_policies(self.aws.account, role_arn)
        try:
            resources = _derived(self, principal, action, request, Where(_PARTITION, self.aws.region, self.aws.account))
        except CannotDerive as unknown:
            raise AccessDenied(str(unknown)) from None
        refused = []
        for resource in resources:
            results = [IAMPolicy(document).is_action_permitted(action, resource.arn) for document in documents]
            allowed = PermissionResult.PERMITTED in results and PermissionResult.DENIED not in results
            self.record(Decision(principal, action, resource.arn, allowed, resource.basis))
            if not allowed:
                refused.append(resource.arn)
        if refused:
            raise AccessDenied(denial_message(principal, action, refused[0]))

    def record(self, decision: Decision) -> None:
        with self._lock:
            self._decisions.append(decision)

    @property
    def decisions(self) -> list[Decision]:
        with self._lock:
            return list(self._decisions)


def _inline_policies_as_json(account: str, role_arn: str) -> None:
    """moto 5.2.5's CloudFormation keeps a role's inline `Policies` as JSON objects where its
    evaluator expects JSON text (a KeyError, HTTP 500, on the role's first call)."""
    role = iam_backends[account][_PARTITION].get_role_by_arn(role_arn)
    role.policies = {
        name: document if isinstance(document, str) else json.dumps(document)
        for name, document in role.policies.items()
    }


def role_policies(account: str, role_arn: str) -> list[str]:
    """The policy documents (JSON) moto holds for the role: inline ones, then attached ones."""
    backend = iam_backends[account][_PARTITION]
    role = backend.get_role_by_arn(role_arn)
    documents = [backend.get_role_policy(role.name, name)[1] for name in backend.list_role_policies(role.name)]
    attached, _ = backend.list_attached_role_policies(role.name)
    documents += [next(version.document for version in policy.versions if version.is_default) for policy in attached]
    return [document if isinstance(document, str) else json.dumps(document) for document in documents]


def _create_administrator(account: str) -> None:
    backend = iam_backends[account][_PARTITION]
    backend.create_user(region_name="us-east-1", user_name=ADMINISTRATOR)
    backend.put_user_policy(ADMINISTRATOR, "AdministratorAccess", _ALLOW_EVERYTHING)
    key = backend.create_access_key(ADMINISTRATOR)
    # The harness's test credentials become this user's key: everything that signed with them
    # (the CLI, the CDK CLI, the harness) now signs as the administrator.
    del backend.access_keys[key.access_key_id]
    key.access_key_id = CREDENTIALS["AWS_ACCESS_KEY_ID"]
    key.secret_access_key = CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    backend.access_keys[key.access_key_id] = key


@contextmanager
def _recording(sessions: EnforcedRoleSessions) -> Iterator[None]:
    """Every decision moto's evaluator makes, recorded; a denial worded as AWS words it (moto's S3
    says only "Access Denied", its other services leave out the resource). A call that moto
    authorizes against `*` (every service but S3, IAM, STS and SQS) made as a role is checked on
    each resource AWS authorizes it against instead (`mlops.local.authorization`)."""
    original = IAMRequestBase.check_action_permitted

    def check_action_permitted(request: IAMRequestBase, resource: str) -> None:
        service, _, name = request._action.partition(":")
        request._action = f"{_IAM_PREFIXES.get(service, service)}:{name}"
        principal, action = request._access_key.arn, request._action
        resources: tuple[Resource, ...] = (Resource(resource, ""),)
        if resource == "*" and ":assumed-role/" in principal:
            where = Where(_PARTITION, request._region, request.account_id)
            try:
                resources = _derived(sessions, principal, action, _parameters(request), where)
            except CannotDerive as unknown:
                raise _AccessDeniedWithResource(str(unknown)) from None
        for checked in resources:
            try:
                original(request, checked.arn)
            except (S3ClientError, AccessDeniedError) as denied:
                sessions.record(Decision(principal, action, checked.arn, False, checked.basis))
                message = denial_message(principal, action, checked.arn)
                if isinstance(denied, S3ClientError):
                    denied.message = message
                    raise
                raise _AccessDeniedWithResource(message) from None
            sessions.record(Decision(principal, action, checked.arn, True, checked.basis))

    IAMRequestBase.check_action_permitted = check_action_permitted  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        IAMRequestBase.check_action_permitted = original  # type: ignore[method-assign]


def _derived(
    sessions: EnforcedRoleSessions, principal: str, action: str, parameters: Mapping[str, Any], where: Where
) -> tuple[Resource, ...]:
    """The resources AWS authorizes the call against. One the harness cannot derive is recorded as
    refused and raised as CannotDerive with a message for the caller: stricter than AWS, never
    looser."""
    try:
        return authorized_resources(action, parameters, where)
    except CannotDerive as unknown:
        sessions.record(Decision(principal, action, "(not derived)", False, str(unknown)))
        raise CannotDerive(
            f"User: {principal} is refused {action} by the local IAM harness, which cannot tell what AWS "
            f"authorizes it against: {unknown}"
        ) from None


def _parameters(request: IAMRequestBase) -> dict[str, Any]:
    """The request's top-level parameters: a JSON body (SageMaker, and the other JSON protocol
    services), else the query or form parameters moto parsed."""
    try:
        body = json.loads(request._body or b"{}")
    except ValueError:
        body = None
    if isinstance(body, dict) and body:
        return body
    return {
        key: value[0] if isinstance(value, list) and len(value) == 1 else value for key, value in request._data.items()
    }


class _AccessDeniedWithResource(AccessDeniedError):
    def __init__(self, message: str) -> None:
        super(AccessDeniedError, self).__init__("AccessDenied", message)


@contextmanager
def enforced_iam(aws: LocalAws) -> Iterator[EnforcedRoleSessions]:
    """An administrator for the harness, then enforcement, until the block ends."""
    _create_administrator(aws.account)
    sessions = EnforcedRoleSessions(aws)
    previous = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count
    with _recording(sessions):
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0
        try:
            yield sessions
        finally:
            moto_settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count = previous


def is_access_denied(error: BaseException) -> bool:
    return isinstance(error, AccessDenied) or (
        isinstance(error, ClientError)
        and error.response.get("Error", {}).get("Code") in ("AccessDenied", "AccessDeniedException")
    )
