"""The CDK app of `app.py`, synthesized in-process once per stage and test session.

Same context as the CLI gets from cdk.json (feature flags included), nag checks on, so a
stage that synthesizes here also passes `cdk synth`.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import aws_cdk as cdk
from aws_cdk.assertions import Template
from constructs import IConstruct

from infra import naming
from infra.config import StageConfig, load_stage_config, parse_stage_config

REPO_ROOT = Path(__file__).resolve().parent.parent
CDK_CONTEXT: dict[str, Any] = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]


def logical_id_of(construct: IConstruct) -> str:
    """The logical id of `construct` in its stack's template: its own, or its CloudFormation
    resource's (an L2 construct's default child)."""
    element = construct if isinstance(construct, cdk.CfnElement) else construct.node.default_child
    if not isinstance(element, cdk.CfnElement):
        raise TypeError(f"{construct.node.path} holds no CloudFormation resource")
    return cdk.Stack.of(element).get_logical_id(element)


@functools.cache
def app_module() -> ModuleType:
    """`app.py`, imported by path (it is a script at the repository root, not a package)."""
    spec = importlib.util.spec_from_file_location("mlops_cdk_app", REPO_ROOT / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Synthesized:
    config: StageConfig
    stacks: Any  # app.Stacks
    outdir: Path

    def template(self, stack: cdk.Stack) -> Template:
        return Template.from_stack(stack)

    def template_json(self, stack: cdk.Stack) -> dict[str, Any]:
        return json.loads((self.outdir / f"{stack.artifact_id}.template.json").read_text())

    @property
    def template_files(self) -> list[Path]:
        return sorted(self.outdir.glob("*.template.json"))

    @property
    def validation_report(self) -> dict[str, Any]:
        return json.loads((self.outdir / "validation-report.json").read_text())


def new_app(stage: str, outdir: Path, **extra_context: Any) -> cdk.App:
    return cdk.App(context={**CDK_CONTEXT, "stage": stage, **extra_context}, outdir=str(outdir))


@functools.cache
def synthesized(stage: str) -> Synthesized:
    outdir = Path(tempfile.mkdtemp(prefix=f"synth-{stage}-"))
    atexit.register(shutil.rmtree, outdir, ignore_errors=True)
    app = new_app(stage, outdir)
    config = load_stage_config(app.node)
    stacks = app_module().compose(app, config)
    app.synth()
    return Synthesized(config=config, stacks=stacks, outdir=outdir)


def served_version_arn(stage: str, network: str, version: int, account: str = "123456789012") -> str:
    """A model package version ARN that the stage's endpoint stacks accept: of the stage's own
    group (in `account` where the stage names none), or of its promotion source's group, in the
    source's account."""
    config = parse_stage_config(CDK_CONTEXT["stages"], stage, CDK_CONTEXT["project"])
    source = config.promotion_source
    if source is not None:
        prefix, account, region = source.prefix, source.account, source.region
    else:
        prefix, account, region = config.prefix(), config.account or account, config.region
    group = naming.model_package_group_name(prefix, network)
    return f"arn:aws:sagemaker:{region}:{account}:model-package/{group}/{version}"
