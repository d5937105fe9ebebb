"""Evaluates flag definitions locally: compiled once per change, no I/O per evaluation.

Reasons follow OpenFeature: DISABLED (the caller's default), TARGETING_MATCH (a rule
served a variant), SPLIT (a rollout picked the variant), STATIC (a flag without rules or
rollout), DEFAULT (rules exist but none matched, or a rollout had no targeting key).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from openfeature.flag_evaluation import Reason
from pydantic import JsonValue

from .bucketing import bucket_hash, pick_variant
from .schemas import Condition, FlagDefinition, Rollout, Serve

Attributes = Mapping[str, object]
Predicate = Callable[[str | None, Attributes], bool]


@dataclass(frozen=True)
class Resolution:
    """The variant and its value, or no variant (the caller's default) for DISABLED."""

    variant: str | None
    value: JsonValue
    reason: str


def _attribute(name: str, targeting_key: str | None, attributes: Attributes) -> object:
    return targeting_key if name == "targetingKey" else attributes.get(name)


def _text(value: object) -> str:
    # As JSON spells it, so a rule on ``anonymous`` matches the value "true".
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _candidates(value: object) -> list[str]:
    # A list attribute (groups) matches when any element does; scalars compare as text.
    if isinstance(value, list | tuple | set | frozenset):
        return [_text(item) for item in value if item is not None]
    return [] if value is None else [_text(value)]


def _compile_condition(condition: Condition) -> Predicate:
    name, values = condition.attribute, tuple(condition.values)
    wanted = frozenset(values)
    operator = condition.operator

    def holds(targeting_key: str | None, attributes: Attributes) -> bool:
        found = _candidates(_attribute(name, targeting_key, attributes))
        if operator == "in":
            return any(item in wanted for item in found)
        if operator == "not_in":
            return not any(item in wanted for item in found)
        if operator == "starts_with":
            return any(item.startswith(values) for item in found)
        return any(item.endswith(values) for item in found)

    return holds


class CompiledFlag:
    def __init__(self, definition: FlagDefinition) -> None:
        self.definition = definition
        self.key = definition.key
        self.type = definition.type
        self._variants = definition.variants
        self._rules = [
            ([_compile_condition(condition) for condition in rule.conditions], rule.serve)
            for rule in definition.rules
        ]
        self._default = Resolution(
            definition.default_variant,
            definition.variants[definition.default_variant],
            Reason.DEFAULT if self._rules or definition.fallthrough else Reason.STATIC,
        )

    def _rollout(self, rollout: Rollout, targeting_key: str | None) -> Resolution | None:
        if not targeting_key:
            return None
        weights = list(rollout.weights.items())
        variant = pick_variant(bucket_hash(self.key, targeting_key), weights)
        if variant is None:
            return None
        return Resolution(variant, self._variants[variant], Reason.SPLIT)

    def _serve(self, serve: Serve, targeting_key: str | None) -> Resolution | None:
        if serve.rollout is not None:
            return self._rollout(serve.rollout, targeting_key)
        if serve.variant is not None:
            return Resolution(serve.variant, self._variants[serve.variant], Reason.TARGETING_MATCH)
        return None

    def evaluate(self, targeting_key: str | None, attributes: Attributes) -> Resolution:
        if not self.definition.enabled:
            return Resolution(None, None, Reason.DISABLED)
        for conditions, serve in self._rules:
            if all(holds(targeting_key, attributes) for holds in conditions):
                return self._serve(serve, targeting_key) or self._default
        if self.definition.fallthrough is not None:
            return self._rollout(self.definition.fallthrough, targeting_key) or self._default
        return self._default
