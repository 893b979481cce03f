"""Stage configuration: every shipped stage loads, and each kind of mistake names the bad key."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest
from synth_support import CDK_CONTEXT, app_module, new_app

from infra.config import ConfigError, load_stage_config, parse_stage_config
from training.networks import NETWORKS

STAGES: dict[str, Any] = CDK_CONTEXT["stages"]
MINIMAL = {"region": "us-east-1", "networks": ["cnn"]}


def _stages_with(**overrides: Any) -> dict[str, Any]:
    return {"dev": {**MINIMAL, **overrides}}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_shipped_stage_loads(stage: str) -> None:
    config = parse_stage_config(STAGES, stage)
    assert config.name == stage
    assert config.prefix() == f"mlops-{stage}"


def test_local_stage_targets_the_moto_account_and_is_destroyable() -> None:
    config = parse_stage_config(STAGES, "local")
    assert (config.account, config.region, config.destroy_on_removal) == ("123456789012", "us-east-1", True)


def test_prod_retains_its_data() -> None:
    assert parse_stage_config(STAGES, "prod").destroy_on_removal is False


def test_unknown_stage_lists_the_defined_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown stage 'qa'.*defined in cdk.json 'stages': dev, local, prod"):
        parse_stage_config(STAGES, "qa")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"regoin": "us-east-1"}, r"stages\.dev\.regoin: Extra inputs are not permitted"),
        ({"region": "Frankfurt"}, r"stages\.dev\.region: String should match pattern"),
        ({"networks": ["cnn", "gan"]}, r"stages\.dev\.networks: .*unknown network\(s\) gan"),
        ({"networks": []}, r"stages\.dev\.networks: Tuple should have at least 1 item"),
        ({"removal_policy": "delete"}, r"stages\.dev\.removal_policy: Input should be 'retain' or 'destroy'"),
        ({"account": "12345"}, r"stages\.dev\.account: String should match pattern"),
        (
            {"checkpoint_expiry_days": 0},
            r"stages\.dev\.checkpoint_expiry_days: Input should be greater than or equal to 1",
        ),
        (
            {"noncurrent_version_expiry_days": "soon"},
            r"stages\.dev\.noncurrent_version_expiry_days: Input should be a valid integer",
        ),
        (
            {"endpoint": {"max_instances": 0}},
            r"stages\.dev\.endpoint\.max_instances: Input should be greater than or equal to 1",
        ),
        (
            {"training": {"max_run_seconds": 7200, "max_wait_seconds": 3600}},
            r"stages\.dev\.training: .*max_wait_seconds must be >= max_run_seconds",
        ),
        (
            {"hyperparameters": {"cnn": {"epochs": "many"}}},
            r"stages\.dev\.hyperparameters: .*epochs must be an integer",
        ),
        ({"hyperparameters": {"cnn": {"epochz": 3}}}, r"stages\.dev\.hyperparameters: .*no hyperparameter 'epochz'"),
        ({"retrain_schedule": "weekly"}, r"stages\.dev\.retrain_schedule: String should match pattern"),
        (
            {"account": "111122223333", "github": {"branch": "main", "environment": "dev"}},
            r"stages\.dev\.github: .*name exactly one of environment .* or branch",
        ),
        ({"account": "111122223333", "github": {}}, r"stages\.dev\.github: .*name exactly one of environment"),
        ({"github": {"branch": "main"}}, r"stages\.dev: .*a stage deployed from GitHub needs its account"),
        (
            {"account": "111122223333", "github": {"environment": "prod", "oidc_provider": "reuse"}},
            r"stages\.dev\.github\.oidc_provider: Input should be 'create' or 'import'",
        ),
        ({"github_repository": "org/repo"}, r"stages\.dev\.github_repository: not allowed here"),
        (
            {"vpc": {"subnet_ids": ["subnet-0a1b"], "security_group_ids": ["default"]}},
            r"stages\.dev\.vpc\.security_group_ids\.0: String should match pattern",
        ),
        (
            {"vpc": {"subnet_ids": [], "security_group_ids": ["sg-0e3f"]}},
            r"stages\.dev\.vpc\.subnet_ids: Tuple should have at least 1 item",
        ),
        (
            {
                "vpc": {"subnet_ids": ["subnet-0a1b"], "security_group_ids": ["sg-0e3f"]},
                "endpoint": {"serverless": {"memory_size_mb": 2048}},
            },
            r"stages\.dev: .*vpc cannot be combined with endpoint\.serverless: SageMaker Serverless Inference",
        ),
    ],
)
def test_a_malformed_stage_names_the_bad_key(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_stage_config(_stages_with(**overrides), "dev")


def test_a_stage_that_lists_no_networks_enables_every_registered_one() -> None:
    assert parse_stage_config({"dev": {"region": "us-east-1"}}, "dev").networks == tuple(NETWORKS)
    for stage in CDK_CONTEXT["stages"]:
        assert parse_stage_config(CDK_CONTEXT["stages"], stage).networks == tuple(NETWORKS), stage


def test_a_stages_endpoint_instance_type_replaces_each_networks_own() -> None:
    """Without `endpoint.instance_type` each network is served on its registry entry's instance
    type; with one, every network of the stage is served on it (the endpoint stacks synthesize
    whatever this resolves to: tests/test_endpoint_stack.py)."""
    own = parse_stage_config({"dev": {"region": "us-east-1"}}, "dev")
    assert {name: own.endpoint_instance_type(name) for name in NETWORKS} == {
        name: network.inference_instance_type for name, network in NETWORKS.items()
    }
    chosen = "ml.m5.large"
    assert chosen not in {network.inference_instance_type for network in NETWORKS.values()}
    overridden = parse_stage_config({"dev": {"region": "us-east-1", "endpoint": {"instance_type": chosen}}}, "dev")
    assert {overridden.endpoint_instance_type(name) for name in NETWORKS} == {chosen}


def test_a_missing_required_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"stages\.dev\.region: Field required"):
        parse_stage_config({"dev": {"networks": ["cnn"]}}, "dev")


def test_the_stage_name_comes_from_its_key_only() -> None:
    with pytest.raises(ConfigError, match=r"stages\.dev\.name: not allowed"):
        parse_stage_config(_stages_with(name="prod"), "dev")


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        (None, "'stages' must be a non-empty object"),
        ({}, "'stages' must be a non-empty object"),
        ({"dev": ["us-east-1"]}, r"stages\.dev must be an object, got list"),
    ],
)
def test_stages_of_the_wrong_shape(stages: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_stage_config(stages, "dev")


def _node(context: dict[str, Any]) -> SimpleNamespace:
    return SimpleNamespace(try_get_context=context.get)


def test_a_stage_deployed_from_github_needs_the_repository_named() -> None:
    context = {**copy.deepcopy(CDK_CONTEXT), "stage": "prod"}
    del context["github_repository"]
    with pytest.raises(ConfigError, match=r"stages\.prod\.github: needs cdk\.json's github_repository"):
        load_stage_config(_node(context))


def test_load_reads_stage_and_project_from_the_app_context() -> None:
    context = {**copy.deepcopy(CDK_CONTEXT), "stage": "prod", "project": "vision"}
    config = load_stage_config(_node(context))
    assert (config.name, config.prefix()) == ("prod", "vision-prod")


def test_a_cdk_app_with_an_unknown_stage_fails_before_any_stack(tmp_path) -> None:
    app = new_app("qa", tmp_path)
    with pytest.raises(ConfigError, match=r"unknown stage 'qa'"):
        app_module().compose(app, load_stage_config(app.node))
    assert app.node.children == []


def test_load_without_a_stage_says_how_to_choose_one() -> None:
    with pytest.raises(ConfigError, match=r"context key 'stage' must name a stage, e\.g\. -c stage=dev"):
        load_stage_config(_node({"stages": STAGES}))
