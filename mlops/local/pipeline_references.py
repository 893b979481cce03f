"""What SageMaker Pipelines resolves in a definition while it runs, for the local executor.

A definition holds literal values and these expressions, which `ExecutionContext.resolve` turns
into values, as the service does just before it starts each step:

    {"Get": "Parameters.Epochs"}                                  a parameter (default, or the execution's)
    {"Get": "Execution.PipelineExecutionId"}                      a property of the execution
    {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}        a property of a finished step (its
    {"Get": "Steps.Train.FinalMetricDataList['val_loss'].Value"}  Describe* response; a list indexed by
                                                                  a name picks the item of that name)
    {"Std:Join": {"On": "/", "Values": [...]}}                    text
    {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"},
                     "Path": "metrics.test_accuracy.value"}}      a value from a step's JSON output

`ExecutionContext.holds` evaluates a Condition step's conditions. Anything else that looks like
an expression is a `DefinitionError` naming it, never passed on as if it were a value.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Value = str | int | float | bool

_PATH_TOKEN = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[(?:'([^']*)'|\"([^\"]*)\"|(\d+))\]")
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": operator.eq,
    "GreaterThan": operator.gt,
    "GreaterThanOrEqualTo": operator.ge,
    "LessThan": operator.lt,
    "LessThanOrEqualTo": operator.le,
}
_PARAMETER_TYPES: dict[str, Callable[[str], Value]] = {
    "String": str,
    "Integer": int,
    "Float": float,
    "Boolean": lambda text: {"true": True, "false": False}[text.strip().lower()],
}


class DefinitionError(ValueError):
    """The definition asks for something that cannot be resolved; the message says what and where."""


def parameter_values(declared: Sequence[Mapping[str, Any]], overrides: Mapping[str, str]) -> dict[str, Value]:
    """Each declared parameter's value for one execution: its override (text, as
    StartPipelineExecution takes it) converted to the declared type, else its default."""
    unknown = sorted(set(overrides) - {parameter["Name"] for parameter in declared})
    if unknown:
        raise DefinitionError(f"the pipeline has no parameter {', '.join(unknown)}")
    values: dict[str, Value] = {}
    for parameter in declared:
        name, kind = parameter["Name"], parameter.get("Type", "String")
        if kind not in _PARAMETER_TYPES:
            raise DefinitionError(f"parameter {name} has type {kind!r}, which the local executor does not know")
        if name in overrides:
            try:
                value = _PARAMETER_TYPES[kind](overrides[name])
            except (ValueError, KeyError):
                raise DefinitionError(f"parameter {name} is {kind}, got {overrides[name]!r}") from None
        elif "DefaultValue" in parameter:
            value = parameter["DefaultValue"]
        else:
            raise DefinitionError(f"parameter {name} has no default and no value was given")
        if parameter.get("EnumValues") and value not in parameter["EnumValues"]:
            raise DefinitionError(
                f"parameter {name} must be one of {', '.join(parameter['EnumValues'])}, got {value!r}"
            )
        values[name] = value
    return values


@dataclass
class ExecutionContext:
    """The values one execution has so far: parameters, its own properties, finished steps'."""

    parameters: Mapping[str, Value]
    execution: Mapping[str, str]
    read_json: Callable[[str], Any]
    """Reads a JSON document from an `s3://` URI (property files live in the steps' outputs)."""
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    property_files: dict[str, dict[str, str]] = field(default_factory=dict)
    """step name -> property file name -> the URI of its JSON file."""

    def resolve(self, value: Any) -> Any:
        """`value` with every expression in it replaced by what it stands for."""
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        functions = [key for key in value if key == "Get" or key.startswith("Std:")]
        if not functions:
            return {key: self.resolve(item) for key, item in value.items()}
        if len(value) != 1:
            raise DefinitionError(f"{functions[0]} must be the only key of its object, got {sorted(value)}")
        function, argument = functions[0], value[functions[0]]
        if function == "Get":
            return self._get(argument)
        if function == "Std:Join":
            return str(argument.get("On", "")).join(_text(self.resolve(item)) for item in argument["Values"])
        if function == "Std:JsonGet":
            return self._json_get(argument)
        raise DefinitionError(
            f"{function} is not a function the local executor resolves (it resolves Get, Std:Join and Std:JsonGet)"
        )

    def holds(self, condition: Mapping[str, Any]) -> bool:
        """Whether one Condition step condition is true now."""
        kind = condition.get("Type")
        if kind in _COMPARISONS:
            left, right = self.resolve(condition["LeftValue"]), self.resolve(condition["RightValue"])
            return _COMPARISONS[kind](*_comparable(left, right, kind))
        if kind == "Not":
            return not self.holds(condition["Expression"])
        if kind == "Or":
            return any(self.holds(inner) for inner in condition["Conditions"])
        if kind == "In":
            query = self.resolve(condition["QueryValue"])
            return any(operator.eq(*_comparable(query, self.resolve(item), kind)) for item in condition["Values"])
        raise DefinitionError(
            f"condition type {kind!r} is not one the local executor evaluates "
            f"({', '.join([*_COMPARISONS, 'Not', 'Or', 'In'])})"
        )

    def _get(self, path: str) -> Any:
        root, _, rest = path.partition(".")
        if root == "Parameters":
            if rest not in self.parameters:
                raise DefinitionError(f"{path}: the pipeline has no parameter {rest!r}")
            return self.parameters[rest]
        if root == "Execution":
            if rest not in self.execution:
                raise DefinitionError(
                    f"{path}: the local executor knows only Execution.{', Execution.'.join(self.execution)}"
                )
            return self.execution[rest]
        if root == "Steps":
            step, _, property_path = rest.partition(".")
            if step not in self.steps:
                raise DefinitionError(
                    f"{path}: step {step!r} has not run (it must finish before a step that reads its properties)"
                )
            return _walk(self.steps[step], property_path, path)
        raise DefinitionError(f"{path}: a Get must start with Parameters., Execution. or Steps.")

    def _json_get(self, arguments: Mapping[str, Any]) -> Any:
        reference = arguments.get("PropertyFile")
        if not (isinstance(reference, dict) and isinstance(reference.get("Get"), str)):
            raise DefinitionError(
                f"Std:JsonGet: PropertyFile must be a Get of Steps.<step>.PropertyFiles.<name>, got {reference!r}"
            )
        match = re.fullmatch(r"Steps\.([^.]+)\.PropertyFiles\.([^.]+)", reference["Get"])
        if not match:
            raise DefinitionError(f"Std:JsonGet: {reference['Get']} is not Steps.<step>.PropertyFiles.<name>")
        step, name = match.groups()
        uri = self.property_files.get(step, {}).get(name)
        if uri is None:
            raise DefinitionError(f"Std:JsonGet: step {step!r} has no property file {name!r} (or has not run)")
        path = self.resolve(arguments["Path"])
        return _walk(self.read_json(uri), str(path), f"{name} ({uri}) at {path}")


def _walk(document: Any, path: str, described: str) -> Any:
    """Follows `A.B['name'][0].C` into `document`. A list indexed by a name holds items that
    name themselves (MetricName, OutputName, ...): the one with that name is taken."""
    position, value = 0, document
    while position < len(path):
        token = _PATH_TOKEN.match(path, position)
        if token is None:
            raise DefinitionError(f"{described}: cannot read the path {path!r} from position {position}")
        position = token.end()
        key, name, double_quoted, index = token.groups()
        try:
            if key is not None:
                value = value[key]
            elif index is not None:
                value = value[int(index)]
            else:
                value = _named_item(value, name if name is not None else double_quoted)
        except (KeyError, IndexError, TypeError):
            raise DefinitionError(f"{described}: {path[:position]!r} does not exist") from None
    return value


def _named_item(items: Any, name: str) -> Any:
    if isinstance(items, dict):
        return items[name]
    for item in items:
        if isinstance(item, dict) and any(key.endswith("Name") and value == name for key, value in item.items()):
            return item
    raise KeyError(name)


def _comparable(left: Any, right: Any, kind: str) -> tuple[Any, Any]:
    """Numbers compare as numbers (a JsonGet value against a Float parameter); otherwise both
    sides must be of one kind."""
    numbers = (int, float)
    if isinstance(left, numbers) and isinstance(right, numbers) and not isinstance(left, bool):
        return float(left), float(right)
    if type(left) is not type(right):
        raise DefinitionError(f"{kind} compares {left!r} with {right!r}: values of different types")
    return left, right


def _text(value: Any) -> str:
    """How Std:Join writes a value: booleans in JSON's lower case, numbers as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        raise DefinitionError(f"Std:Join can only join plain values, got {value!r}")
    return str(value)
