"""`mlops monitor NETWORK`: the drift monitor of a network's endpoint, in the AWS this shell points at.

    mlops monitor cnn                         # run it now: start <prefix>-cnn-monitor on the served version
    mlops monitor cnn --window-minutes 180    # ... over the last three hours of captured traffic
    mlops monitor cnn --reports               # recent drift reports: window, examples, decision
    mlops monitor cnn --last                  # the newest report in full: every test, what was unreadable

The version watched is the one the network's endpoint stack serves (its parameters, which `mlops
deploy` sets from the model package), so a manual run and the hourly schedule compare the same
model with the same baseline. In `mlops local --drift` the same pipeline runs on this machine
(`mlops.local.drift`).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.table import Table

from infra import naming
from mlops.aws import ShellAws
from mlops.cli_output import JsonOption, print_json
from mlops.commands import NetworkArgument
from mlops.commands.training import StageOption, resolve
from mlops.errors import RunFailed, UsageError
from mlops.monitoring import DriftReport, artifacts_bucket, drift_reports, monitor_parameters, monitored_version

app = typer.Typer()
console = Console()


@app.command()
def monitor(
    network: NetworkArgument,
    stage: StageOption = None,
    reports: Annotated[bool, typer.Option("--reports", help="list recent drift reports instead")] = False,
    last: Annotated[bool, typer.Option("--last", help="show the newest drift report in full instead")] = False,
    window_start: Annotated[
        str,
        typer.Option(help="ISO 8601 UTC start of the window (default: its minutes before its end)", show_default=False),
    ] = "",
    window_end: Annotated[
        str, typer.Option(help="ISO 8601 UTC end of the window (default: when the run starts)", show_default=False)
    ] = "",
    window_minutes: Annotated[
        int | None, typer.Option(help="length of the window (default: the stage's)", min=1, show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option(help="reports listed with --reports", min=1)] = 10,
    as_json: JsonOption = False,
) -> None:
    """Run NETWORK's drift monitor on its endpoint's captured traffic now, or show its reports."""
    config, spec = resolve(network, stage)
    if reports and last:
        raise UsageError("--reports and --last: choose one")
    if not config.captures_data:
        raise UsageError(
            f"stage {config.name} captures no endpoint traffic (serverless endpoints cannot), "
            "so it has no drift monitor"
        )
    aws = ShellAws(config.region)
    if reports or last:
        found = drift_reports(
            aws.client("s3"),
            artifacts_bucket(aws.client("cloudformation"), config),
            spec.name,
            limit=1 if last else limit,
        )
        if as_json:
            print_json([{"uri": item.uri, "written": item.written, "report": item.report} for item in found])
        elif not found:
            console.print(
                f"no drift report of {spec.name} yet: mlops monitor {spec.name} runs the monitor", highlight=False
            )
        elif last:
            _show(found[0])
        else:
            _list(found)
        return
    model, baseline = monitored_version(aws.client("cloudformation"), config, spec.name)
    pipeline = naming.monitor_pipeline_name(config.prefix(), spec.name)
    values = monitor_parameters(model, baseline, window_start, window_end, window_minutes)
    try:
        started = aws.client("sagemaker").start_pipeline_execution(
            PipelineName=pipeline,
            PipelineExecutionDescription="started by mlops monitor",
            PipelineParameters=[{"Name": name, "Value": value} for name, value in values.items()],
        )
    except (BotoCoreError, ClientError) as error:
        raise RunFailed(f"cannot start pipeline {pipeline}: {error}") from None
    console.print(
        f"started {pipeline} on the served model {model}\n  {started['PipelineExecutionArn']}\n"
        f"  its report: mlops monitor {spec.name} --last (once the run has ended)",
        highlight=False,
        soft_wrap=True,
    )


def _list(found: list[DriftReport]) -> None:
    table = Table(title="drift reports, newest first")
    for column in ("window (UTC)", "examples", "unreadable", "decision"):
        table.add_column(column, overflow="fold")
    for item in found:
        report = item.report
        table.add_row(
            f"{report['window']['start']} .. {report['window']['end']}",
            str(report["captures"]["examples"]),
            str(report["captures"]["unparsable"]["count"]),
            report["decision"],
        )
    console.print(table)


def _show(item: DriftReport) -> None:
    report = item.report
    console.print(f"{item.uri} (written {item.written:%Y-%m-%d %H:%M:%S} UTC)", highlight=False, soft_wrap=True)
    console.print(
        f"window {report['window']['start']} .. {report['window']['end']}: [bold]{report['decision']}[/]",
        highlight=False,
    )
    console.print(json.dumps(report["captures"], indent=2), markup=False, highlight=False)
    for test in report.get("tests", []):
        console.print(
            f"  {test['family']:<11} {test['name']:<44} statistic {test['statistic']:.4g}  p {test['p_value']:.3g}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
