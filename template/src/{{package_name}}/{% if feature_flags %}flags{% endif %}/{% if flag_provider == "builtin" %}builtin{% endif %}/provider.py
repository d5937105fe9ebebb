"""The built-in OpenFeature provider: definitions from the database, evaluated in memory.

``replace`` swaps the whole set of compiled flags at once (a change arriving from another
worker, or a reload), so an evaluation never sees half an update.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata

from .evaluation import CompiledFlag
from .schemas import FlagDefinition, FlagType

T = TypeVar("T")
ObjectValue = Sequence[FlagValueType] | Mapping[str, FlagValueType]


class BuiltinProvider(AbstractProvider):
    def __init__(self) -> None:
        super().__init__()
        self._flags: dict[str, CompiledFlag] = {}

    def get_metadata(self) -> Metadata:
        return Metadata(name="builtin")

    def replace(self, definitions: Iterable[FlagDefinition]) -> None:
        """Installs a new set of flags and tells OpenFeature which ones changed."""
        compiled = {definition.key: CompiledFlag(definition) for definition in definitions}
        changed = sorted(
            key
            for key in compiled.keys() | self._flags.keys()
            if key not in compiled
            or key not in self._flags
            or compiled[key].definition != self._flags[key].definition
        )
        self._flags = compiled
        if changed:
            self.emit_provider_configuration_changed(ProviderEventDetails(flags_changed=changed))

    def compiled(self, key: str) -> CompiledFlag | None:
        return self._flags.get(key)

    def all_compiled(self) -> list[CompiledFlag]:
        return list(self._flags.values())

    def _resolve(
        self,
        flag_key: str,
        default_value: T,
        context: EvaluationContext | None,
        flag_type: FlagType,
        accepts: type | tuple[type, ...],
    ) -> FlagResolutionDetails[T]:
        flag = self._flags.get(flag_key)
        if flag is None:
            return FlagResolutionDetails(
                default_value,
                error_code=ErrorCode.FLAG_NOT_FOUND,
                error_message=f"no flag {flag_key!r}",
                reason=Reason.ERROR,
            )
        if flag.type != flag_type:
            return FlagResolutionDetails(
                default_value,
                error_code=ErrorCode.TYPE_MISMATCH,
                error_message=f"flag {flag_key!r} is a {flag.type} flag, not {flag_type}",
                reason=Reason.ERROR,
            )
        context = context or EvaluationContext()
        resolution = flag.evaluate(context.targeting_key, context.attributes)
        if resolution.variant is None:
            return FlagResolutionDetails(default_value, reason=resolution.reason)
        value = resolution.value
        if accepts is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, accepts) or (accepts is int and isinstance(value, bool)):
            return FlagResolutionDetails(
                default_value,
                error_code=ErrorCode.TYPE_MISMATCH,
                error_message=f"variant {resolution.variant!r} of {flag_key!r} is not {flag_type}",
                reason=Reason.ERROR,
            )
        return FlagResolutionDetails(
            value,  # type: ignore[arg-type]
            variant=resolution.variant,
            reason=resolution.reason,
        )

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, "boolean", bool)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, "string", str)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, "number", int)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, "number", float)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: ObjectValue,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[ObjectValue]:
        return self._resolve(flag_key, default_value, evaluation_context, "object", dict)
