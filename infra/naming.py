"""Names shared by the CDK app and the `mlops` CLI, so both always agree.

Small pure functions of the stage prefix (`StageConfig.prefix()`, e.g. `mlops-local`) and a
network name. The CLI finds what the stacks created by these names alone, without reading
CloudFormation outputs.
"""

from __future__ import annotations


def model_package_group_name(prefix: str, network: str) -> str:
    """The model registry group every training pipeline of `network` registers versions in."""
    return f"{prefix}-{network}"


def pipeline_name(prefix: str, network: str) -> str:
    """The SageMaker Pipeline that trains, evaluates and registers `network`, e.g. `mlops-local-cnn`."""
    return f"{prefix}-{network}"


def tuning_pipeline_name(prefix: str, network: str) -> str:
    """The SageMaker Pipeline that tunes `network`'s hyperparameters, then gates and registers the best trial."""
    return f"{prefix}-{network}-tuning"


def warm_start_pipeline_name(prefix: str, network: str) -> str:
    """The tuning pipeline that starts from a previous tuning job's trials (its WarmStartTuningJob)."""
    return f"{prefix}-{network}-tuning-warm-start"


def monitor_pipeline_name(prefix: str, network: str) -> str:
    """The SageMaker Pipeline that checks `network`'s endpoint traffic for drift."""
    return f"{prefix}-{network}-monitor"


def transform_pipeline_name(prefix: str, network: str) -> str:
    """The SageMaker Pipeline that scores a batch of `network`'s inputs with an approved version."""
    return f"{prefix}-{network}-transform"


def drift_alarm_name(prefix: str, network: str) -> str:
    return f"{prefix}-{network}-drift"


def drift_metric_namespace(prefix: str) -> str:
    """Where the monitor publishes DriftScore (dimension `Network`), one namespace per stage."""
    return f"{prefix}/drift"


PIPELINES_STACK_SUFFIX = "pipelines"
BATCH_STACK_SUFFIX = "batch"
STORAGE_STACK_SUFFIX = "storage"


def stack_name(prefix: str, suffix: str) -> str:
    """Every stack is `<prefix>-<suffix>`, e.g. `mlops-local-storage` (see `infra.stacks.base`)."""
    return f"{prefix}-{suffix}"


def endpoint_stack_suffix(network: str) -> str:
    return f"endpoint-{network}"


def endpoint_stack_name(prefix: str, network: str) -> str:
    return stack_name(prefix, endpoint_stack_suffix(network))


def endpoint_name(prefix: str, network: str) -> str:
    return f"{prefix}-{network}"


# An asynchronous endpoint's two SNS topics: SageMaker's notification of each outcome.
ASYNC_OUTCOMES = ("success", "errors")


def async_topic_name(endpoint: str, outcome: str) -> str:
    """`mlops-prod-cnn-async-success`, `...-async-errors`."""
    if outcome not in ASYNC_OUTCOMES:
        raise ValueError(f"unknown async outcome {outcome!r}; known: {', '.join(ASYNC_OUTCOMES)}")
    return f"{endpoint}-async-{outcome}"


def async_inference_prefix(network: str) -> str:
    """The artifacts bucket prefix of an asynchronous endpoint's inputs, answers and failures."""
    return f"async-inference/{network}/"


def endpoint_log_group_name(endpoint: str) -> str:
    """Where SageMaker writes an endpoint's container output (documented, not configurable)."""
    return f"/aws/sagemaker/Endpoints/{endpoint}"


def handler_metric_namespace(endpoint: str) -> str:
    """Where the endpoint log group's metric filters count the handler's outcomes
    (`ModelFailures`, `BadInput`): one namespace per endpoint, as a metric filter can give its
    metric no constant dimension."""
    return f"{endpoint}/handler"


# The one production variant every endpoint of this project has. The autoscaling target's
# resource id, every metric's dimensions and the data capture's keys name it, and blue/green
# updates require the new endpoint config to keep it: renaming it orphans the scaling policy
# and breaks the update.
VARIANT_NAME = "AllTraffic"


MONITORING_STACK_SUFFIX = "monitoring"


def monitoring_stack_name(prefix: str) -> str:
    return stack_name(prefix, MONITORING_STACK_SUFFIX)


def dashboard_name(prefix: str) -> str:
    return f"{prefix}-endpoints"


def model_package_context_key(network: str) -> str:
    """The CDK context key (`-c model_package.<network>=<arn>`) that brings an endpoint stack into the app."""
    return f"model_package.{network}"


GITHUB_DEPLOY_STACK_SUFFIX = "github-deploy"


def github_deploy_role_name(prefix: str) -> str:
    """The role GitHub Actions assumes to deploy the stage (named, so a workflow can build its ARN)."""
    return f"{prefix}-github-deploy"


def github_deploy_role_arn(prefix: str, account: str) -> str:
    return f"arn:aws:iam::{account}:role/{github_deploy_role_name(prefix)}"


# GitHub's OIDC issuer: one IAM OIDC provider per account is named after it.
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
# The audience configure-aws-credentials asks GitHub to put in the token.
GITHUB_OIDC_AUDIENCE = "sts.amazonaws.com"


def github_oidc_provider_arn(account: str) -> str:
    return f"arn:aws:iam::{account}:oidc-provider/{GITHUB_OIDC_HOST}"
