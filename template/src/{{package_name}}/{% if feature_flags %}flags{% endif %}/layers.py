"""Providers other slices put around the flag provider (experiments, tenant overrides).

A slice whose lifespan starts before the flags' adds a layer; the flags lifespan wraps
the provider it builds in every layer, innermost first (by ``order``, then as added),
before OpenFeature gets it. So a layer sees every read, and the wrapped provider is
started and stopped once, by OpenFeature, through the outermost layer.

Remote evaluation (the built-in provider's OFREP endpoints) reads compiled flags, not
typed values through OpenFeature, so a layer that serves keys of its own also answers
untyped (``ServingLayer``), and says what context the wrapped provider should see.
``ProviderLayer`` is both: a subclass says which reads it serves and what it adds to the
context, and the typed reads, the untyped ones and the wrapped provider's lifecycle,
events, hooks and tracking are handled here once.
"""

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from fastapi import FastAPI
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEvent, ProviderEventDetails
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.hook import Hook
from openfeature.provider import FeatureProvider, Metadata
from openfeature.track import TrackingEventDetails
from pydantic import JsonValue

T = TypeVar("T")
LayerFactory = Callable[[FeatureProvider], FeatureProvider]
ObjectValue = Sequence[FlagValueType] | Mapping[str, FlagValueType]
Emit = Callable[[FeatureProvider, ProviderEvent, ProviderEventDetails], None]


@runtime_checkable
class ServingLayer(Protocol):
    def context_for(self, context: EvaluationContext) -> EvaluationContext:
        """The context the wrapped provider evaluates with (attributes added)."""
        ...

    def served_keys(self, context: EvaluationContext) -> Iterable[str]:
        """The keys this layer answers itself for ``context`` (a bulk evaluation lists
        them beside the wrapped provider's)."""
        ...

    def resolve_untyped(
        self, flag_key: str, context: EvaluationContext, *, read: bool = True
    ) -> FlagResolutionDetails[JsonValue] | None:
        """The layer's answer for ``flag_key``, or None to let the wrapped provider answer.

        ``read=False`` for an answer nobody is known to use yet (a bulk evaluation a
        front end caches): nothing is recorded about it.
        """
        ...


def add_provider_layer(app: FastAPI, layer: LayerFactory, *, order: int = 0) -> None:
    """Wraps the flag provider in ``layer``; a higher ``order`` wraps outside a lower one
    (it is asked first), whichever slice starts first."""
    app.state.flag_provider_layers = [*provider_layers(app), (order, layer)]


def provider_layers(app: FastAPI) -> list[tuple[int, LayerFactory]]:
    layers: list[tuple[int, LayerFactory]] = getattr(app.state, "flag_provider_layers", [])
    return layers


def layered(app: FastAPI, provider: FeatureProvider) -> FeatureProvider:
    """``provider`` in every layer; remembered as the one OpenFeature serves."""
    # Stable: layers of one order wrap in the order they were added.
    for _, layer in sorted(provider_layers(app), key=lambda added: added[0]):
        provider = layer(provider)
    app.state.served_flag_provider = provider
    return provider


def serving_layer(app: FastAPI) -> ServingLayer | None:
    """The outermost layer when it serves keys of its own (OFREP asks it first)."""
    provider = getattr(app.state, "served_flag_provider", None)
    return provider if isinstance(provider, ServingLayer) else None


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


def served_value(
    flag_key: str,
    value: object,
    default: Any,
    accepts: type,
    *,
    variant: str,
    reason: str,
    metadata: Mapping[str, Any],
) -> FlagResolutionDetails[Any]:
    """A layer's answer ``value`` for a read that ``accepts`` a type: the value, or the
    caller's default with TYPE_MISMATCH when it is not of that type."""
    if not _type_of(value, accepts):
        return FlagResolutionDetails(
            default,
            error_code=ErrorCode.TYPE_MISMATCH,
            error_message=f"{variant!r} of {flag_key!r} is not a {accepts.__name__}",
            reason=Reason.ERROR,
        )
    typed = float(value) if accepts is float else value  # type: ignore[arg-type]
    return FlagResolutionDetails(
        typed,
        variant=variant,
        reason=reason,
        flag_metadata=dict(metadata),
    )


class ProviderLayer:
    """A FeatureProvider around another: ``serve`` answers the reads the layer owns,
    every other read goes to the wrapped provider with the context ``enrich`` gives it."""

    def __init__(self, inner: FeatureProvider) -> None:
        self.inner = inner
        self._on_emit: Emit | None = None

    # What a layer decides.

    def enrich(self, context: EvaluationContext) -> EvaluationContext:
        """The context this layer's reads and the wrapped provider's see."""
        return context

    def serve(
        self,
        flag_key: str,
        default: T,
        context: EvaluationContext,
        accepts: type,
        *,
        read: bool = True,
    ) -> FlagResolutionDetails[T] | None:
        """The layer's answer, or None to let the wrapped provider answer. ``accepts``
        is the type the read asked for (``object``: untyped); ``read=False`` for an
        answer nobody is known to use yet (see ``ServingLayer.resolve_untyped``)."""
        return None

    def own_keys(self, context: EvaluationContext) -> Iterable[str]:
        """The keys ``serve`` may answer for ``context``."""
        return ()

    # Lifecycle and events: the wrapped provider's, reported as this provider's own
    # (OpenFeature tracks the status of the provider it was given, the outermost layer).

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

    def flags_changed(self, keys: list[str]) -> None:
        """Tells OpenFeature's handlers that these keys may now read differently."""
        if keys and self._on_emit is not None:
            details = ProviderEventDetails(flags_changed=keys)
            self._on_emit(self, ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, details)

    # Remote evaluation (ServingLayer); ``context`` has been through context_for().

    def context_for(self, context: EvaluationContext) -> EvaluationContext:
        context = self.enrich(context)
        if isinstance(self.inner, ServingLayer):
            return self.inner.context_for(context)
        return context

    def served_keys(self, context: EvaluationContext) -> list[str]:
        keys = set(self.own_keys(context))
        if isinstance(self.inner, ServingLayer):
            keys.update(self.inner.served_keys(context))
        return sorted(keys)

    def resolve_untyped(
        self, flag_key: str, context: EvaluationContext, *, read: bool = True
    ) -> FlagResolutionDetails[JsonValue] | None:
        served: FlagResolutionDetails[JsonValue] | None = self.serve(
            flag_key, None, context, object, read=read
        )
        if served is None and isinstance(self.inner, ServingLayer):
            return self.inner.resolve_untyped(flag_key, context, read=read)
        return served

    # Typed reads.

    def _resolve(
        self,
        resolve: Callable[[str, T, EvaluationContext | None], FlagResolutionDetails[T]],
        flag_key: str,
        default: T,
        context: EvaluationContext | None,
        accepts: type,
    ) -> FlagResolutionDetails[T]:
        if context is not None:
            context = self.enrich(context)
            served = self.serve(flag_key, default, context, accepts)
            if served is not None:
                return served
        return resolve(flag_key, default, context)

    async def _resolve_async(
        self,
        resolve: Callable[[str, T, EvaluationContext | None], Awaitable[FlagResolutionDetails[T]]],
        flag_key: str,
        default: T,
        context: EvaluationContext | None,
        accepts: type,
    ) -> FlagResolutionDetails[T]:
        if context is not None:
            context = self.enrich(context)
            served = self.serve(flag_key, default, context, accepts)
            if served is not None:
                return served
        return await resolve(flag_key, default, context)

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

    # Tracking: passed on.

    def track(
        self,
        tracking_event_name: str,
        evaluation_context: EvaluationContext | None = None,
        tracking_event_details: TrackingEventDetails | None = None,
    ) -> None:
        self.inner.track(tracking_event_name, evaluation_context, tracking_event_details)
