"""The local AWS after `mlops up`'s phases: it runs what is started in it and serves what is deployed
to it, until `mlops down`.

    environment = LocalEnvironment(run, reporter)   # `run`: the LocalRun whose phases have run
    environment.serve()                              # until SIGTERM (mlops down) ends this process

What SageMaker does in AWS after a call returns, this does here:

- StartPipelineExecution (from `mlops train`, `mlops monitor`, boto3 or the AWS CLI) returns at
  once with the execution Executing, as in AWS (`mlops.local.moto_service`); the execution is
  queued and run by the local executor, one at a time in the order started (SageMaker runs
  executions of a pipeline concurrently, up to its ParallelismConfiguration; this machine has
  the cores for one). Its steps' status is answered by ListPipelineExecutionSteps, its jobs'
  folders and logs are under the environment's folder (`pipeline/<execution id>/<step>/`);
- an endpoint stack deployed (`mlops deploy`) is served by a local endpoint, replaced when the
  stack names another version and stopped when it is deleted (`mlops.local.endpoint_fleet`).

Executions run in the main thread, so that the SIGTERM of `mlops down` stops a running job as
Ctrl-C stops one in `mlops local` (the execution ends Stopped); the endpoints are reconciled by a
thread of their own.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from mlops.local.endpoint_fleet import EndpointFleet
from mlops.local.moto_service import service_extensions
from mlops.local.pipeline_executor import LocalPipelineExecutor, StepFailed, StepReporter
from mlops.local.pipeline_references import DefinitionError

if TYPE_CHECKING:
    from mlops.local.run import LocalRun

log = logging.getLogger(__name__)
RECONCILE_SECONDS = 1.0


class LocalEnvironment:
    def __init__(self, run: LocalRun, reporter: StepReporter) -> None:
        self._run = run
        self.fleet = EndpointFleet(run.aws, run.roles, run.config, run.folder.path, say=log.info)
        served = run.served
        if served is not None:
            self.fleet.adopt(run.network.name, *served)
        self._executor = LocalPipelineExecutor(run.aws, run.folder.pipeline_dir, reporter, roles=run.roles)
        self._started: queue.Queue[str] = queue.Queue()
        self._stopping = threading.Event()

    def serve(self) -> None:
        """Runs started executions and keeps the endpoints until an exception (SIGTERM's) ends it."""
        reconciler = threading.Thread(target=self._reconcile, name="endpoint-fleet", daemon=True)
        with service_extensions(self._started.put, self.fleet.url):
            reconciler.start()
            try:
                while True:
                    try:
                        arn = self._started.get(timeout=RECONCILE_SECONDS)
                    except queue.Empty:
                        continue
                    self._execute(arn)
            finally:
                self._stopping.set()
                reconciler.join()
                self.fleet.stop()

    def _execute(self, arn: str) -> None:
        log.info("execution %s started", arn)
        try:
            run = self._executor.adopt(arn)
        except (DefinitionError, BotoCoreError, ClientError) as error:
            self._executor.fail_unstarted(arn, f"cannot run this execution here: {error}")
            log.error("execution %s refused: %s", arn, error)
            return
        try:
            self._executor.execute(run)
        except StepFailed as failure:
            log.info("execution %s failed: %s", arn, failure)
            return
        registered = f", registered {run.registered_model_arn}" if run.registered_model_arn else ""
        log.info("execution %s succeeded%s", arn, registered)

    def _reconcile(self) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self.fleet.reconcile()
            except Exception:
                log.exception("reconciling the endpoints failed; trying again")
            self._stopping.wait(max(0.0, RECONCILE_SECONDS - (time.monotonic() - started)))
