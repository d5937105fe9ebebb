"""Conditions on the evaluation context, shared by every part that targets callers.

The built-in provider's flag rules and, with the experiments slice, experiment audiences
and cohorts all test the same context (flags/context.py) with the same conditions, so a
condition means one thing wherever it is written. A condition is compiled once per
change into a predicate: evaluations run it without further parsing.
"""

from collections.abc import Callable, Mapping
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

# Context attributes a condition can test. targetingKey is the user id (or anonymous id).
# No dots: flagd reads "a.b" as a nested path, this service as one key; the formats agree
# only on flat names.
AttributeName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]
TARGETING_KEY = "targetingKey"
# Context attributes holding lists of strings (see flags/context.py; ``cohorts`` is set by
# the experiments slice when it is generated): a condition on one tests its elements.
# Every other attribute is tested as one string.
LIST_ATTRIBUTES = frozenset({"groups", "roles", "cohorts"})
# Attributes the service sets as booleans (flags/context.py): conditions on them are
# ``in``/``not_in`` over "true" and "false", compared with the boolean.
BOOLEAN_ATTRIBUTES = frozenset({"anonymous"})
BOOLEAN_TEXTS = {"true": True, "false": False}

Attributes = Mapping[str, object]
Predicate = Callable[[str | None, Attributes], bool]


def error_details(
    loc: tuple[str | int, ...], value: object, kind: str, message: str
) -> InitErrorDetails:
    """One validation error at ``loc``; raised inside a validator, pydantic nests it
    under the model's own location, so a 422 names the offending field."""
    return InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=value)


def field_error(model: str, field: str, value: object, message: str) -> ValidationError:
    """A validation error of ``model`` naming ``field``, raised from a model validator."""
    return ValidationError.from_exception_data(
        model, [error_details((field,), value, "value_error", message)]
    )


class Condition(BaseModel):
    """``attribute`` of the evaluation context compared with ``values``.

    Conditions compare strings, as flagd's JsonLogic does: a value of another type (a
    boolean, a number, a list where a string belongs) meets no ``in``, ``starts_with``
    or ``ends_with`` and every ``not_in``, like an absent one. A list attribute
    (``LIST_ATTRIBUTES``) meets a condition when one of its string elements does, and
    meets none when it is not a list. A boolean attribute (``BOOLEAN_ATTRIBUTES``) is
    compared with the boolean its values "true"/"false" name.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    attribute: AttributeName
    operator: Literal["in", "not_in", "starts_with", "ends_with"]
    values: Annotated[list[Annotated[str, StringConstraints(max_length=256)]], Field(min_length=1)]

    @model_validator(mode="after")
    def _boolean_attribute_takes_booleans(self) -> Self:
        if self.attribute not in BOOLEAN_ATTRIBUTES:
            return self
        if self.operator not in ("in", "not_in"):
            message = f"{self.attribute!r} is a boolean: use in or not_in"
            raise field_error("Condition", "operator", self.operator, message)
        wrong = [value for value in self.values if value not in BOOLEAN_TEXTS]
        if wrong:
            message = f"{self.attribute!r} is a boolean: compare it with 'true' or 'false'"
            raise field_error("Condition", "values", wrong, message)
        return self


def _matcher(condition: Condition) -> Callable[[str], bool]:
    if condition.operator in ("in", "not_in"):
        return frozenset(condition.values).__contains__
    affixes = tuple(condition.values)
    if condition.operator == "starts_with":
        return lambda text: text.startswith(affixes)
    return lambda text: text.endswith(affixes)


def compile_condition(condition: Condition) -> Predicate:
    """The condition as a predicate over (targeting key, attributes)."""
    # Everything that does not depend on the caller is decided here, once per change:
    # each evaluation runs every condition of every rule before it reaches a rollout.
    name = condition.attribute
    from_key = name == TARGETING_KEY
    each_element = name in LIST_ATTRIBUTES
    # Python's equality, as flagd's JsonLogic ``in`` uses it (1 == True there too).
    boolean = name in BOOLEAN_ATTRIBUTES
    booleans = tuple(BOOLEAN_TEXTS[value] for value in condition.values) if boolean else ()
    matches = _matcher(condition)
    # not_in holds when nothing matches, an absent attribute included.
    negated = condition.operator == "not_in"

    def holds(targeting_key: str | None, attributes: Attributes) -> bool:
        value = targeting_key if from_key else attributes.get(name)
        # Strings only, as flagd compares (Condition): 42 is not "42".
        if boolean:
            met = value in booleans
        elif each_element:
            met = isinstance(value, list) and any(
                type(item) is str and matches(item) for item in value
            )
        else:
            met = type(value) is str and matches(value)
        return met is not negated

    return holds


def compile_all(conditions: list[Condition]) -> Predicate:
    """A predicate holding when every condition holds (an empty list always holds)."""
    predicates = tuple(compile_condition(condition) for condition in conditions)

    def holds(targeting_key: str | None, attributes: Attributes) -> bool:
        return all(predicate(targeting_key, attributes) for predicate in predicates)

    return holds
