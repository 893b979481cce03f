"""The steps of a SageMaker Pipeline definition as a graph: which step types the local executor
runs, and the order in which each step comes after every step it depends on."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence, Set
from typing import Any

from mlops.local.inference_steps import INFERENCE_STEP_TYPES
from mlops.local.pipeline_references import DefinitionError

SUPPORTED_STEP_TYPES = ("Training", "Tuning", "Processing", "Condition", "RegisterModel", "Fail", *INFERENCE_STEP_TYPES)


def check_step_types(steps: Sequence[Mapping[str, Any]]) -> None:
    """Refuses a definition with a step this executor cannot run (also inside condition branches)."""
    for step in all_steps(steps):
        if step.get("Type") not in SUPPORTED_STEP_TYPES:
            raise DefinitionError(
                f"step {step.get('Name')!r} has type {step.get('Type')!r}, which the local "
                f"executor does not run (it runs {', '.join(SUPPORTED_STEP_TYPES)})"
            )


def execution_order(steps: Sequence[Mapping[str, Any]], finished: Set[str] = frozenset()) -> list[Mapping[str, Any]]:
    """The steps so that each comes after every step it depends on: its DependsOn, and every step
    whose properties it (or, for a Condition, any step of its branches) reads. `finished` steps
    ran before (a branch reads steps outside it). Ties keep the definition's order."""
    by_name = {step["Name"]: step for step in steps}
    # A step inside a condition's branch runs as part of that condition step.
    container = {inner["Name"]: step["Name"] for step in steps for inner in all_steps([step])}
    needs = {
        name: {container.get(dependency, dependency) for dependency in _dependencies(step)} - {name} - finished
        for name, step in by_name.items()
    }
    for name, dependencies in needs.items():
        unknown = dependencies - set(by_name)
        if unknown:
            raise DefinitionError(
                f"step {name!r} depends on {', '.join(sorted(unknown))}, which the pipeline does not define"
            )
    ordered: list[Mapping[str, Any]] = []
    done: set[str] = set()
    while len(ordered) < len(steps):
        ready = [step for step in steps if step["Name"] not in done and needs[step["Name"]] <= done]
        if not ready:
            cycle = sorted(set(by_name) - done)
            raise DefinitionError(f"steps {', '.join(cycle)} depend on each other in a cycle")
        ordered.append(ready[0])
        done.add(ready[0]["Name"])
    return ordered


def all_steps(steps: Sequence[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """Every step, and the steps of every condition's branches, depth first."""
    for step in steps:
        yield step
        if step.get("Type") == "Condition":
            arguments = step.get("Arguments", {})
            yield from all_steps([*arguments.get("IfSteps", []), *arguments.get("ElseSteps", [])])


def _dependencies(step: Mapping[str, Any]) -> set[str]:
    """The steps `step` (and any step of its branches) names in DependsOn or reads properties of."""
    found: set[str] = set()
    for inner in all_steps([step]):
        found.update(inner.get("DependsOn", []))
    _step_references(step.get("Arguments", {}), found)
    return found


def _step_references(value: Any, found: set[str]) -> None:
    if isinstance(value, dict):
        reference = value.get("Get")
        if isinstance(reference, str) and reference.startswith("Steps."):
            found.add(reference.split(".")[1])
        for item in value.values():
            _step_references(item, found)
    elif isinstance(value, list):
        for item in value:
            _step_references(item, found)
