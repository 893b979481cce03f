"""The task registry: what each kind of task is, one module per task in this package.

A task (image classifier, sequence forecaster, ...) owns everything that is the same for every
network of that kind: the target feature in the records, the checks of the channels' shapes, the
serving signature's outputs, the test metrics and plot, what `code/serving.json` must tell the
serving handler, and how an endpoint's answer is set beside the truth. A network names its task
(training/networks.py); nothing else branches on a task's name.

A new kind of task is a new module here defining `TASK`, found by `_discover`. Plain Python at
import (no TensorFlow), so infra, the CLI and the serving tests read it too; only `evaluate`
loads the TensorFlow metrics, when training calls it.

Inside the training container this package is imported as `tasks`; elsewhere as `training.tasks`.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import Judgement, Task

__all__ = ["TASKS", "Judgement", "Task", "get_task"]


def _discover() -> dict[str, Task]:
    found: dict[str, Task] = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name == "base":
            continue
        task = importlib.import_module(f"{__name__}.{module.name}").TASK
        if task.name != module.name or task.name in found:
            raise RuntimeError(f"task module {module.name}.py defines task {task.name!r}: name it after its module")
        found[task.name] = task
    return found


TASKS: dict[str, Task] = _discover()


def get_task(name: str) -> Task:
    """The registry entry, or a KeyError whose message lists the known tasks."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r} (known: {', '.join(TASKS)})") from None
