"""The phases of one `mlops local` run, and what they share.

Each step is a timed `Phase` of `LocalRun.phases`:

    1. start an embedded moto server on 127.0.0.1 (the local AWS)
    2. `cdk synth` of the app, once, while `cdk bootstrap` runs; 3. `cdk deploy` of every stack
       of the `local` stage from that assembly, with the real CDK CLI
    4. upload the network's offline dataset to the data bucket (prepared by a child process
       started with phase 2: mlops.local.early_data)
    5. run the network's training pipeline: its definition, from the template that deploy used, is
       created in moto (whose CloudFormation skips pipelines) and executed step by step here
       (`mlops.local.pipeline_executor`)
    6. approve the registered model version, 7. `cdk deploy` its endpoint stack (from the same
       assembly: see `LocalRun.expected_model_arn`)
    8. serve the registered model.tar.gz with the local endpoint (whose server process started
       with phase 5, to import TensorFlow while the pipeline's jobs start), 9. invoke it with
       held-out test samples (read by a child process started with phase 4, for the same reason)
       through the SageMaker Runtime path

and with a drift shift, three more: a window of held-out traffic and one of shifted traffic, each
checked by the monitor pipeline and its alarm, then the alarm's state change delivered to its
retraining rule (`mlops.local.drift`); with a batch input, the network's batch transform pipeline
on it (`mlops.local.transform`).

The phases tell the view (`mlops.local.progress`) what they did in a line or two; what the
programs they start print goes to the report folder's log files (`mlops.local.logs`).
"""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from inference.artifact import ArtifactError
from inference.client import EndpointRequestError, ModelError, invoke
from infra import naming
from infra.config import StageConfig
from mlops.batch import TransformRequest
from mlops.cdk import CdkCli
from mlops.endpoint_stacks import deploy_endpoint
from mlops.errors import RunFailed
from mlops.local import logs
from mlops.local.deployed_pipelines import create_stage_pipelines
from mlops.local.drift import DriftLoop, capture_target
from mlops.local.early_data import EarlyPreparation
from mlops.local.iam import RoleSessions, enforced_iam
from mlops.local.moto import LocalAws, moto_server
from mlops.local.permissions import write_permissions_report
from mlops.local.pipeline_executor import LocalPipelineExecutor, PipelineRun, StepFailed
from mlops.local.pipeline_references import DefinitionError
from mlops.local.progress import LiveProgress, PlainProgress, TrialRecorder
from mlops.local.report import ReportFolder, RunReport
from mlops.local.s3 import download_file
from mlops.local.samples import EarlySamples, compare, instances_request, summary
from mlops.local.transform import transform_phase
from mlops.phases import Phase
from mlops.registry import APPROVED, ModelVersion, model_versions, set_approval
from mlops.stages import LOCAL_STAGE
from training.networks import Network

if TYPE_CHECKING:
    from inference.local_endpoint import LocalEndpoint

HELD_OUT_SAMPLES = 10


class LocalRun:
    """The phases of one `mlops local` run and what they share; a context manager that stops
    everything the phases started (endpoint, moto server, child processes, temporary folders) on exit."""

    def __init__(
        self,
        network: Network,
        config: StageConfig,
        *,
        port: int | None,
        overrides: dict[str, Any],
        limit: int | None,
        folder: ReportFolder,
        view: PlainProgress | LiveProgress,
        enforce_iam: bool = True,
        drift_shift: str | None = None,
        transform: TransformRequest | None = None,
        tune: bool = False,
    ) -> None:
        self.network = network
        self.config = config
        self.port = port
        self.overrides = overrides
        self.limit = limit
        self.folder = folder
        self.view = view
        self.enforce_iam = enforce_iam
        self.drift_shift = drift_shift
        self.tune = tune
        self.report = RunReport(network)
        self._resources = ExitStack()
        self.logs = logs.RunLogs(folder.logs_dir, stream=view.log_line)
        self._resources.callback(self.logs.close)
        self._roles: RoleSessions | None = None
        self._aws: LocalAws | None = None
        self._cdk: CdkCli | None = None
        self._assembly: Path | None = None
        self._samples: EarlySamples | None = None
        self._preparation: EarlyPreparation | None = None
        self._channels: dict[str, Path] = {}
        self._moto_endpoint: str | None = None
        self._drift: DriftLoop | None = None
        self._pipeline_run: PipelineRun | None = None
        self._model: ModelVersion | None = None
        self._endpoint: LocalEndpoint | None = None
        self.phases = [
            Phase("Start the local AWS (moto server)", self.start_aws),
            Phase("Synthesize the app and bootstrap CDK in the local account", self.synth_and_bootstrap),
            Phase(f"Deploy every stack of the {LOCAL_STAGE} stage", self.deploy),
            Phase(f"Prepare the {network.offline_dataset} dataset and upload it", self.prepare_data),
            Phase(f"Run the {network.name} {'tuning' if tune else 'training'} pipeline", self.run_pipeline),
            Phase("Approve the registered model version", self.approve),
            Phase(f"Deploy the {network.name} endpoint stack", self.deploy_endpoint),
            Phase("Start the local endpoint on the registered model", self.start_endpoint),
            Phase("Invoke it with held-out test samples", self.invoke),
        ]
        if drift_shift is not None:
            self.phases += [
                Phase("Send held-out traffic, monitor it for drift", lambda: self.monitor_window("held-out", None)),
                Phase(
                    f"Send {drift_shift} traffic, monitor it for drift",
                    lambda: self.monitor_window(drift_shift, drift_shift),
                ),
                Phase("Deliver the drift alarm's state change to its retraining rule", self.retrain_on_drift),
            ]
        if transform is not None:
            self.phases.append(transform_phase(self, transform))

    def __enter__(self) -> LocalRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._resources.close()

    # ------------------------------------------------------------------------------ phases

    def start_aws(self) -> None:
        self._aws = self._resources.enter_context(moto_server(self.port))
        if self.enforce_iam:
            self._roles = self._resources.enter_context(enforced_iam(self._aws))
            # Written while the local AWS still runs (the report reads the deployed policies), however the run ends.
            self._resources.callback(
                write_permissions_report,
                self.folder.path,
                self._roles,
                network=self.network.name,
                networks=list(self.config.networks),
            )
            self.view.note(
                "IAM enforced: the harness signs as an administrator, the jobs and the pipeline as their roles"
            )
        else:
            self._roles = RoleSessions(self._aws)
        self._assembly = self._temporary_dir("mlops-cdk.out-")
        self._cdk = CdkCli(
            target=self._aws,
            stage=LOCAL_STAGE,
            output_dir=self._assembly,
            echo=self.logs.writer(logs.CDK),
            context={naming.model_package_context_key(self.network.name): self.expected_model_arn},
        )
        self.view.note(f"local AWS at {self._aws.endpoint_url}")

    def synth_and_bootstrap(self) -> None:
        self.logs.section(logs.DATA, f"preparing the {self.network.name} dataset")
        self._preparation = EarlyPreparation(
            self.network.name,
            self._temporary_dir("mlops-data-") / self.network.name,
            limit=self.limit,
            echo=self.logs.writer(logs.DATA),
        )
        self._resources.callback(self._preparation.stop)
        self.logs.section(logs.CDK, "cdk synth, and cdk bootstrap beside it")
        with self.logs.named_in_failures(logs.CDK):
            self._cdk = self.cdk.synth_and_bootstrap()  # from here on, the CLI deploys that assembly

    def deploy(self) -> None:
        endpoint_stack = naming.endpoint_stack_name(self.config.prefix(), self.network.name)
        stacks = [name for name in self.cdk.stack_names() if name != endpoint_stack]
        self.logs.section(logs.CDK, f"cdk deploy {' '.join(stacks)}")
        with self.logs.named_in_failures(logs.CDK):
            self.report.stack_outputs = self.cdk.deploy(stacks)
        self.view.note(f"{', '.join(stacks)} (their outputs: {self.folder.outputs_path.name} in the report folder)")

    def prepare_data(self) -> None:
        from mlops.datasets import preparer_for, upload_channels

        preparer = preparer_for(self.network.name)
        limit = f", at most {self.limit} per channel" if self.limit else ""
        self.view.note(f"{preparer.name}: {preparer.summary}{limit}")
        assert self._preparation is not None
        channels = self._channels = self._preparation.channels()
        self._samples = EarlySamples(channels["test"], self.network, HELD_OUT_SAMPLES)
        self._resources.callback(self._samples.stop)
        outputs = self.report.stack_outputs[naming.stack_name(self.config.prefix(), naming.STORAGE_STACK_SUFFIX)]
        bucket = outputs["DataBucketName"]
        upload_channels(channels, bucket=bucket, network=self.network.name, s3_client=self.aws.client("s3"))
        self.view.note(f"uploaded to s3://{bucket}/{self.network.name}/: {', '.join(sorted(channels))}")

    def run_pipeline(self) -> None:
        self._prepare_endpoint()
        assert self._assembly is not None
        try:
            created = create_stage_pipelines(self.aws, self._assembly, self.config.prefix())
            self.view.note(
                f"created in moto, whose CloudFormation skips them: {len(created.pipelines)} pipelines, "
                f"{len(created.groups)} model package groups"
            )
            trials = TrialRecorder(self.view)
            executor = LocalPipelineExecutor(self.aws, self.folder.pipeline_dir, trials, roles=self._roles)
            pipeline = (naming.tuning_pipeline_name if self.tune else naming.pipeline_name)(
                self.config.prefix(), self.network.name
            )
            run = self._pipeline_run = executor.start(
                pipeline,
                {name: str(value) for name, value in self.overrides.items()},
            )
        except (DefinitionError, BotoCoreError, ClientError) as error:
            raise RunFailed(f"cannot start the {self.network.name} pipeline: {error}") from None
        self.report.execution_id, self.report.parameters = run.execution_id, dict(run.parameters)
        given = ", ".join(f"{name}={value}" for name, value in self.overrides.items())
        self.view.note(
            f"execution {run.execution_id}" + (f", given {given}" if given else "") + " (every parameter: phases.json)"
        )
        try:
            executor.execute(run)
        except StepFailed as failure:
            raise RunFailed(
                f"the {run.pipeline} pipeline failed at step {failure.step} ({failure.step_type}): "
                f"{failure.reason}" + (f"\n{failure.hint}" if failure.hint else "")
            ) from None
        finally:
            self.report.take_pipeline_results(run, self.aws.client("s3"))
            self.report.take_trials(list(trials.trials.values()), run)
        if run.registered_model_arn is None:
            raise RunFailed(f"the {run.pipeline} pipeline succeeded but registered no model")

    def approve(self) -> None:
        assert self._pipeline_run is not None
        group = naming.model_package_group_name(self.config.prefix(), self.network.name)
        sagemaker = self.aws.client("sagemaker")
        model = next(
            version
            for version in model_versions(sagemaker, group)
            if version.arn == self._pipeline_run.registered_model_arn
        )
        if model.status == APPROVED:
            self.view.note(
                f"{group} version {model.version} is {APPROVED} already (the pipeline's ModelApprovalStatus)"
            )
        else:
            self.view.note(f"{group} version {model.version}: {model.status} -> {APPROVED}")
            model = set_approval(sagemaker, model, APPROVED)
        self._model = model
        self.report.model_package_arn, self.report.model_approval = model.arn, model.status

    def deploy_endpoint(self) -> None:
        assert self._model is not None
        if self._model.arn != self.expected_model_arn:
            self.view.note(f"the app was synthesized for {self.expected_model_arn}: synthesizing it again")
        self.logs.section(logs.CDK, f"cdk deploy of the {self.network.name} endpoint stack")
        with self.logs.named_in_failures(logs.CDK):
            outputs = deploy_endpoint(
                self.cdk, self.config, self.network.name, self._model, self.aws.client("sagemaker")
            )
        self._moto_endpoint = outputs.get("EndpointName")
        self.report.endpoint_stack = naming.endpoint_stack_name(self.config.prefix(), self.network.name)
        # The name the stack gives the endpoint, as AWS would create it (and `mlops invoke` calls
        # it); moto ignores EndpointName and makes up its own, shown in the stack's output.
        self.report.endpoint_name = naming.endpoint_name(self.config.prefix(), self.network.name)
        self.view.note(
            f"endpoint {self.report.endpoint_name} serves version {self._model.version} "
            f"(in moto: {outputs.get('EndpointName')})"
        )

    def _prepare_endpoint(self) -> None:
        """The endpoint's server starts here and imports TensorFlow: seconds on one core, while the
        pipeline's first job, importing TensorFlow itself, leaves the other idle. It loads the model
        in `start_endpoint`, once the pipeline has registered one."""
        from inference.local_endpoint import LocalEndpoint

        # One worker: a few held-out samples are sent.
        self._endpoint = LocalEndpoint(
            self.folder.model_path,
            naming.endpoint_name(self.config.prefix(), self.network.name),
            workers=1,
            log_path=self.logs.path(logs.ENDPOINT),
        )
        self._resources.callback(self._endpoint.stop)
        self._endpoint.prepare()

    def start_endpoint(self) -> None:
        assert self._model is not None and self._endpoint is not None
        package = self.aws.client("sagemaker").describe_model_package(ModelPackageName=self._model.arn)
        model_data = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
        # SageMaker downloads the endpoint's model as the model's execution role.
        execution_role = self.report.stack_outputs[naming.stack_name(self.config.prefix(), "execution-role")][
            "ExecutionRoleArn"
        ]
        assert self._roles is not None and self._moto_endpoint is not None
        download_file(self._roles.client(execution_role, "s3", "endpoint"), model_data, self.folder.model_path)
        capture = capture_target(self.aws, self._roles, self._moto_endpoint, execution_role)
        try:
            self._endpoint.capture = capture  # known once the endpoint stack is deployed; sent with the model
            self._endpoint.start()
        except ArtifactError as error:
            raise RunFailed(f"the registered model {model_data} cannot be served: {error}") from None
        # Where it came from is the Train step's line; the copy served is in the report folder.
        self.view.note(f"the registered model served at {self._endpoint.url} (a copy: model/model.tar.gz)")
        if capture:
            self.view.note(
                f"{capture.config.sampling_percentage}% of its invocations captured into "
                f"{capture.config.destination_uri}"
            )

    def invoke(self) -> None:
        assert self._samples is not None and self._endpoint is not None and self.report.endpoint_name
        samples, class_names = self._samples.result()
        try:
            answer = invoke(self.report.endpoint_name, instances_request(samples), endpoint_url=self._endpoint.url)
        except (ModelError, EndpointRequestError) as error:
            raise RunFailed(f"invoking {self.report.endpoint_name}: {error}") from None
        self.report.comparisons = compare(self.network, class_names or (), samples, answer["predictions"])
        self.report.sample_summary = summary(self.report.comparisons)
        self.view.note(self.report.sample_summary)

    def monitor_window(self, name: str, shift: str | None) -> None:
        """A window of held-out traffic (changed by the task's `shift`), then the monitor on it."""
        assert self._endpoint is not None and self.report.endpoint_name
        self._drift_loop().window(name, shift, self._channels, self.report.endpoint_name, self._endpoint.url)

    def retrain_on_drift(self) -> None:
        loop = self._drift_loop()
        if loop.retrain_if_alarmed() is None and loop.windows and loop.windows[-1].alarm_state != "ALARM":
            raise RunFailed(
                f"the {self.drift_shift} traffic did not set off {loop.alarm_name}: "
                f"{loop.windows[-1].report['decision']}"
            )

    # ------------------------------------------------------------------------------ helpers

    def _drift_loop(self) -> DriftLoop:
        if self._drift is None:
            assert self._assembly is not None and self._roles is not None
            executor = LocalPipelineExecutor(self.aws, self.folder.pipeline_dir, self.view, roles=self._roles)
            self._drift = DriftLoop(
                self.aws,
                self._roles,
                self._assembly,
                self.config,
                self.network,
                executor,
                self.folder.path,
                self.view.note,
            )
        return self._drift

    @property
    def aws(self) -> LocalAws:
        assert self._aws is not None, "the local AWS phase runs first"
        return self._aws

    @property
    def roles(self) -> RoleSessions:
        assert self._roles is not None, "the local AWS phase runs first"
        return self._roles

    @property
    def served(self) -> tuple[str, LocalEndpoint] | None:
        """The model package the endpoint phase serves and its local endpoint, once it serves it."""
        if self._model is None or self._endpoint is None or self.report.endpoint_name is None:
            return None
        return self._model.arn, self._endpoint

    @property
    def cdk(self) -> CdkCli:
        assert self._cdk is not None, "the local AWS phase runs first"
        return self._cdk

    @property
    def expected_model_arn(self) -> str:
        """What the Register step creates in this empty local AWS: version 1 of the network's group.
        The app is synthesized once, with the endpoint stack serving it; `deploy_endpoint`
        synthesizes again if the pipeline registers another."""
        group = naming.model_package_group_name(self.config.prefix(), self.network.name)
        return f"arn:aws:sagemaker:{self.aws.region}:{self.aws.account}:model-package/{group}/1"

    def _temporary_dir(self, prefix: str) -> Path:
        return Path(self._resources.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
