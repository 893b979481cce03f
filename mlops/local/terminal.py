"""What `mlops local` shows on the terminal: pipeline steps as they run, the stack outputs, the summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from mlops.local.pipeline_executor import StepOutcome
    from mlops.local.report import ReportFolder, RunReport

# Outputs CDK adds on its own to carry cross-stack references; not for people.
_CDK_EXPORT_OUTPUT = "ExportsOutput"

console = Console()


class ConsoleReporter:
    """Pipeline steps on the terminal: a line when each starts and ends, and the jobs' logs."""

    def __init__(self, show_logs: bool) -> None:
        self.show_logs = show_logs

    def step_started(self, step: str, step_type: str, detail: str) -> None:
        console.print(f"  [bold]▶ {escape(step)}[/] ({step_type}) {escape(detail)}", highlight=False)

    def step_log(self, step: str, line: str) -> None:
        if self.show_logs:
            console.print(f"    {step} │ {line}", style="dim", markup=False, highlight=False, soft_wrap=True)

    def step_ended(self, outcome: StepOutcome) -> None:
        mark = "[green]✓[/]" if outcome.status == "Succeeded" else "[red]✗[/]"
        console.print(
            f"  {mark} {escape(outcome.step)} {outcome.status} [dim]({outcome.seconds:.1f} s)[/] "
            f"{escape(outcome.detail)}",
            highlight=False,
            soft_wrap=True,
        )


def echo(line: str) -> None:
    console.print(f"  {line}", style="dim", markup=False, highlight=False, soft_wrap=True)


def outputs_table(outputs: dict[str, dict[str, str]]) -> Table:
    table = Table(title="Stack outputs")
    table.add_column("stack", no_wrap=True)
    table.add_column("output", no_wrap=True)
    table.add_column("value", overflow="fold")
    for stack in sorted(outputs):
        for key, value in sorted(outputs[stack].items()):
            if not key.startswith(_CDK_EXPORT_OUTPUT):
                table.add_row(stack, key, value)
    return table


def summary_of(report: RunReport, folder: ReportFolder) -> None:
    quality = report.quality
    if quality["value"] is not None:
        console.print(
            f"[bold]{quality['metric']} = {quality['value']:.4f}[/] on held-out data "
            f"(quality gate {quality['comparison']} {quality['threshold']} and not worse than the champion: "
            f"{'passed' if quality['passed'] else 'failed'})",
            highlight=False,
        )
        if quality["champion"]:
            console.print(f"champion and challenger: {quality['champion']['summary']}", highlight=False)
    for ranking in (report.explanations or {}).get("summary", []):
        entries = ", ".join(f"{entry['name']} {entry['value']:.3g}" for entry in ranking["top"][:3])
        console.print(f"explanations: {ranking['title']}: {entries}", highlight=False, markup=False)
    if report.comparisons:
        console.print(
            f"held-out test samples through /endpoints/{report.endpoint_name}/invocations: {report.sample_summary}",
            highlight=False,
        )
        table = Table()
        for column in ("test sample", "truth", "prediction"):
            table.add_column(column, overflow="fold")
        for row in report.comparisons:
            table.add_row(str(row.index), row.truth, row.prediction)
        console.print(table)
    times = Table(title="Time per phase")
    times.add_column("phase")
    times.add_column("seconds", justify="right")
    times.add_column("status")
    for phase in report.phases:
        times.add_row(phase["phase"], f"{phase['seconds']:.1f}", phase["status"])
    console.print(times)
    console.print(f"report: {folder.path / 'report.md'}", highlight=False)
