"""What request schemas of every slice share."""

from typing import Any


def whole_number(value: Any) -> Any:
    """JSON Schema counts 637.0 as an integer, so the API takes it as one; 637.5 stays
    a float and is refused, as are strings and booleans (the models are strict).

    A ``BeforeValidator`` placed after the field's constraints: before them, pydantic
    would document the constraints as unknown keywords ("ge") instead of JSON Schema's
    "minimum", though it still enforced them.
    """
    return int(value) if isinstance(value, float) and value.is_integer() else value
