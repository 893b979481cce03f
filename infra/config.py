"""Stage configuration: `cdk.json` context read once into typed, validated objects.

`app.py` calls `load_stage_config(app.node)` and passes the result to every stack.
A malformed stage fails synth with a message that names the offending key, e.g.
`stages.prod.endpoint.max_instances: Input should be greater than or equal to 1`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from infra import naming
from infra.github_config import GithubDeployConfig
from infra.inference_config import AsyncInferenceConfig, BatchTransformConfig
from infra.tuning_config import TuningConfig
from training.hyperparameters import HyperparameterValue
from training.networks import NETWORKS

DEFAULT_PROJECT = "mlops"
# What cdk.json's stages may not set: the stage's name is its key, the rest comes from elsewhere
# in the context (the repository) or from the other stages (who promotes from whom).
_DERIVED_KEYS = ("name", "github_repository", "promotion_source", "promotion_consumers")
# What only configures training, refused on a stage that promotes from another (it trains nothing).
TRAINING_ONLY_KEYS = ("retrain_schedule", "model_approval_status", "hyperparameters")


class ConfigError(ValueError):
    """A stage configuration that cannot be used; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainingConfig(_Strict):
    instance_type: str | None = Field(default=None, description="None uses each network's registry default")
    instance_count: int = Field(default=1, ge=1, le=16)
    use_spot: bool = True
    max_run_seconds: int = Field(default=3600, ge=60, le=432000)
    max_wait_seconds: int = Field(default=7200, ge=60, le=432000)
    volume_size_gb: int = Field(default=30, ge=1, le=16384)
    network_isolation: bool = False

    @model_validator(mode="after")
    def _wait_covers_run(self) -> TrainingConfig:
        if self.max_wait_seconds < self.max_run_seconds:
            raise ValueError("max_wait_seconds must be >= max_run_seconds (SageMaker requires it for spot)")
        return self


class VpcConfig(_Strict):
    """The subnets and security groups of every job and endpoint model of the stage (SageMaker's
    VpcConfig: at most 16 subnets and 5 groups)."""

    subnet_ids: tuple[Annotated[str, StringConstraints(pattern=r"^subnet-[0-9a-f]+$")], ...] = Field(
        min_length=1, max_length=16
    )
    security_group_ids: tuple[Annotated[str, StringConstraints(pattern=r"^sg-[0-9a-f]+$")], ...] = Field(
        min_length=1, max_length=5
    )


class ServerlessConfig(_Strict):
    memory_size_mb: Literal[1024, 2048, 3072, 4096, 5120, 6144] = 2048
    max_concurrency: int = Field(default=5, ge=1, le=200)


class EndpointConfig(_Strict):
    instance_type: str | None = Field(default=None, description="None uses each network's registry default")
    initial_instance_count: int = Field(default=1, ge=1)
    min_instances: int = Field(default=1, ge=1)
    max_instances: int = Field(default=2, ge=1)
    target_invocations_per_instance: int = Field(default=200, ge=1)
    data_capture_percent: int = Field(default=100, ge=0, le=100)
    latency_alarm_ms: int = Field(default=500, ge=1)
    serverless: ServerlessConfig | None = None
    async_inference: AsyncInferenceConfig | None = Field(
        default=None, description="an asynchronous endpoint, scaling to zero (docs/batch.md)"
    )

    @model_validator(mode="after")
    def _bounds_ordered(self) -> EndpointConfig:
        if not self.min_instances <= self.initial_instance_count <= self.max_instances:
            raise ValueError("need min_instances <= initial_instance_count <= max_instances")
        return self

    @model_validator(mode="after")
    def _async_needs_instances(self) -> EndpointConfig:
        if self.async_inference and self.serverless:
            raise ValueError("async_inference cannot be combined with serverless: an async endpoint runs on instances")
        return self


class MonitorConfig(_Strict):
    """The drift monitor of every network of the stage (infra/constructs/drift_monitor.py)."""

    schedule: str = Field(
        default="rate(1 hour)",
        pattern=r"^(rate|cron)\(.+\)$",
        description="EventBridge schedule expression of the monitor pipeline",
    )
    window_minutes: int = Field(
        default=60, ge=5, le=1440, description="the captured traffic each run looks at, ending when it starts"
    )
    alpha: float = Field(
        default=0.01, gt=0, lt=0.5, description="chance that a window of unchanged traffic is called drift"
    )
    retrain_on_drift: bool = True


class PromotionSource(_Strict):
    """The stage whose registry holds the versions another stage's endpoints serve (`promote_from`)."""

    stage: str
    prefix: str
    account: str
    region: str

    def model_package_group_arn(self, network: str) -> str:
        group = naming.model_package_group_name(self.prefix, network)
        return f"arn:aws:sagemaker:{self.region}:{self.account}:model-package-group/{group}"


class PromotionConsumer(_Strict):
    """A stage whose endpoints serve this stage's versions (its `promote_from` names this one), and
    the networks whose drift alarms there start this stage's training pipelines."""

    stage: str
    prefix: str
    account: str
    retrained_networks: tuple[str, ...]


class StageConfig(_Strict):
    """Everything that differs between local, dev and prod."""

    name: str
    project: str = DEFAULT_PROJECT
    account: str | None = Field(
        default=None,
        pattern=r"^\d{12}$",
        description="None keeps the templates account-agnostic (resolved at deploy time)",
    )
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    removal_policy: Literal["retain", "destroy"] = "retain"
    networks: tuple[str, ...] = Field(
        default_factory=lambda: tuple(NETWORKS),
        min_length=1,
        description="the networks this stage trains and serves: every registered one unless listed",
    )
    model_approval_status: Literal["Approved", "PendingManualApproval"] = "PendingManualApproval"
    retrain_schedule: str | None = Field(
        default=None,
        pattern=r"^(rate|cron)\(.+\)$",
        description="EventBridge schedule expression; None disables scheduled retraining",
    )
    checkpoint_expiry_days: int = Field(default=14, ge=1)
    noncurrent_version_expiry_days: int = Field(default=30, ge=1)
    log_retention_days: int = Field(default=365, ge=1)
    training: TrainingConfig = TrainingConfig()
    vpc: VpcConfig | None = None
    endpoint: EndpointConfig = EndpointConfig()
    monitor: MonitorConfig = MonitorConfig()
    batch: BatchTransformConfig = BatchTransformConfig()
    tuning: TuningConfig = TuningConfig()
    hyperparameters: dict[str, dict[str, HyperparameterValue]] = Field(
        default_factory=dict, description="per-network overrides of registry defaults"
    )
    github: GithubDeployConfig | None = Field(
        default=None, description="deployed by GitHub Actions through OIDC; None: no deploy role"
    )
    github_repository: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$",
        description="cdk.json's top-level `github_repository`, ORG/REPO as GitHub spells it",
    )
    promote_from: str | None = Field(
        default=None, description="the stage whose approved model versions this stage's endpoints serve"
    )
    promotion_source: PromotionSource | None = Field(default=None, description="promote_from's stage, resolved")
    promotion_consumers: tuple[PromotionConsumer, ...] = Field(default=(), description="the stages promoting from it")

    @model_validator(mode="after")
    def _deploy_role_can_be_named(self) -> StageConfig:
        if self.github is not None and self.account is None:
            raise ValueError("github: a stage deployed from GitHub needs its account (the workflow names its role)")
        return self

    @model_validator(mode="after")
    def _vpc_needs_instances(self) -> StageConfig:
        if self.vpc and self.endpoint.serverless:
            raise ValueError(
                "vpc cannot be combined with endpoint.serverless: SageMaker Serverless Inference does not "
                "support VPC configuration (its documented feature exclusions)"
            )
        return self

    @field_validator("networks")
    @classmethod
    def _known_networks(cls, networks: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in networks if name not in NETWORKS]
        if unknown:
            raise ValueError(f"unknown network(s) {', '.join(unknown)}; known: {', '.join(NETWORKS)}")
        if len(set(networks)) != len(networks):
            raise ValueError("a network is listed twice")
        return networks

    @field_validator("hyperparameters")
    @classmethod
    def _known_hyperparameters(
        cls, overrides: dict[str, dict[str, HyperparameterValue]]
    ) -> dict[str, dict[str, HyperparameterValue]]:
        checked: dict[str, dict[str, HyperparameterValue]] = {}
        for network_name, values in overrides.items():
            if network_name not in NETWORKS:
                raise ValueError(f"unknown network {network_name!r}; known: {', '.join(NETWORKS)}")
            network = NETWORKS[network_name]
            checked[network_name] = {}
            for name, value in values.items():
                try:
                    knob = network.hyperparameter(name)
                except KeyError as error:
                    raise ValueError(error.args[0]) from None
                checked[network_name][name] = knob.parse(value)
        return checked

    @property
    def destroy_on_removal(self) -> bool:
        return self.removal_policy == "destroy"

    def prefix(self) -> str:
        """The name prefix of every stack and named resource of this stage."""
        return f"{self.project}-{self.name}"

    def hyperparameters_for(self, network_name: str) -> dict[str, HyperparameterValue]:
        """Registry defaults with this stage's overrides applied."""
        return {**NETWORKS[network_name].default_hyperparameters, **self.hyperparameters.get(network_name, {})}

    def training_instance_type(self, network_name: str) -> str:
        return self.training.instance_type or NETWORKS[network_name].training_instance_type

    def endpoint_instance_type(self, network_name: str) -> str:
        return self.endpoint.instance_type or NETWORKS[network_name].inference_instance_type

    def transform_instance_type(self, network_name: str) -> str:
        return self.batch.instance_type or NETWORKS[network_name].inference_instance_type

    def deploy_subject(self) -> str | None:
        """The OIDC `sub` its deploy role trusts, or None for a stage GitHub does not deploy."""
        if self.github is None or self.github_repository is None:
            return None
        return self.github.subject(self.github_repository)

    def served_model_package_group(self, network: str) -> str:
        """The registry group whose approved versions the stage's endpoints serve: its own (a
        name), or its promotion source's, in that stage's account (an ARN)."""
        if self.promotion_source is not None:
            return self.promotion_source.model_package_group_arn(network)
        return naming.model_package_group_name(self.prefix(), network)

    @property
    def captures_data(self) -> bool:
        """Whether endpoints record traffic: serverless ones cannot, and 0% records none. Without
        capture a stage has no drift monitor."""
        return self.endpoint.serverless is None and self.endpoint.data_capture_percent > 0

    @property
    def trains(self) -> bool:
        """Whether it has training pipelines and a registry: not when it promotes from another."""
        return self.promotion_source is None

    @property
    def retrains_on_drift(self) -> bool:
        """Whether its drift alarms start a training pipeline (its own, or its promotion source's)."""
        return self.captures_data and self.monitor.retrain_on_drift


def _describe(error: ValidationError, stage: str) -> str:
    problems = []
    for issue in error.errors():
        location = ".".join(str(part) for part in issue["loc"])
        key = f"stages.{stage}.{location}" if location else f"stages.{stage}"
        problems.append(f"{key}: {issue['msg']}")
    return "invalid stage configuration in cdk.json: " + "; ".join(problems)


def parse_stage_config(
    stages: Any, stage: str, project: str = DEFAULT_PROJECT, github_repository: str | None = None
) -> StageConfig:
    """Validates `stages[stage]` from cdk.json context and returns it typed."""
    if not isinstance(stages, dict) or not stages:
        raise ConfigError("cdk.json context key 'stages' must be a non-empty object of stage configs")
    if stage not in stages:
        raise ConfigError(
            f"unknown stage {stage!r} (context key 'stage'); defined in cdk.json 'stages': {', '.join(sorted(stages))}"
        )
    raw = stages[stage]
    if not isinstance(raw, dict):
        raise ConfigError(f"stages.{stage} must be an object, got {type(raw).__name__}")
    for key in _DERIVED_KEYS:
        if key in raw:
            raise ConfigError(
                f"stages.{stage}.{key}: not allowed here (the stage name is its key; the rest is derived)"
            )
    try:
        return StageConfig(
            name=stage,
            project=project,
            github_repository=github_repository,
            promotion_source=_promotion_source(stages, stage, project),
            promotion_consumers=_promotion_consumers(stages, stage, project),
            **raw,
        )
    except ValidationError as error:
        raise ConfigError(_describe(error, stage)) from None


def _promotion_source(stages: dict[str, Any], stage: str, project: str) -> PromotionSource | None:
    """The stage `stage` promotes from, checked against what serving its versions needs."""
    raw = stages[stage]
    source = raw.get("promote_from")
    if source is None:
        return None
    key = f"stages.{stage}.promote_from"
    if source == stage or source not in stages or not isinstance(stages[source], dict):
        raise ConfigError(f"{key}: {source!r} is not another stage of cdk.json ({', '.join(sorted(stages))})")
    origin = stages[source]
    if origin.get("promote_from") is not None:
        raise ConfigError(f"{key}: {source} promotes from another stage itself; promote from where models are trained")
    if set_here := [name for name in TRAINING_ONLY_KEYS if name in raw]:
        raise ConfigError(
            f"stages.{stage}.{set_here[0]}: {stage} promotes from {source} and trains nothing (no pipelines, "
            f"no registry); set it on {source}, where {stage}'s models are trained and approved"
        )
    if not origin.get("account") or not raw.get("account"):
        raise ConfigError(f"{key}: both {stage} and {source} need their account (each grants the other by it)")
    if origin.get("region") != raw.get("region"):
        raise ConfigError(f"{key}: {source} is in another region; a model package is served in its own region")
    if origin.get("removal_policy", "retain") != "retain":
        raise ConfigError(
            f"{key}: {source} has removal_policy {origin['removal_policy']!r}; {stage}'s endpoints read its "
            "artifacts whenever an instance starts, so it must retain them"
        )
    missing = sorted(set(raw.get("networks", NETWORKS)) - set(origin.get("networks", NETWORKS)))
    if missing:
        raise ConfigError(f"{key}: {source} does not train {', '.join(missing)}")
    return PromotionSource(
        stage=source, prefix=f"{project}-{source}", account=origin["account"], region=origin["region"]
    )


def _promotion_consumers(stages: dict[str, Any], stage: str, project: str) -> tuple[PromotionConsumer, ...]:
    """The stages whose endpoints serve `stage`'s versions, each read whole (`stage` admits the
    drift alarms they send); their accounts are checked by their own promotion source."""
    consumers = [
        parse_stage_config(stages, name, project)
        for name, other in sorted(stages.items())
        if name != stage and isinstance(other, dict) and other.get("promote_from") == stage
    ]
    return tuple(
        PromotionConsumer(
            stage=consumer.name,
            prefix=consumer.prefix(),
            account=consumer.account or "",
            retrained_networks=consumer.networks if consumer.retrains_on_drift else (),
        )
        for consumer in consumers
    )


def load_stage_config(node: Any) -> StageConfig:
    """Reads the stage chosen with `-c stage=NAME` from a CDK app's context."""
    stage = node.try_get_context("stage")
    if not isinstance(stage, str) or not stage:
        raise ConfigError("context key 'stage' must name a stage, e.g. -c stage=dev")
    project = node.try_get_context("project") or DEFAULT_PROJECT
    config = parse_stage_config(
        node.try_get_context("stages"), stage, project, node.try_get_context("github_repository")
    )
    if config.github is not None and config.github_repository is None:
        raise ConfigError(f"stages.{stage}.github: needs cdk.json's github_repository (ORG/REPO) to name who deploys")
    return config
