"""Where hyperparameter tuning may search: a range per tunable knob, and what it optimizes.

Plain data beside the network registry (`networks.py` imports it; so do infra, the CLI and the
local executor). The ranges are SageMaker's own three kinds (CreateHyperParameterTuningJob's
`ParameterRanges`), and each is checked against the knob it tunes and against what SageMaker
accepts, so a registry entry or a stage's narrowing (cdk.json, `infra/config.py`) that the API
would refuse fails here, naming the knob:

    ContinuousRange(1e-4, 1e-2, "Logarithmic")   a float knob, e.g. learning_rate
    IntegerRange(32, 256, "Logarithmic")         an int knob, e.g. dense_units
    CategoricalRange(("none", "balanced"))       any knob, by the text of its values

SageMaker's rules enforced (AWS API reference, ContinuousParameterRange, IntegerParameterRange,
CategoricalParameterRange): a range's minimum is below its maximum; Logarithmic scaling needs
values above 0; ReverseLogarithmic is for continuous ranges within 0 <= x < 1; a categorical
range holds 1 to 30 distinct values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal, Protocol

Scaling = Literal["Auto", "Linear", "Logarithmic", "ReverseLogarithmic"]
SCALING_TYPES: tuple[Scaling, ...] = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")
ObjectiveType = Literal["Maximize", "Minimize"]
MAX_CATEGORICAL_VALUES = 30


class Knob(Protocol):
    """What a range needs to know of the hyperparameter it tunes (hyperparameters.Hyperparameter)."""

    @property
    def name(self) -> str: ...

    @property
    def default(self) -> int | float | str: ...

    def parse(self, raw: str | int | float) -> int | float | str: ...


@dataclass(frozen=True)
class ContinuousRange:
    minimum: float
    maximum: float
    scaling: Scaling = "Auto"
    kind: ClassVar[str] = "Continuous"

    def problem(self, knob: Knob) -> str | None:
        if type(knob.default) is not float:
            return f"a continuous range needs a float knob; {knob.name} is {type(knob.default).__name__}"
        return _bounds_problem(self, knob) or _scaling_problem(self)

    def request(self, name: str) -> dict[str, str]:
        """Its ContinuousParameterRanges entry (SageMaker takes the bounds as text)."""
        return {
            "Name": name,
            "MinValue": str(float(self.minimum)),
            "MaxValue": str(float(self.maximum)),
            "ScalingType": self.scaling,
        }


@dataclass(frozen=True)
class IntegerRange:
    minimum: int
    maximum: int
    scaling: Scaling = "Auto"
    kind: ClassVar[str] = "Integer"

    def problem(self, knob: Knob) -> str | None:
        if type(knob.default) is not int:
            return f"an integer range needs an int knob; {knob.name} is {type(knob.default).__name__}"
        if not (_is_integer(self.minimum) and _is_integer(self.maximum)):
            return f"{knob.name}: an integer range needs integer bounds, got {self.minimum!r} and {self.maximum!r}"
        if self.scaling == "ReverseLogarithmic":
            return f"{knob.name}: ReverseLogarithmic scaling is for continuous ranges only"
        return _bounds_problem(self, knob) or _scaling_problem(self)

    def request(self, name: str) -> dict[str, str]:
        return {
            "Name": name,
            "MinValue": str(int(self.minimum)),
            "MaxValue": str(int(self.maximum)),
            "ScalingType": self.scaling,
        }


@dataclass(frozen=True)
class CategoricalRange:
    values: tuple[str, ...]
    kind: ClassVar[str] = "Categorical"

    def problem(self, knob: Knob) -> str | None:
        if not 1 <= len(self.values) <= MAX_CATEGORICAL_VALUES:
            return (
                f"{knob.name}: a categorical range holds 1 to {MAX_CATEGORICAL_VALUES} values, got {len(self.values)}"
            )
        if len(set(self.values)) != len(self.values):
            return f"{knob.name}: a categorical range lists a value twice: {', '.join(self.values)}"
        for value in self.values:
            try:
                knob.parse(value)
            except ValueError as error:
                return str(error)
        return None

    def request(self, name: str) -> dict[str, Any]:
        return {"Name": name, "Values": list(self.values)}


SearchRange = ContinuousRange | IntegerRange | CategoricalRange


@dataclass(frozen=True)
class Objective:
    """The metric a tuning job optimizes: one of the network's MetricDefinitions, measured on the
    validation channel (never the test channel, which the quality gate judges the winner on)."""

    metric: str
    type: ObjectiveType

    def better(self, value: float, than: float) -> bool:
        return value > than if self.type == "Maximize" else value < than


@dataclass(frozen=True)
class Tuning:
    """A network's tuning: its objective, and a range per tunable knob (in registry order)."""

    objective: Objective
    ranges: tuple[tuple[str, SearchRange], ...]

    @property
    def knobs(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.ranges)

    def range_of(self, name: str) -> SearchRange:
        return dict(self.ranges)[name]


def tuning(objective: Objective, **ranges: SearchRange) -> Tuning:
    return Tuning(objective, tuple(ranges.items()))


def narrowed(base: SearchRange, change: Mapping[str, Any], knob: Knob) -> SearchRange:
    """`base` narrowed by a stage's `change` ({"min", "max", "scaling"} or {"values"}), or
    ValueError saying why: a stage may search less than the registry allows, never more."""
    if isinstance(base, CategoricalRange):
        unknown = sorted(set(change) - {"values"})
        if unknown:
            raise ValueError(f"a categorical range takes only values, not {', '.join(unknown)}")
        values = tuple(str(value) for value in change.get("values", base.values))
        outside = [value for value in values if value not in base.values]
        if outside:
            raise ValueError(
                f"{', '.join(outside)} not among the registry's values for {knob.name} ({', '.join(base.values)})"
            )
        result: SearchRange = CategoricalRange(values)
    else:
        unknown = sorted(set(change) - {"min", "max", "scaling"})
        if unknown:
            raise ValueError(f"a {base.kind.lower()} range takes min, max and scaling, not {', '.join(unknown)}")
        number = float if isinstance(base, ContinuousRange) else int
        try:
            minimum, maximum = (
                number(change.get(key, default)) for key, default in (("min", base.minimum), ("max", base.maximum))
            )
        except (TypeError, ValueError):
            raise ValueError(f"min and max of {knob.name} must be numbers") from None
        if minimum < base.minimum or maximum > base.maximum:
            raise ValueError(
                f"{knob.name} may be narrowed within the registry's {_text(base.minimum)}..{_text(base.maximum)}, "
                f"got {_text(minimum)}..{_text(maximum)}"
            )
        scaling = change.get("scaling", base.scaling)
        if scaling not in SCALING_TYPES:
            raise ValueError(f"scaling of {knob.name} must be one of {', '.join(SCALING_TYPES)}, got {scaling!r}")
        result = (
            replace(base, minimum=float(minimum), maximum=float(maximum), scaling=scaling)
            if isinstance(base, ContinuousRange)
            else replace(base, minimum=int(minimum), maximum=int(maximum), scaling=scaling)
        )
    problem = result.problem(knob)
    if problem:
        raise ValueError(problem)
    return result


def _bounds_problem(search: ContinuousRange | IntegerRange, knob: Knob) -> str | None:
    for bound in (search.minimum, search.maximum):
        if not math.isfinite(bound):
            return f"{knob.name}: range bounds must be finite, got {bound!r}"
        try:
            knob.parse(bound)
        except ValueError as error:
            return f"range bound outside the knob's own: {error}"
    if not search.minimum < search.maximum:
        bounds = f"{_text(search.minimum)}..{_text(search.maximum)}"
        return f"{knob.name}: a range's minimum must be below its maximum, got {bounds}"
    return None


def _scaling_problem(search: ContinuousRange | IntegerRange) -> str | None:
    if search.scaling not in SCALING_TYPES:
        return f"scaling must be one of {', '.join(SCALING_TYPES)}, got {search.scaling!r}"
    if search.scaling == "Logarithmic" and search.minimum <= 0:
        return f"Logarithmic scaling needs a range above 0, got a minimum of {_text(search.minimum)}"
    if search.scaling == "ReverseLogarithmic" and not (search.minimum >= 0 and search.maximum < 1):
        return "ReverseLogarithmic scaling needs a range within 0 <= x < 1"
    return None


def _is_integer(value: float) -> bool:
    return float(value).is_integer()


def _text(value: float) -> str:
    """A bound as SageMaker's request holds it: the shortest text that reads back as the same number."""
    return str(int(value)) if _is_integer(value) else repr(float(value))
