"""A pipeline step's log: where SageMaker writes it in AWS, and where the local AWS keeps it.

In AWS a job's container output goes to CloudWatch Logs: log group `/aws/sagemaker/TrainingJobs`
or `/aws/sagemaker/ProcessingJobs`, one stream per instance named `<job name>/algo-<n>-<epoch
seconds>` (SageMaker's documented names). The local AWS of `mlops up` runs each job here and keeps
its output in the job's folder, `<environment folder>/pipeline/<execution id>/<step>/log.txt`.

    source = cloudwatch_source(logs_client, "TrainingJob", "pipelines-abc-Train-xyz")
    source = file_source(Path(".../log.txt"))
    for line in source.new_lines(): ...     # what was written since the last call
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

LOG_GROUPS = {"TrainingJob": "/aws/sagemaker/TrainingJobs", "ProcessingJob": "/aws/sagemaker/ProcessingJobs"}


class LogSource(Protocol):
    def new_lines(self, final: bool = False) -> Iterator[str]:
        """The lines written since the last call (all of them, the first time); `final`: the job
        has ended, so a last line without its newline is complete too."""
        ...


@dataclass
class FileSource:
    path: Path
    _offset: int = 0

    def new_lines(self, final: bool = False) -> Iterator[str]:
        if not self.path.exists():
            return
        with self.path.open("rb") as file:
            file.seek(self._offset)
            chunk = file.read()
        # A line still being written waits for the next call, unless the job has ended.
        end = len(chunk) if final else chunk.rfind(b"\n") + 1
        if end == 0:
            return
        self._offset += end
        yield from chunk[:end].decode(errors="replace").removesuffix("\n").split("\n")


@dataclass
class CloudWatchSource:
    logs: Any
    group: str
    job_name: str
    _tokens: dict[str, str] = field(default_factory=dict)

    def new_lines(self, final: bool = False) -> Iterator[str]:
        pages = self.logs.get_paginator("describe_log_streams").paginate(
            logGroupName=self.group, logStreamNamePrefix=f"{self.job_name}/"
        )
        streams = sorted(stream["logStreamName"] for page in pages for stream in page["logStreams"])
        for stream in streams:
            prefix = f"[{stream.removeprefix(self.job_name + '/')}] " if len(streams) > 1 else ""
            while True:
                request = {"logGroupName": self.group, "logStreamName": stream, "startFromHead": True}
                if stream in self._tokens:
                    request["nextToken"] = self._tokens[stream]
                answer = self.logs.get_log_events(**request)
                for event in answer["events"]:
                    yield prefix + event["message"].rstrip("\n")
                # The same token back means the end of what the stream holds so far.
                if answer["nextForwardToken"] == self._tokens.get(stream):
                    break
                self._tokens[stream] = answer["nextForwardToken"]


def cloudwatch_source(logs: Any, kind: str, job_name: str) -> CloudWatchSource:
    """The log of a job of `kind` (TrainingJob, ProcessingJob) named `job_name`, in CloudWatch Logs."""
    return CloudWatchSource(logs, LOG_GROUPS[kind], job_name)
