"""What `mlops local` shows on the terminal once it has run: the quality on held-out data against
the gate, the explanations' rankings, the samples' predictions beside the truth, each phase's time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from mlops.local.report import ReportFolder, RunReport


def summary_of(console: Console, report: RunReport, folder: ReportFolder) -> None:
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
    console.print(
        f"report: {folder.path / 'report.md'}; logs: {folder.logs_dir}/, {folder.pipeline_dir}/*/*/log.txt",
        highlight=False,
        soft_wrap=True,
    )
