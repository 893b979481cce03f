"""A training knob: its default, its type (the default's), its bounds or choices, and how a raw
value (CLI text, a SageMaker hyperparameter string) is parsed and checked.

Plain data beside the network registry (`networks.py` lists each network's knobs; the tuning
ranges of `search_space.py` are checked against them). Inside the training container this file
is the sibling module `hyperparameters`; elsewhere `training.hyperparameters`.
"""

from __future__ import annotations

from dataclasses import dataclass

HyperparameterValue = int | float | str


@dataclass(frozen=True)
class Hyperparameter:
    """A training knob. Its type is the type of its default; numbers may have inclusive bounds."""

    name: str
    default: HyperparameterValue
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    @property
    def type(self) -> type:
        return type(self.default)

    def parse(self, raw: str | HyperparameterValue) -> HyperparameterValue:
        """Converts a raw value (CLI text, SageMaker hyperparameter string) or raises ValueError."""
        text = str(raw).strip()
        if self.type is int:
            try:
                number = float(text)
            except ValueError:
                raise ValueError(f"{self.name} must be an integer, got {raw!r}") from None
            if not number.is_integer():
                raise ValueError(f"{self.name} must be an integer, got {raw!r}")
            return self._within_bounds(int(number), raw)
        if self.type is float:
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{self.name} must be a number, got {raw!r}") from None
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(f"{self.name} must be a finite number, got {raw!r}")
            return self._within_bounds(value, raw)
        if self.choices and text not in self.choices:
            raise ValueError(f"{self.name} must be one of {', '.join(self.choices)}, got {raw!r}")
        return text

    def _within_bounds(self, value: int | float, raw: object) -> int | float:
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{self.name} must be at least {self.minimum:g}, got {raw!r}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{self.name} must be at most {self.maximum:g}, got {raw!r}")
        return value
