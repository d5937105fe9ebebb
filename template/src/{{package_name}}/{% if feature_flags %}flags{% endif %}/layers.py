"""Providers other slices put around the flag provider (the experiments slice's).

A slice whose lifespan starts before the flags' adds a layer; the flags lifespan wraps
the provider it builds in every layer, in the order added, before OpenFeature gets it.
So a layer sees every read, and the wrapped provider is started and stopped once, by
OpenFeature, through the outermost layer.

Remote evaluation (the built-in provider's OFREP endpoints) reads compiled flags, not
typed values through OpenFeature, so a layer that serves keys of its own also answers
untyped (``ServingLayer``), and says what context the wrapped provider should see.
"""

from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from fastapi import FastAPI
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagResolutionDetails
from openfeature.provider import FeatureProvider
from pydantic import JsonValue

LayerFactory = Callable[[FeatureProvider], FeatureProvider]


@runtime_checkable
class ServingLayer(Protocol):
    def context_for(self, context: EvaluationContext) -> EvaluationContext:
        """The context the wrapped provider evaluates with (attributes added)."""
        ...

    def served_keys(self) -> Iterable[str]:
        """The keys this layer answers itself, for a caller of any kind."""
        ...

    def resolve_untyped(
        self, flag_key: str, context: EvaluationContext, *, read: bool = True
    ) -> FlagResolutionDetails[JsonValue] | None:
        """The layer's answer for ``flag_key``, or None to let the wrapped provider answer.

        ``read=False`` for an answer nobody is known to use yet (a bulk evaluation a
        front end caches): nothing is recorded about it.
        """
        ...


def add_provider_layer(app: FastAPI, layer: LayerFactory) -> None:
    app.state.flag_provider_layers = [*provider_layers(app), layer]


def provider_layers(app: FastAPI) -> list[LayerFactory]:
    layers: list[LayerFactory] = getattr(app.state, "flag_provider_layers", [])
    return layers


def layered(app: FastAPI, provider: FeatureProvider) -> FeatureProvider:
    """``provider`` in every layer; remembered as the one OpenFeature serves."""
    for layer in provider_layers(app):
        provider = layer(provider)
    app.state.served_flag_provider = provider
    return provider


def serving_layer(app: FastAPI) -> ServingLayer | None:
    """The outermost layer when it serves keys of its own (OFREP asks it first)."""
    provider = getattr(app.state, "served_flag_provider", None)
    return provider if isinstance(provider, ServingLayer) else None
