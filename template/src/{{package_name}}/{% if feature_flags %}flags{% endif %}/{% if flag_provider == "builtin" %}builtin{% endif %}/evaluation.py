"""Evaluates flag definitions locally: compiled once per change, no I/O per evaluation.

Reasons follow OpenFeature: DISABLED (the caller's default), TARGETING_MATCH (a rule
served a variant), SPLIT (a rollout picked the variant), STATIC (a flag without rules or
rollout), DEFAULT (rules exist but none matched, or a rollout had no targeting key).
"""

from dataclasses import dataclass

from openfeature.flag_evaluation import Reason
from pydantic import JsonValue

from ..targeting import Attributes, compile_condition
from .bucketing import bucket_hash, hash_prefix, pick_variant
from .schemas import FlagDefinition, Rollout


@dataclass(frozen=True)
class Resolution:
    """The variant and its value, or no variant (the caller's default) for DISABLED."""

    variant: str | None
    value: JsonValue
    reason: str


DISABLED = Resolution(None, None, Reason.DISABLED)
Weights = tuple[tuple[str, int], ...]


def _served_values(definition: FlagDefinition) -> dict[str, JsonValue]:
    """The variants' values as evaluations give them.

    A number flag with a fractional variant serves all its variants as floats, 1 as 1.0:
    OFREP clients type a value by its JSON spelling (openfeature-provider-ofrep refuses
    ``1`` to a float read and ``1.0`` to an integer read), so each of the flag's users
    then gets a value the same read accepts, over OFREP as in process. A flag of whole
    numbers serves integers, which in process also read as floats.
    """
    values = dict(definition.variants)
    if definition.type == "number" and any(isinstance(value, float) for value in values.values()):
        return {
            name: float(value) if isinstance(value, int) else value
            for name, value in values.items()
        }
    return values


def _weights(rollout: Rollout) -> Weights:
    return tuple(rollout.weights.items())


class CompiledFlag:
    def __init__(self, definition: FlagDefinition) -> None:
        self.definition = definition
        self.key = definition.key
        self.type = definition.type
        self._enabled = definition.enabled
        self._hash_prefix = hash_prefix(definition.key)
        variants = _served_values(definition)
        # Resolutions are immutable: one per variant and reason, built here, not per call.
        self._split = {
            name: Resolution(name, value, Reason.SPLIT) for name, value in variants.items()
        }
        self._matched = {
            name: Resolution(name, value, Reason.TARGETING_MATCH)
            for name, value in variants.items()
        }
        self._rules = [
            (
                tuple(compile_condition(condition) for condition in rule.conditions),
                self._matched.get(rule.serve.variant or ""),
                _weights(rule.serve.rollout) if rule.serve.rollout is not None else None,
            )
            for rule in definition.rules
        ]
        fallthrough = definition.fallthrough
        self._fallthrough = _weights(fallthrough) if fallthrough is not None else None
        self._default = Resolution(
            definition.default_variant,
            variants[definition.default_variant],
            Reason.DEFAULT if self._rules or fallthrough else Reason.STATIC,
        )

    def _rollout(self, weights: Weights, targeting_key: str | None) -> Resolution:
        if not targeting_key:
            return self._default
        variant = pick_variant(bucket_hash(self._hash_prefix, targeting_key), weights)
        return self._default if variant is None else self._split[variant]

    def evaluate(self, targeting_key: str | None, attributes: Attributes) -> Resolution:
        if not self._enabled:
            return DISABLED
        for conditions, served, weights in self._rules:
            for holds in conditions:
                if not holds(targeting_key, attributes):
                    break
            else:
                if weights is not None:
                    return self._rollout(weights, targeting_key)
                return served or self._default
        if self._fallthrough is not None:
            return self._rollout(self._fallthrough, targeting_key)
        return self._default
