"""A model's signature: the features it takes and what it answers.

Requests are checked against the signature of the version that will answer them, so a
wrong field, a missing one or a string where a number belongs is a 422 that names it
(``body.inputs.3.petal_width_cm``), never an exception inside the model.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator

FEATURE_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"

Loc = tuple[str | int, ...]
# Errors named in one answer at most: a body of a thousand wrong rows gets a short 422.
MAX_ERRORS = 100


class Feature(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=FEATURE_NAME)
    # number: any JSON number (the model sees floats); string: a category.
    type: Literal["number", "string"] = "number"


class Signature(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: Literal["classification", "regression"]
    features: list[Feature] = Field(min_length=1, max_length=1000)
    # A classifier's labels, in the order of its probability columns.
    classes: list[str | int] | None = None

    @field_validator("features")
    @classmethod
    def _distinct(cls, features: list[Feature]) -> list[Feature]:
        names = [feature.name for feature in features]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"features named twice: {', '.join(repeated)}")
        return features

    @property
    def numeric(self) -> bool:
        return all(feature.type == "number" for feature in self.features)


class InputError(ValueError):
    """Rows that do not fit the signature; ``errors`` are pydantic-style error dicts."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} invalid input field(s)")
        self.errors = errors


def _error(loc: Loc, kind: str, message: str, value: object) -> dict[str, Any]:
    return {"loc": loc, "type": kind, "msg": message, "input": value}


def rows_array(
    signature: Signature, rows: Sequence[Mapping[str, object]], locs: Sequence[Loc]
) -> NDArray[Any]:
    """The rows as the 2-D array the model takes, checked field by field.

    Every error is collected, so one answer names them all; ``locs`` says where each row
    sat in the request. Numbers become float64 (object when a feature is a string).
    """
    names = [feature.name for feature in signature.features]
    expected = set(names)
    errors: list[dict[str, Any]] = []
    for row, loc in zip(rows, locs, strict=True):
        if len(errors) >= MAX_ERRORS:
            break
        for name in sorted(row.keys() - expected):
            errors.append(
                _error((*loc, name), "extra_forbidden", "not a feature of this model", row[name])
            )
        for feature in signature.features:
            if feature.name not in row:
                errors.append(_error((*loc, feature.name), "missing", "Field required", None))
                continue
            value = row[feature.name]
            if feature.type == "number":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    errors.append(
                        _error(
                            (*loc, feature.name), "float_type", "Input should be a number", value
                        )
                    )
                elif not math.isfinite(value):
                    errors.append(
                        _error(
                            (*loc, feature.name),
                            "finite_number",
                            "Input should be a finite number",
                            value,
                        )
                    )
            elif not isinstance(value, str):
                errors.append(
                    _error(
                        (*loc, feature.name), "string_type", "Input should be a valid string", value
                    )
                )
    if errors:
        raise InputError(errors[:MAX_ERRORS])
    dtype: type = np.float64 if signature.numeric else object
    return np.array([[row[name] for name in names] for row in rows], dtype=dtype)
