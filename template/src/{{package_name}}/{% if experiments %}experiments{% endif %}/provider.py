"""The OpenFeature provider layer that serves experiments through the flag client.

``ExperimentProvider`` wraps whatever provider the flags slice runs (built-in, flagd,
LaunchDarkly). A read of a running experiment's key returns the caller's arm, decided
here by the service's own assignment (core/assignment.py), whichever provider holds the
flags, and records the exposure; every other read goes to the wrapped provider
unchanged. With cohorts defined, every read's context also carries the caller's
``cohorts``, so flag rules can target them with any provider.

``track`` (OpenFeature's tracking API, ``client.track("purchase", ...)``) records a
metric event for the caller, then passes it on to the wrapped provider.
"""

from collections.abc import Iterable
from typing import TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import FeatureProvider
from openfeature.track import TrackingEventDetails

from ..flags.layers import ProviderLayer, served_value
from .recorder import Recorder
from .registry import ExperimentRegistry

T = TypeVar("T")


class ExperimentProvider(ProviderLayer):
    """A FeatureProvider: experiments first, then the wrapped provider."""

    def __init__(
        self, inner: FeatureProvider, registry: ExperimentRegistry, recorder: Recorder
    ) -> None:
        super().__init__(inner)
        self._registry = registry
        self._recorder = recorder

    def experiments_changed(self, keys: list[str]) -> None:
        """Tells OpenFeature's handlers that these keys may now read differently."""
        self.flags_changed(keys)

    def enrich(self, context: EvaluationContext) -> EvaluationContext:
        """The context with the caller's cohorts, as this service defines them."""
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

    def own_keys(self, context: EvaluationContext) -> Iterable[str]:
        return self._registry.live_keys()

    def serve(
        self,
        flag_key: str,
        default: T,
        context: EvaluationContext,
        accepts: type,
        *,
        read: bool = True,
    ) -> FlagResolutionDetails[T] | None:
        experiment = self._registry.get(flag_key)
        if experiment is None:
            return None
        assignment = experiment.assign(context.targeting_key, context.attributes)
        if assignment is None:
            return None
        served = served_value(
            flag_key,
            assignment.value,
            default,
            accepts,
            variant=assignment.arm,
            reason=Reason.SPLIT if assignment.exposure else Reason.STATIC,
            metadata={"experiment": flag_key},
        )
        if served.error_code is None and read and assignment.exposure and context.targeting_key:
            self._recorder.expose(flag_key, context.targeting_key, assignment.arm)
        return served

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
        super().track(tracking_event_name, evaluation_context, tracking_event_details)
