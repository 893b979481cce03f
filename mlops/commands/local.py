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
from mlops.commands import (
    NETWORK_HELP,
    IamOption,
    LimitOption,
    PortOption,
    RunParamOption,
    checked_run_options,
    known_network,
)
from mlops.errors import UsageError
from mlops.failures import keep_logs_in
from mlops.local.progress import progress_view
from mlops.local.report import ReportFolder
from mlops.local.run import LocalRun
from mlops.local.summary import summary_of
from mlops.phases import run_phases
from mlops.stages import LOCAL_STAGE, enabled_network, stage_config

DEFAULT_REPORT_ROOT = Path("mlops-local-report")

app = typer.Typer()


@app.command()
def local(
    ctx: typer.Context,
    network: Annotated[str, typer.Argument(help=NETWORK_HELP)] = "cnn",
    network_option: Annotated[
        str | None, typer.Option("--network", hidden=True, help="the old form: the network is an argument now")
    ] = None,
    port: PortOption = None,
    param: RunParamOption = None,
    limit: LimitOption = None,
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
    iam: IamOption = True,
    drift: Annotated[
        bool,
        typer.Option(
            "--drift",
            help="then held-out and shifted traffic, the drift monitor on each, its alarm and the retraining it starts",
        ),
    ] = False,
    tune: Annotated[
        bool,
        typer.Option(
            "--tune",
            help="run the network's tuning pipeline instead: trials of the stage's ranges, the best through the gate",
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
    if network_option is not None:
        raise UsageError(f"mlops local takes the network as an argument now: mlops local {network_option}")
    spec = known_network(network)
    config = stage_config(LOCAL_STAGE)
    enabled_network(config, spec.name)
    overrides = checked_run_options(config, spec.name, param, limit, port, tune=tune)
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
        tune=tune,
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
