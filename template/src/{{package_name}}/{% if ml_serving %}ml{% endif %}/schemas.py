"""The model registry and predictions as the API, the database and the CLI exchange them."""

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..core.schema_types import whole_number
from .signature import Signature

MODEL_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"
ModelName = Annotated[str, StringConstraints(pattern=MODEL_NAME)]
Alias = Literal["champion", "challenger", "shadow"]
ALIASES: tuple[Alias, ...] = ("champion", "challenger", "shadow")
# The aliases that answer callers; the shadow only ever predicts a copy.
Role = Literal["champion", "challenger"]
# Version numbers are stored as 32-bit integers.
MAX_VERSION = 2**31 - 1
# One request's rows at most (such a request is one model call of its own);
# APP_ML__MAX_BATCH_ROWS bounds what several requests batched together add up to.
MAX_REQUEST_ROWS = 1000


def _feature_value(value: object) -> float | str:
    # One check, so a wrong value gets one error (a union would report each member's).
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PydanticCustomError("feature_value", "Input should be a number or a string")
    return value


# What a feature takes: a JSON number or a string (a category); which one, the model's
# signature says, and the service checks before the model sees the row.
FeatureValue = Annotated[
    float | str,
    PlainValidator(_feature_value),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string"}]}),
]
Row = dict[str, FeatureValue]


class ModelRead(BaseModel):
    name: str
    description: str
    # Which version each alias points at.
    aliases: dict[Alias, int]
    # Share of callers (0 to 100) the challenger answers.
    challenger_percent: float
    # Or the experiment whose arms (champion, challenger) assign callers, when set.
    experiment: str | None
    latest_version: int | None
    created_at: datetime
    updated_at: datetime


class VersionRead(BaseModel):
    model: str
    version: int
    framework: Literal["sklearn", "onnx"]
    signature: Signature
    metrics: dict[str, JsonValue]
    training_fingerprint: str | None
    # Whether drift is measured for this version (it was registered with training data).
    drift_monitored: bool
    artifact_sha256: str
    artifact_bytes: int
    description: str
    created_by: str
    created_at: datetime
    # The aliases pointing at this version now.
    aliases: list[Alias]


class AliasMove(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Strict: true or "2" is not a version; 2.0 is (JSON Schema counts it an integer).
    version: Annotated[int, Field(ge=1, le=MAX_VERSION, strict=True), BeforeValidator(whole_number)]


class Split(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Share of callers the challenger answers, sticky per routing key.
    challenger_percent: float = Field(ge=0, le=100, strict=True)


class ChangeRead(BaseModel):
    """One entry of the audit log."""

    id: int
    model: str
    action: Literal["register", "promote", "rollback", "retire", "split"]
    alias: Alias | None
    before: dict[str, JsonValue] | None
    after: dict[str, JsonValue] | None
    actor: str
    changed_at: datetime


class PredictRequest(BaseModel):
    """One row in ``input`` or up to 1000 in ``inputs``, each an object of features."""

    model_config = ConfigDict(
        extra="forbid",
        # Exactly one of the two, and not null: what the validator below enforces.
        json_schema_extra={
            "oneOf": [
                {"required": ["input"], "properties": {"input": {"type": "object"}}},
                {"required": ["inputs"], "properties": {"inputs": {"type": "array"}}},
            ]
        },
    )

    input: Row | None = None
    inputs: list[Row] | None = Field(default=None, min_length=1, max_length=MAX_REQUEST_ROWS)
    # Whose request this is, for a sticky champion/challenger split (an end user's id);
    # without it, the caller's token subject.
    routing_key: str | None = Field(default=None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.input is None) == (self.inputs is None):
            raise ValueError("give either 'input' (one row) or 'inputs' (a list of rows)")
        return self


class Prediction(BaseModel):
    # A classifier's answer, and its probability per class when it gives them.
    label: str | int | None = None
    probabilities: dict[str, float] | None = None
    # A regressor's answer.
    value: float | None = None


class PredictResponse(BaseModel):
    model: str
    version: int
    # Which alias answered: the champion, or the challenger for callers in its share.
    served_by: Role
    # Quote it when labelling the prediction later (the prediction log's key).
    prediction_id: str
    prediction: Prediction | None = None
    predictions: list[Prediction] | None = None


class DriftRead(BaseModel):
    """Input drift of one served version, as this process measured it."""

    model: str
    version: int
    alias: Alias
    # Inputs in the window so far; PSI appears once there are APP_ML__DRIFT_MIN_SAMPLES.
    samples: int
    psi: dict[str, float]
    # none (< 0.1), watch (0.1 to 0.25) or act (> 0.25): the worst feature's.
    status: Literal["none", "watch", "act", "unmonitored", "too few samples"]


def prediction_output(output: dict[str, Any]) -> Prediction:
    return Prediction.model_validate(output)
