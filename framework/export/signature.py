"""What an exported model takes and returns: its two inputs, its outputs and its classes.

This module imports no training code, so that a serving replica that reads a signature never
loads scikit-learn, skl2onnx or torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Name of the float32 input holding every numeric (and boolean) feature, one per column.
NUMERIC_INPUT = "numeric"
#: Name of the string input holding every categorical feature, one per column.
CATEGORICAL_INPUT = "categorical"
#: The string a missing category is fed as (the fitted pipeline imputes it).
MISSING_CATEGORY = ""


@dataclass
class Signature:
    """What the ONNX graph takes and returns."""

    task: str
    numeric: list[str]
    categorical: list[str]
    outputs: list[str]
    classes: list[str] = field(default_factory=list)

    @property
    def classification(self) -> bool:
        return self.task == "classification"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        return cls(**data)
