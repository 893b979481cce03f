"""The report of one `mlops local` run: a folder for people (report.md) and for tools (JSON).

folder = ReportFolder.claim(Path("mlops-local-report/cnn"))   # emptied if an earlier run wrote it
report = RunReport(network)                                    # filled in as the phases go
folder.write(report)                                           # also after a failure or Ctrl-C

report.md             outcome, the quality metric on held-out data against the threshold and the
                      champion, the explanations' summary, predictions beside the truth, the time
                      of each phase and pipeline step, the plots (the explanations' first)
metrics.json          the Evaluate step's evaluation.json, the training job's final metrics, the gate
predictions.json      each sample sent to the endpoint: input, truth, the endpoint's answer
phases.json           seconds per phase and pipeline step, the outcome
outputs.json          the deployed stacks' outputs (bucket names, role ARNs, pipeline names)
plots/<step>/*.png    the PNGs the pipeline's jobs wrote (training curves, confusion matrix, ...)
model/model.tar.gz    the registered model artifact the local endpoint served
pipeline/<execution id>/<step>/   each job's folder, with its log.txt
logs/                 what the CDK CLI, the data preparation and the endpoint printed (mlops.local.logs)
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.definitions import training_pipeline as definition
from infra.definitions.tuning_step import TUNE_STEP
from mlops.errors import UsageError
from mlops.local.s3 import join_uri, read_json
from mlops.local.samples import Comparison
from mlops.local.tuning_report import markdown, plot_trials, trial_rows
from training.champion_comparison import KEY as CHAMPION_CHALLENGER
from training.networks import Network

if TYPE_CHECKING:
    from mlops.local.pipeline_executor import PipelineRun

MARKER = ".mlops-local-report"


@dataclass
class RunReport:
    network: Network
    outcome: str = "running"
    """succeeded, failed or interrupted"""
    failure: str | None = None
    phases: list[dict[str, Any]] = field(default_factory=list)
    """{"phase", "seconds", "status"} in order."""
    execution_id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    """{"step", "seconds", "status"} in the order they ran."""
    evaluation: dict[str, Any] | None = None
    explanations: dict[str, Any] | None = None
    """The Evaluate step's explanations.json."""
    training_metrics: dict[str, float] = field(default_factory=dict)
    model_package_arn: str | None = None
    model_approval: str | None = None
    endpoint_stack: str | None = None
    endpoint_name: str | None = None
    comparisons: list[Comparison] = field(default_factory=list)
    sample_summary: str | None = None
    stack_outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    """{stack: {output: value}} of the stacks deployed."""
    tuning: dict[str, Any] | None = None
    """A tuning run's job, objective and trials (mlops/local/tuning_report.py)."""

    def take_phases(self, phases: list[str], timings: dict[str, float]) -> None:
        """Every phase that started, with its time; the last one carries the outcome if the run did not succeed."""
        self.phases = [
            {"phase": name, "seconds": timings[name], "status": "done"} for name in phases if name in timings
        ]
        if self.phases and self.outcome != "succeeded":
            self.phases[-1]["status"] = self.outcome

    def take_pipeline_results(self, run: PipelineRun, s3: Any) -> None:
        """What the report needs from the pipeline, whatever its end: step times, the training
        job's final metrics, the Evaluate step's evaluation.json and explanations.json."""
        self.steps = [
            {"step": outcome.step, "seconds": outcome.seconds, "status": outcome.status} for outcome in run.outcomes
        ]
        training = run.properties.get(definition.TRAIN_STEP, {})
        self.training_metrics = {
            metric["MetricName"]: metric["Value"] for metric in training.get("FinalMetricDataList", [])
        }
        tune = run.properties.get(TUNE_STEP, {})
        if tune.get("BestTrainingJob"):
            best = tune["BestTrainingJob"]["TrainingJobName"]
            summary = next(s for s in tune.get("TrainingJobSummaries", []) if s["TrainingJobName"] == best)
            objective = summary["FinalHyperParameterTuningJobObjectiveMetric"]
            self.training_metrics = {objective["MetricName"]: objective["Value"]}
        report_uri = run.context.property_files.get(definition.EVALUATE_STEP, {}).get(definition.EVALUATION_REPORT)
        if report_uri:
            self.evaluation = read_json(s3, report_uri)
            # Written beside evaluation.json by the same job.
            self.explanations = read_json(s3, join_uri(report_uri.rsplit("/", 1)[0], definition.EXPLANATIONS_FILE))

    def take_trials(self, trials: list[Any], run: PipelineRun) -> None:
        """The trials of the run's Tuning step (`mlops.local.tuning_job.TrialRun`), as they ended."""
        tune = run.properties.get(TUNE_STEP)
        if not trials:
            return
        (step,) = [step for step in run.steps if step["Name"] == TUNE_STEP]
        config = step["Arguments"]["HyperParameterTuningJobConfig"]
        objective = config["HyperParameterTuningJobObjective"]
        best = (tune or {}).get("BestTrainingJob", {}).get("TrainingJobName")
        self.tuning = {
            "tuning_job": (tune or {}).get("HyperParameterTuningJobName", trials[0].name.rsplit("-", 2)[0]),
            "metric": objective["MetricName"],
            "maximize": objective["Type"] == "Maximize",
            "best_trial": best,
            "logarithmic": sorted(
                item["Name"]
                for kind in config.get("ParameterRanges", {}).values()
                for item in kind
                if item.get("ScalingType") == "Logarithmic"
            ),
            "trials": trial_rows(trials, best),
        }

    @property
    def quality(self) -> dict[str, Any]:
        """The gate's metric on held-out data, the threshold this run had, and whether it passed."""
        gate = self.network.quality_gate
        value = (self.evaluation or {}).get("metrics", {}).get(gate.metric, {}).get("value")
        threshold = float(self.parameters.get(definition.QUALITY_THRESHOLD, gate.threshold))
        champion = (self.evaluation or {}).get(CHAMPION_CHALLENGER)
        passed = (
            None
            if value is None
            else (value >= threshold if gate.higher_is_better else value <= threshold)
            and (champion is None or bool(champion["passes"]))
        )
        return {
            "metric": gate.metric,
            "value": value,
            "comparison": gate.comparison,
            "threshold": threshold,
            "champion": champion,
            "passed": passed,
        }

    @property
    def total_seconds(self) -> float:
        return sum(phase["seconds"] for phase in self.phases)


class ReportFolder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.pipeline_dir = path / "pipeline"
        self.logs_dir = path / "logs"
        self.model_path = path / "model" / "model.tar.gz"
        self.outputs_path = path / "outputs.json"

    @classmethod
    def claim(cls, path: Path) -> ReportFolder:
        """The folder, emptied: refused (UsageError) if it holds anything an earlier run did not write."""
        if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / MARKER).exists())):
            raise UsageError(
                f"report folder {path} exists and was not written by mlops local: choose another with --report-dir"
            )
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        (path / MARKER).write_text("written by `mlops local`; the next run replaces this folder\n")
        return cls(path)

    def write(self, report: RunReport) -> None:
        plots = self._collect_plots(report)
        tuning_plots: list[Path] = []
        if report.tuning:
            tuning_plots = plot_trials(
                report.tuning["trials"],
                report.tuning["metric"],
                maximize=report.tuning["maximize"],
                folder=self.path / "plots" / "tuning",
                logarithmic=report.tuning["logarithmic"],
            )
            self._write_json("trials.json", report.tuning)
        self._write_json(
            "metrics.json",
            {
                "network": report.network.name,
                "quality": report.quality,
                "evaluation": report.evaluation,
                "explanations": report.explanations,
                "training_final_metrics": report.training_metrics,
                "endpoint_samples": report.sample_summary,
            },
        )
        self._write_json(
            "predictions.json",
            {
                "endpoint": report.endpoint_name,
                "model_package": report.model_package_arn,
                "samples": [asdict(comparison) for comparison in report.comparisons],
            },
        )
        self._write_json(
            "phases.json",
            {
                "outcome": report.outcome,
                "failure": report.failure,
                "phases": report.phases,
                "execution_id": report.execution_id,
                "parameters": report.parameters,
                "steps": report.steps,
            },
        )
        self._write_json(self.outputs_path.name, report.stack_outputs)
        tuning = (
            markdown(
                report.tuning["trials"],
                report.tuning["metric"],
                report.tuning["tuning_job"],
                [plot.relative_to(self.path) for plot in tuning_plots],
            )
            if report.tuning
            else []
        )
        (self.path / "report.md").write_text(_markdown(report, [plot.relative_to(self.path) for plot in plots], tuning))

    def _collect_plots(self, report: RunReport) -> list[Path]:
        """Copies each step's PNGs to plots/<step>/ (the job folders are deeper and hold more); of a
        Tuning step's trials, the best one's."""
        best = (report.tuning or {}).get("best_trial")
        copied = []
        for execution in sorted(self.pipeline_dir.glob("*")):
            for step in sorted(path for path in execution.iterdir() if path.is_dir()):
                source = step / best if best and (step / best).is_dir() else step
                for plot in sorted(source.rglob("*.png")):
                    target = self.path / "plots" / step.name / plot.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(plot, target)
                    copied.append(target)
        return copied

    def _write_json(self, name: str, document: dict[str, Any]) -> None:
        (self.path / name).write_text(json.dumps(document, indent=2, default=str) + "\n")


def _markdown(report: RunReport, plots: list[Path], tuning: list[str]) -> str:
    network = report.network
    lines = [f"# mlops local: {network.name}", "", f"{network.summary}", ""]
    if report.outcome == "succeeded":
        lines.append(f"**Succeeded** in {report.total_seconds:.1f} s.")
    else:
        summary, _, details = (report.failure or "").partition("\n")
        lines.append(f"**{report.outcome.capitalize()}** after {report.total_seconds:.1f} s: {summary}")
        if details:
            lines += ["", "```", details, "```"]
    quality = report.quality
    lines += ["", "## Quality on held-out data", ""]
    if quality["value"] is None:
        lines.append("No evaluation: the pipeline did not get that far.")
    else:
        verdict = "passed" if quality["passed"] else "failed"
        lines.append(
            f"`{quality['metric']}` = **{quality['value']:.4f}** on the test channel (quality gate "
            f"{quality['comparison']} {quality['threshold']} and not worse than the champion: {verdict}), "
            "from the Evaluate step's evaluation.json."
        )
        if quality["champion"]:
            lines += ["", f"Champion and challenger: {quality['champion']['summary']}."]
        others = {
            name: entry["value"]
            for name, entry in (report.evaluation or {}).get("metrics", {}).items()
            if name != quality["metric"]
        }
        if others:
            lines += ["", "| metric | value |", "|---|---|"]
            lines += [f"| {name} | {value:.4f} |" for name, value in sorted(others.items())]
    lines += _explanations(report.explanations)
    lines += tuning
    if report.model_package_arn:
        lines += ["", "## Model", "", f"- registered: `{report.model_package_arn}` ({report.model_approval})"]
        if report.endpoint_stack:
            lines.append(f"- endpoint stack `{report.endpoint_stack}` deployed, endpoint `{report.endpoint_name}`")
    if report.comparisons:
        lines += [
            "",
            "## Predictions beside the truth",
            "",
            f"Held-out test samples sent through the SageMaker Runtime path "
            f"(`POST /endpoints/{report.endpoint_name}/invocations`) of the local endpoint: "
            f"{report.sample_summary}.",
            "",
            "| test sample | truth | prediction |",
            "|---|---|---|",
        ]
        lines += [f"| {_sample_name(row)} | {row.truth} | {row.prediction} |" for row in report.comparisons]
    lines += ["", "## Time", "", "| phase | seconds | status |", "|---|---|---|"]
    lines += [f"| {phase['phase']} | {phase['seconds']:.1f} | {phase['status']} |" for phase in report.phases]
    if report.steps:
        parameters = ", ".join(f"{name}={value}" for name, value in report.parameters.items())
        lines += [
            "",
            f"Pipeline execution `{report.execution_id}` ({parameters}):",
            "",
            "| step | seconds | status |",
            "|---|---|---|",
        ]
        lines += [f"| {step['step']} | {step['seconds']:.1f} | {step['status']} |" for step in report.steps]
    if plots:
        # The explanations first: the other plots show how good the model is, these why.
        named = set((report.explanations or {}).get("plots", []))
        plots = sorted(plots, key=lambda plot: plot.name not in named)
        lines += ["", "## Plots", ""]
        lines += [f"![{plot.parent.name}: {plot.stem}]({plot.as_posix()})" for plot in plots]
    lines += [
        "",
        "Each job's folder and `log.txt` are under `pipeline/`; what the CDK CLI, the data preparation and the "
        "endpoint printed is in `logs/`; the deployed stacks' outputs in `outputs.json`; the served model is "
        "`model/model.tar.gz`.",
        "",
    ]
    return "\n".join(lines)


def _sample_name(row: Comparison) -> str:
    """Its index in the test channel, and the sample itself where a reader can read it: text."""
    if not isinstance(row.input, str):
        return str(row.index)
    text = row.input if len(row.input) <= 80 else row.input[:79] + "…"
    return f"{row.index}: {text.replace('|', '&#124;')}"


def _explanations(explanations: dict[str, Any] | None) -> list[str]:
    """The explanations' rankings, and how each method was applied."""
    if not explanations:
        return []
    lines = [
        "",
        "## Why the model decides as it does",
        "",
        f"From the Evaluate step's explanations.json ({explanations['seconds']:.1f} s), on held-out test examples; "
        "the plots are below.",
        "",
    ]
    for ranking in explanations["summary"]:
        entries = ", ".join(f"{entry['name']} ({entry['value']:.3g})" for entry in ranking["top"])
        lines.append(f"- {ranking['title']}: {entries}")
    lines += ["", "| method | applied as |", "|---|---|"]
    for method, details in explanations["methods"].items():
        shown = "; ".join(
            f"{name} {value:.3g}" if isinstance(value, float) else f"{name} {value}" for name, value in details.items()
        )
        lines.append(f"| {method.replace('_', ' ')} | {shown} |")
    return lines
