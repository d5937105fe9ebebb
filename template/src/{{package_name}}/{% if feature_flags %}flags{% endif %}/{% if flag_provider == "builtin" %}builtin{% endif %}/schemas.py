"""Flag definitions as the admin API, the database and the CLI exchange them.

A definition is validated as a whole, so a flag that reaches the evaluator is always
consistent: every variant has the flag's type, every rule serves a known variant, every
rollout's percentages are 0-100 and add up to 100. Errors name the field.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails

from ..targeting import Condition, error_details

FlagKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")]
VariantName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
FlagType = Literal["boolean", "string", "number", "object"]
Percent = Annotated[int, Field(ge=0, le=100)]
# Objects keyed by variant name: patternProperties alone would let the OpenAPI document
# accept keys the API refuses ("", "bad name").
_ONLY_VARIANT_NAMES: dict[str, JsonValue] = {"additionalProperties": False}

_TYPE_CHECKS: dict[str, Callable[[object], bool]] = {
    "boolean": lambda value: isinstance(value, bool),
    "string": lambda value: isinstance(value, str),
    "number": lambda value: isinstance(value, int | float) and not isinstance(value, bool),
    "object": lambda value: isinstance(value, dict),
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rollout(Strict):
    """Percent of the matching users per variant, sticky per user, in the listed order.

    Each variant holds a range of buckets in that order: with the order kept, raising
    one of two variants' share only adds users to it.
    """

    weights: Annotated[
        dict[VariantName, Percent], Field(min_length=1, json_schema_extra=_ONLY_VARIANT_NAMES)
    ]

    @model_validator(mode="after")
    def _adds_up_to_100(self) -> Self:
        total = sum(self.weights.values())
        if total != 100:
            raise ValueError(f"rollout percentages must add up to 100, not {total}")
        return self


class Serve(Strict):
    """What a rule (or the fallthrough) gives: one variant, or a percentage rollout."""

    variant: VariantName | None = None
    rollout: Rollout | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.variant is None) == (self.rollout is None):
            raise ValueError("give either variant or rollout")
        return self

    def variants(self) -> set[str]:
        if self.rollout is not None:
            return set(self.rollout.weights)
        return {self.variant} if self.variant is not None else set()


class Rule(Strict):
    """Serves ``serve`` to contexts that meet every condition. Rules are tried in order."""

    name: Annotated[str, StringConstraints(max_length=100)] = ""
    conditions: Annotated[list[Condition], Field(min_length=1, max_length=20)]
    serve: Serve


class FlagBody(Strict):
    """A flag's definition without its key (the admin API takes the key from the path)."""

    description: Annotated[str, StringConstraints(max_length=500)] = ""
    type: FlagType
    # Off: every evaluation returns the caller's default with reason DISABLED.
    enabled: bool = True
    variants: Annotated[
        dict[VariantName, JsonValue],
        Field(min_length=1, max_length=50, json_schema_extra=_ONLY_VARIANT_NAMES),
    ]
    # Served when no rule matches and there is no fallthrough rollout.
    default_variant: VariantName
    rules: Annotated[list[Rule], Field(max_length=50)] = []
    # For contexts no rule matched: a rollout, or None for the default variant.
    fallthrough: Rollout | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        # Each error carries its own location (variants.x, rules.0.serve.variant, ...), so
        # a 422 names the offending field rather than the whole body.
        errors: list[InitErrorDetails] = []
        check = _TYPE_CHECKS[self.type]
        for name, value in self.variants.items():
            if not check(value):
                article = "an" if self.type == "object" else "a"
                message = f"is not {article} {self.type}"
                errors.append(error_details(("variants", name), value, "variant_type", message))
        known = sorted(self.variants)
        served: list[tuple[tuple[str | int, ...], str]] = [
            (("default_variant",), self.default_variant)
        ]
        for index, rule in enumerate(self.rules):
            if rule.serve.rollout is not None:
                served += [
                    (("rules", index, "serve", "rollout", "weights", name), name)
                    for name in rule.serve.rollout.weights
                ]
            elif rule.serve.variant is not None:
                served.append((("rules", index, "serve", "variant"), rule.serve.variant))
        if self.fallthrough is not None:
            served += [
                (("fallthrough", "weights", name), name) for name in self.fallthrough.weights
            ]
        for loc, name in served:
            if name not in self.variants:
                message = f"unknown variant {name!r}; the flag has {known}"
                errors.append(error_details(loc, name, "unknown_variant", message))
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self


class FlagDefinition(FlagBody):
    key: FlagKey

    def changed(self, fields: dict[str, Any]) -> FlagBody:
        """This definition with ``fields`` replaced, validated as a whole."""
        return FlagBody.model_validate({**self.model_dump(exclude={"key"}), **fields})

    def rollout_weights(self, variant: str, percent: int) -> dict[str, int]:
        """Fallthrough weights serving ``variant`` to ``percent`` of the users no rule
        matches and the default variant to the rest.

        The variants keep the order the fallthrough already has (a new one goes last):
        buckets are cumulative ranges in that order (bucketing.py), so with the order
        fixed, raising a share only adds users and lowering it only removes them.
        Raises ValueError for an unknown variant, the default one, or a fallthrough that
        also serves other variants.
        """
        if variant not in self.variants:
            raise ValueError(f"unknown variant {variant!r}; the flag has {sorted(self.variants)}")
        rest = self.default_variant
        if variant == rest:
            raise ValueError(f"must differ from the default variant {rest!r}")
        weights = self.fallthrough.weights if self.fallthrough is not None else {}
        others = sorted(
            name for name, share in weights.items() if share and name not in {variant, rest}
        )
        if others:
            # A two-way rollout would silently move these variants' users elsewhere.
            raise ValueError(
                f"the fallthrough also serves {others}: set its weights in full instead"
            )
        shares = {variant: percent, rest: 100 - percent}
        # Zero-share variants stay listed (at zero): their places keep the others' ranges.
        order = [*weights, *(name for name in shares if name not in weights)]
        return {name: shares.get(name, 0) for name in order}


class FlagChangeRead(BaseModel):
    """One entry of the audit log: who changed what, when, from what to what."""

    id: int
    flag_key: str
    actor: str
    action: Literal["create", "update", "delete", "import"]
    before: dict[str, JsonValue] | None
    after: dict[str, JsonValue] | None
    changed_at: datetime
