"""What `mlops local` shows while it runs: each phase, the details it reports, the pipeline's steps
as they start and end, and training's epochs.

On a terminal (rich's `Console.is_interactive`) the running phase is one live line, a spinner and
its time, with the details it has reported and the running step beneath it: a training step as
an epoch bar with the metrics of its last epoch. When the phase ends that block becomes its
permanent lines: a mark, the phase and its seconds, then its details. Off a terminal (CI, a pipe)
the same events are plain lines, printed as they happen.

What the programs of a run print (the CDK CLI, the data preparation, the endpoint, the jobs) goes
to log files (`mlops.local.logs`, each job's log.txt); with `show_logs` the lines are printed here
too, as they come.

    view = progress_view(console, show_logs=False)
    with view:
        run_phases(view, phases)                           # a PhaseView
        view.note("local AWS at http://127.0.0.1:5000")    # a detail of the running phase
        LocalPipelineExecutor(aws, folder, view)           # a StepReporter: steps, logs, epochs
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.padding import Padding
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from mlops.local.training_job import parse_metrics
from training.networks import EPOCHS

if TYPE_CHECKING:
    from mlops.local.pipeline_executor import StepOutcome
    from mlops.local.tuning_job import TrialRun

Clock = Callable[[], float]
_EPOCH = "epoch"
_SPINNER = "dots"
_BAR_WIDTH = 24


def progress_view(console: Console, *, show_logs: bool) -> PlainProgress | LiveProgress:
    """Live lines on an interactive terminal, plain lines anywhere else."""
    if console.is_interactive:
        return LiveProgress(console, show_logs=show_logs)
    return PlainProgress(console, show_logs=show_logs)


class PlainProgress:
    """Every event as a plain line, printed as it happens: for CI logs and pipes."""

    def __init__(self, console: Console, *, show_logs: bool) -> None:
        self.console = console
        self.show_logs = show_logs
        self._epochs: dict[str, int | None] = {}

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def phase_started(self, number: int, total: int, name: str) -> None:
        self._print(Text(f"[{number}/{total}] {name}"))

    def phase_ended(self, number: int, total: int, name: str, seconds: float, succeeded: bool) -> None:
        self._print(phase_line(number, total, name, seconds, succeeded))

    def note(self, text: str) -> None:
        self._print(note_line(text))

    def log_line(self, source: str, line: str) -> None:
        if self.show_logs:
            self._print(log_line(source, line))

    def step_started(self, step: str, step_type: str, detail: str, request: Mapping[str, Any]) -> None:
        self._epochs[step] = epochs_of(request)
        self._print(step_start_line(step, step_type, detail))

    def step_log(self, step: str, line: str) -> None:
        self.log_line(step, line)
        epoch = epoch_of(line)
        if epoch is not None:
            total = self._epochs.get(step)
            self._print(Text(f"    {step} epoch {epoch[0]}{f'/{total}' if total else ''} {epoch[1]}".rstrip()))

    def trial_update(self, step: str, trial: TrialRun) -> None:
        # Its epochs are its log's lines (step_log, labelled with the trial): only start and end here.
        if trial.status == "InProgress" and trial.epochs == 0:
            self._print(Text(f"    {step} trial {trial.number} started: {tuned_text(trial)}"))
        elif trial.status != "InProgress":
            self._print(trial_end_line(step, trial))

    def step_ended(self, outcome: StepOutcome) -> None:
        self._print(step_end_line(outcome))

    def _print(self, text: Text) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)


@dataclass
class _RunningStep:
    name: str
    step_type: str
    started: float
    epochs: int | None
    """The training job's `epochs` hyperparameter; None for other steps."""
    spinner: Spinner = field(default_factory=lambda: Spinner(_SPINNER))
    epoch: int = 0
    metrics: str = ""
    trials: int | None = None
    """A Tuning step's MaxNumberOfTrainingJobs; None for other steps."""
    running: dict[int, TrialRun] = field(default_factory=dict)
    ended: int = 0


class LiveProgress:
    """The running phase as live lines beneath what has been printed; see the module's docstring.

    Events come from several threads (the jobs' logs are read by threads of their own): state
    changes under a lock, and nothing is printed while holding it, since printing waits for the
    live display's own lock, which its refresh thread holds while it asks for `_render`."""

    def __init__(
        self, console: Console, *, show_logs: bool, auto_refresh: bool = True, clock: Clock = time.monotonic
    ) -> None:
        self.console = console
        self.show_logs = show_logs
        self._clock = clock
        self._lock = threading.Lock()
        self._phase: Spinner | None = None
        self._phase_label = ""
        self._phase_started = 0.0
        self._notes: list[RenderableType] = []
        self._step: _RunningStep | None = None
        self._live = Live(
            get_renderable=self._render,
            console=console,
            transient=True,
            auto_refresh=auto_refresh,
            refresh_per_second=8,
        )

    def __enter__(self) -> LiveProgress:
        self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._live.stop()

    def refresh(self) -> None:
        self._live.refresh()

    def phase_started(self, number: int, total: int, name: str) -> None:
        with self._lock:
            self._phase, self._phase_label = Spinner(_SPINNER), f"[{number}/{total}] {name}"
            self._phase_started, self._notes, self._step = self._clock(), [], None
        self.refresh()

    def phase_ended(self, number: int, total: int, name: str, seconds: float, succeeded: bool) -> None:
        with self._lock:
            lines = [phase_line(number, total, name, seconds, succeeded), *self._notes]
            self._phase, self._notes, self._step = None, [], None
        self.console.print(Group(*lines))

    def note(self, text: str) -> None:
        # Wrapped lines keep the indent.
        note = Padding(Text(text, "dim"), (0, 0, 0, 2))
        with self._lock:
            in_phase = self._phase is not None
            if in_phase:
                self._notes.append(note)
        if in_phase:
            self.refresh()
        else:
            self.console.print(note)

    def log_line(self, source: str, line: str) -> None:
        if self.show_logs:
            self.console.print(log_line(source, line))

    def step_started(self, step: str, step_type: str, detail: str, request: Mapping[str, Any]) -> None:
        with self._lock:
            self._step = _RunningStep(step, step_type, self._clock(), epochs_of(request), trials=trials_of(request))
        self.refresh()

    def trial_update(self, step: str, trial: TrialRun) -> None:
        """A running trial is a row of its own beneath its step; an ended one becomes a line."""
        with self._lock:
            if self._step is None or self._step.name != step:
                return
            if trial.status == "InProgress":
                self._step.running[trial.number] = trial
            else:
                self._step.running.pop(trial.number, None)
                self._step.ended += 1
                line = trial_end_line(step, trial)
                line.no_wrap, line.overflow = True, "ellipsis"
                self._notes.append(line)
        self.refresh()

    def step_log(self, step: str, line: str) -> None:
        self.log_line(step, line)
        epoch = epoch_of(line)
        if epoch is None:
            return
        with self._lock:
            if self._step is not None and self._step.name == step:
                self._step.epoch, self._step.metrics = epoch
        self.refresh()

    def step_ended(self, outcome: StepOutcome) -> None:
        # One line: the detail's end (a model's location, say) is cut with an ellipsis; plain lines keep it whole.
        line = step_end_line(outcome)
        line.no_wrap, line.overflow = True, "ellipsis"
        with self._lock:
            self._step = None
            self._notes.append(line)
        self.refresh()

    def _render(self) -> RenderableType:
        with self._lock:
            if self._phase is None:
                return Group()
            now = self._clock()
            self._phase.update(text=Text.assemble(self._phase_label, " ", (_elapsed(now - self._phase_started), "dim")))
            rows: list[RenderableType] = [self._phase, *self._notes]
            if self._step is not None:
                rows.append(Padding(_step_row(self._step, now), (0, 0, 0, 2)))
                rows += [Padding(_trial_row(self._step, trial), (0, 0, 0, 4)) for trial in self._step.running.values()]
        return Group(*rows)


class TrialRecorder:
    """A view (`progress_view`'s) that also keeps the last state of each trial of a Tuning step,
    for the report."""

    def __init__(self, view: PlainProgress | LiveProgress) -> None:
        self.view = view
        self.trials: dict[str, TrialRun] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.view, name)

    def trial_update(self, step: str, trial: TrialRun) -> None:
        self.trials[trial.name] = trial
        self.view.trial_update(step, trial)


def _step_row(step: _RunningStep, now: float) -> Table:
    row: list[RenderableType] = [step.spinner, Text(f"{step.name} ({step.step_type})")]
    if step.trials:
        row += [
            ProgressBar(total=step.trials, completed=step.ended, width=_BAR_WIDTH),
            Text(f"{step.ended}/{step.trials} trials, {len(step.running)} running"),
        ]
    elif step.epochs:
        row += [
            ProgressBar(total=step.epochs, completed=step.epoch, width=_BAR_WIDTH),
            Text(f"{step.epoch}/{step.epochs} epochs"),
        ]
    row.append(Text(_elapsed(now - step.started), "dim"))
    if step.metrics:
        row.append(Text(step.metrics, "dim"))
    grid = Table.grid(padding=(0, 1))
    grid.add_row(*row)
    return grid


def _trial_row(step: _RunningStep, trial: TrialRun) -> Table:
    grid = Table.grid(padding=(0, 1))
    row: list[RenderableType] = [Text(f"trial {trial.number}")]
    if step.epochs:
        row += [ProgressBar(total=step.epochs, completed=trial.epochs, width=_BAR_WIDTH // 2)]
    row.append(Text(f"{trial.epochs}/{step.epochs or '?'} epochs"))
    if trial.objective is not None:
        row.append(Text(f"{trial.metric}={trial.objective:.4g}", "dim"))
    row.append(Text(tuned_text(trial), "dim"))
    grid.add_row(*row)
    return grid


def tuned_text(trial: TrialRun) -> str:
    return " ".join(f"{name}={_short(value)}" for name, value in trial.tuned.items())


def trial_end_line(step: str, trial: TrialRun) -> Text:
    """A trial's end: Completed with its objective, Stopped by early stopping after N epochs, or Failed."""
    mark = {"Completed": Text("✓", "green"), "Stopped": Text("■", "yellow")}.get(trial.status, Text("✗", "red"))
    objective = f" {trial.metric}={trial.objective:.4g}" if trial.objective is not None else ""
    why = f" after {trial.epochs} epochs (early stopping)" if trial.status == "Stopped" else ""
    if trial.status == "Failed":
        why = f": {(trial.failure_reason or '').splitlines()[0]}"
    return Text.assemble(
        "    ", mark, f" {step} trial {trial.number} {trial.status}{why}{objective} ", (tuned_text(trial), "dim")
    )


def _short(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() else f"{number:.3g}"


def phase_line(number: int, total: int, name: str, seconds: float, succeeded: bool) -> Text:
    return Text.assemble(_mark(succeeded), f" [{number}/{total}] {name} ", (f"({seconds:.1f} s)", "dim"))


def note_line(text: str) -> Text:
    return Text(f"  {text}", "dim")


def log_line(source: str, line: str) -> Text:
    return Text(f"    {source} │ {line}", "dim")


def step_start_line(step: str, step_type: str, detail: str) -> Text:
    return Text(f"  ▶ {step} ({step_type}) {detail}".rstrip())


def step_end_line(outcome: StepOutcome) -> Text:
    """The step's mark, status, seconds and the first line of its detail: a failure's whole reason
    ends the run's error message."""
    first = outcome.detail.strip().splitlines()[0] if outcome.detail.strip() else ""
    return Text.assemble(
        "  ",
        _mark(outcome.status == "Succeeded"),
        f" {outcome.step} {outcome.status} ",
        (f"({outcome.seconds:.1f} s)", "dim"),
        f" {first}" if first else "",
    )


def epochs_of(request: Mapping[str, Any]) -> int | None:
    """The epochs a Training step's job, or each trial of a Tuning step's, is asked for (its
    hyperparameters are strings)."""
    hyperparameters = request.get("HyperParameters") or request.get("TrainingJobDefinition", {}).get(
        "StaticHyperParameters", {}
    )
    value = hyperparameters.get(EPOCHS)
    return int(value) if isinstance(value, str) and value.isdigit() else None


def trials_of(request: Mapping[str, Any]) -> int | None:
    """A Tuning step's MaxNumberOfTrainingJobs; None for other steps."""
    limits = request.get("HyperParameterTuningJobConfig", {}).get("ResourceLimits", {})
    value = limits.get("MaxNumberOfTrainingJobs")
    return int(value) if value is not None else None


def epoch_of(line: str) -> tuple[int, str] | None:
    """(epoch, its other metrics as text) of an entry point's `[metrics] epoch=N ...` line."""
    for values in parse_metrics(line):
        if _EPOCH in values:
            epoch = int(values.pop(_EPOCH))
            return epoch, " ".join(f"{name}={value:.4g}" for name, value in values.items())
    return None


def _mark(succeeded: bool) -> Text:
    return Text("✓", "green") if succeeded else Text("✗", "red")


def _elapsed(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"
