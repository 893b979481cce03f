"""`mlops local`: the whole project on this machine, with no AWS account.

The command checks its input (a bad one is one line and exit code 2, before anything starts),
runs the phases of a `LocalRun` (`mlops.local.run`) in front of a view of their progress
(`mlops.local.progress`: live lines on a terminal, plain lines elsewhere), then writes the report
folder (`mlops.local.report`) and shows its summary. Whatever happens (a failure, Ctrl-C) every
process it started stops, the report folder keeps what was produced, and the next run starts
from nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mlops.batch import TransformRequest
from mlops.commands import NETWORK_HELP, known_network
from mlops.errors import UsageError
from mlops.failures import keep_logs_in
from mlops.local.moto import check_port
from mlops.local.progress import progress_view
from mlops.local.report import ReportFolder
from mlops.local.run import LocalRun
from mlops.local.summary import summary_of
from mlops.param_option import parse_parameters
from mlops.phases import run_phases
from mlops.stages import LOCAL_STAGE, enabled_network, stage_config

DEFAULT_REPORT_ROOT = Path("mlops-local-report")

app = typer.Typer()


@app.command()
def local(
    ctx: typer.Context,
    network: Annotated[str, typer.Option(help=NETWORK_HELP)] = "cnn",
    port: Annotated[
        int | None, typer.Option(help="port of the local AWS (moto) server (default: a free one)", show_default=False)
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            metavar="NAME=VALUE",
            help="a hyperparameter (epochs=3) or pipeline parameter (QualityThreshold=0.9) of this run; repeatable",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="at most this many examples per data channel (a quick run)", show_default=False)
    ] = None,
    report_dir: Annotated[
        Path | None,
        typer.Option(help=f"where the report goes (default: ./{DEFAULT_REPORT_ROOT}/NETWORK)", show_default=False),
    ] = None,
    logs: Annotated[
        bool,
        typer.Option(
            "--logs",
            help="also print here what the CDK CLI, the data preparation and the jobs print "
            "(always written to the report folder's logs/ and each job's log.txt)",
        ),
    ] = False,
    iam: Annotated[
        bool, typer.Option(help="enforce the deployed IAM policies on every call (--no-iam to debug)")
    ] = True,
    drift: Annotated[
        bool,
        typer.Option(
            "--drift",
            help="then held-out and shifted traffic, the drift monitor on each, its alarm and the retraining it starts",
        ),
    ] = False,
    drift_shift: Annotated[
        str | None,
        typer.Option(
            help="the change of the shifted traffic (default: the task's first; see Task.drift_shifts)",
            show_default=False,
        ),
    ] = None,
    transform: Annotated[
        str | None,
        typer.Option(
            metavar="INPUT",
            help="then score INPUT (.jsonl/.csv records: docs/batch.md) with the batch transform pipeline",
            show_default=False,
        ),
    ] = None,
) -> None:
    """The whole project on this machine, with no AWS account: deploy every stack to a local AWS,
    train through the pipeline, register, deploy and invoke the endpoint, and report."""
    spec = known_network(network)
    config = stage_config(LOCAL_STAGE)
    enabled_network(config, spec.name)
    overrides = parse_parameters(config, spec.name, param or [])
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")
    if port is not None:
        check_port(port)
    shifts = list(spec.task.drift_shifts())
    if drift_shift is not None and drift_shift not in shifts:
        raise UsageError(f"--drift-shift {drift_shift!r}: the {spec.task.name} task's shifts are {', '.join(shifts)}")
    if drift and not config.captures_data:
        raise UsageError(f"--drift: stage {config.name} captures no endpoint traffic")
    batch = TransformRequest.of(spec.name, transform, version=None, content_type=None) if transform else None
    folder = ReportFolder.claim(report_dir or DEFAULT_REPORT_ROOT / spec.name)
    keep_logs_in(ctx, folder.path)
    console = Console()  # a terminal or not, as this run's stdout is now
    console.print(f"[bold]mlops local[/] — network [bold]{spec.name}[/]: {spec.summary}", highlight=False)
    view = progress_view(console, show_logs=logs)
    timings: dict[str, float] = {}
    run = LocalRun(
        spec,
        config,
        port=port,
        overrides=overrides,
        limit=limit,
        folder=folder,
        view=view,
        enforce_iam=iam,
        drift_shift=(drift_shift or shifts[0]) if drift else None,
        transform=batch,
    )
    try:
        with view, run:
            run_phases(view, run.phases, timings)
    except BaseException as error:
        interrupted = isinstance(error, KeyboardInterrupt)
        run.report.outcome = "interrupted" if interrupted else "failed"
        run.report.failure = "Ctrl-C" if interrupted else str(error) or type(error).__name__
        raise
    else:
        run.report.outcome = "succeeded"
    finally:
        run.report.take_phases([phase.name for phase in run.phases], timings)
        folder.write(run.report)
        if run.report.outcome != "succeeded":
            console.print(f"everything it started has stopped; what it produced is in {folder.path}", highlight=False)
    summary_of(console, run.report, folder)
    console.print(
        f"done in {run.report.total_seconds:.1f} s; the local AWS and the endpoint have stopped, "
        "and the local AWS's state with them",
        highlight=False,
    )
