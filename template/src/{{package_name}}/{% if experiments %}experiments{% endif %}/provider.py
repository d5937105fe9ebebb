"""The OpenFeature provider layer that serves experiments through the flag client.

``ExperimentProvider`` wraps whatever provider the flags slice runs (built-in, flagd,
LaunchDarkly). A read of a running experiment's key returns the caller's arm, decided
here by the service's own assignment (assignment.py), whichever provider holds the
flags, and records the exposure; every other read goes to the wrapped provider
unchanged. With cohorts defined, every read's context also carries the caller's
``cohorts``, so flag rules can target them with any provider.

``track`` (OpenFeature's tracking API, ``client.track("purchase", ...)``) records a
metric event for the caller, then passes it on to the wrapped provider.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEvent, ProviderEventDetails
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.hook import Hook
from openfeature.provider import FeatureProvider, Metadata
from openfeature.track import TrackingEventDetails
from pydantic import JsonValue

from .recorder import Recorder
from .registry import ExperimentRegistry

T = TypeVar("T")
ObjectValue = Sequence[FlagValueType] | Mapping[str, FlagValueType]
Emit = Callable[[FeatureProvider, ProviderEvent, ProviderEventDetails], None]
Resolve = Callable[[str, T, EvaluationContext | None], FlagResolutionDetails[T]]


def _type_of(value: object, accepts: type) -> bool:
    if accepts is object:
        return True
    if accepts is dict:
        # OpenFeature's object values are JSON objects or arrays.
        return isinstance(value, dict | list)
    if accepts is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if accepts is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, accepts)


class ExperimentProvider:
    """A FeatureProvider: experiments first, then the wrapped provider."""

    def __init__(
        self, inner: FeatureProvider, registry: ExperimentRegistry, recorder: Recorder
    ) -> None:
        self.inner = inner
        self._registry = registry
        self._recorder = recorder
        self._on_emit: Emit | None = None

    # Lifecycle and events: the wrapped provider's, reported as this provider's own
    # (OpenFeature tracks the status of the provider it was given, this one).

    def attach(self, on_emit: Emit) -> None:
        self._on_emit = on_emit
        self.inner.attach(lambda _inner, event, details: on_emit(self, event, details))

    def detach(self) -> None:
        self._on_emit = None
        self.inner.detach()

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        self.inner.initialize(evaluation_context)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def get_metadata(self) -> Metadata:
        return self.inner.get_metadata()

    def get_provider_hooks(self) -> list[Hook]:
        return self.inner.get_provider_hooks()

    def experiments_changed(self, keys: list[str]) -> None:
        """Tells OpenFeature's handlers that these keys may now read differently."""
        if keys and self._on_emit is not None:
            details = ProviderEventDetails(flags_changed=keys)
            self._on_emit(self, ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, details)

    # Reads.

    def _with_cohorts(self, context: EvaluationContext | None) -> EvaluationContext | None:
        """The context with the caller's cohorts, as this service defines them."""
        if context is None:
            return None
        cohorts = self._registry.cohorts_of(context.targeting_key, context.attributes)
        if cohorts:
            attributes = {**context.attributes, "cohorts": cohorts}
            return EvaluationContext(context.targeting_key, attributes)
        if "cohorts" in context.attributes:
            # A caller's own claim to cohorts (an OFREP body) counts for nothing.
            attributes = {k: v for k, v in context.attributes.items() if k != "cohorts"}
            return EvaluationContext(context.targeting_key, attributes)
        # In no cohort reads as no attribute: conditions on a missing list attribute meet
        # no ``in`` and every ``not_in``.
        return context

    # For remote evaluation (flags/layers.py's ServingLayer: the built-in OFREP endpoints).

    def context_for(self, context: EvaluationContext) -> EvaluationContext:
        return self._with_cohorts(context) or context

    def served_keys(self) -> list[str]:
        return self._registry.live_keys()

    def resolve_untyped(
        self, flag_key: str, context: EvaluationContext, *, read: bool = True
    ) -> FlagResolutionDetails[JsonValue] | None:
        return self._experiment(flag_key, None, context, object, expose=read)

    def _experiment(
        self,
        flag_key: str,
        default: T,
        context: EvaluationContext | None,
        accepts: type,
        *,
        expose: bool = True,
    ) -> FlagResolutionDetails[T] | None:
        experiment = self._registry.get(flag_key)
        if experiment is None or context is None:
            return None
        assignment = experiment.assign(context.targeting_key, context.attributes)
        if assignment is None:
            return None
        if not _type_of(assignment.value, accepts):
            return FlagResolutionDetails(
                default,
                error_code=ErrorCode.TYPE_MISMATCH,
                error_message=(
                    f"arm {assignment.arm!r} of experiment {flag_key!r} is not a {accepts.__name__}"
                ),
                reason=Reason.ERROR,
            )
        if expose and assignment.exposure and context.targeting_key:
            self._recorder.expose(flag_key, context.targeting_key, assignment.arm)
        value = float(assignment.value) if accepts is float else assignment.value  # type: ignore[arg-type]
        return FlagResolutionDetails(
            value,  # type: ignore[arg-type]
            variant=assignment.arm,
            reason=Reason.SPLIT if assignment.exposure else Reason.STATIC,
            flag_metadata={"experiment": flag_key},
        )

    def _resolve(
        self,
        resolve: Resolve[T],
        flag_key: str,
        default: T,
        context: EvaluationContext | None,
        accepts: type,
    ) -> FlagResolutionDetails[T]:
        context = self._with_cohorts(context)
        served = self._experiment(flag_key, default, context, accepts)
        return served if served is not None else resolve(flag_key, default, context)

    async def _resolve_async(
        self,
        resolve: Callable[[str, T, EvaluationContext | None], Any],
        flag_key: str,
        default: T,
        context: EvaluationContext | None,
        accepts: type,
    ) -> FlagResolutionDetails[T]:
        context = self._with_cohorts(context)
        served = self._experiment(flag_key, default, context, accepts)
        if served is not None:
            return served
        result: FlagResolutionDetails[T] = await resolve(flag_key, default, context)
        return result

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        resolve = self.inner.resolve_boolean_details
        return self._resolve(resolve, flag_key, default_value, evaluation_context, bool)

    async def resolve_boolean_details_async(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        resolve = self.inner.resolve_boolean_details_async
        return await self._resolve_async(resolve, flag_key, default_value, evaluation_context, bool)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        resolve = self.inner.resolve_string_details
        return self._resolve(resolve, flag_key, default_value, evaluation_context, str)

    async def resolve_string_details_async(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        resolve = self.inner.resolve_string_details_async
        return await self._resolve_async(resolve, flag_key, default_value, evaluation_context, str)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        resolve = self.inner.resolve_integer_details
        return self._resolve(resolve, flag_key, default_value, evaluation_context, int)

    async def resolve_integer_details_async(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        resolve = self.inner.resolve_integer_details_async
        return await self._resolve_async(resolve, flag_key, default_value, evaluation_context, int)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        resolve = self.inner.resolve_float_details
        return self._resolve(resolve, flag_key, default_value, evaluation_context, float)

    async def resolve_float_details_async(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        resolve = self.inner.resolve_float_details_async
        return await self._resolve_async(
            resolve, flag_key, default_value, evaluation_context, float
        )

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: ObjectValue,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[ObjectValue]:
        resolve = self.inner.resolve_object_details
        return self._resolve(resolve, flag_key, default_value, evaluation_context, dict)

    async def resolve_object_details_async(
        self,
        flag_key: str,
        default_value: ObjectValue,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[ObjectValue]:
        resolve = self.inner.resolve_object_details_async
        return await self._resolve_async(resolve, flag_key, default_value, evaluation_context, dict)

    # Tracking.

    def track(
        self,
        tracking_event_name: str,
        evaluation_context: EvaluationContext | None = None,
        tracking_event_details: TrackingEventDetails | None = None,
    ) -> None:
        subject = evaluation_context.targeting_key if evaluation_context else None
        value = tracking_event_details.value if tracking_event_details else None
        if subject:
            self._recorder.track(tracking_event_name, subject, 1.0 if value is None else value)
        self.inner.track(tracking_event_name, evaluation_context, tracking_event_details)
