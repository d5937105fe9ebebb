"""The experiments and cohorts this process serves, compiled once per change.

``replace`` swaps the whole set at once (a change from this process or a reload after
another's), so a read never sees half an update. Only running and shipped experiments
are compiled: a draft or stopped experiment reads as the flag it names would without it.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import JsonValue

from ..core.assignment import Split
from ..flags.targeting import Attributes, Predicate, compile_all
from .schemas import Cohort, ExperimentRead


@dataclass(frozen=True)
class Assignment:
    arm: str
    value: JsonValue
    # True while the experiment runs (an exposure to record); False once an arm shipped.
    exposure: bool


class CompiledExperiment:
    def __init__(self, experiment: ExperimentRead) -> None:
        self.key = experiment.key
        self.definition = experiment
        self._values = {arm.key: arm.served() for arm in experiment.arms}
        self._shipped: Assignment | None = None
        if experiment.status == "shipped" and experiment.shipped_arm in self._values:
            arm = experiment.shipped_arm
            self._shipped = Assignment(arm, self._values[arm], exposure=False)
        namespace = experiment.namespace
        self._split = Split.of(
            experiment.seed or experiment.key,
            [(arm.key, arm.weight) for arm in experiment.arms],
            experiment.coverage,
            (namespace.name, namespace.start, namespace.end) if namespace else None,
        )
        self._audience: Predicate = compile_all(experiment.audience.conditions)
        self._cohort = experiment.audience.cohort

    def assign(self, targeting_key: str | None, attributes: Attributes) -> Assignment | None:
        """The caller's arm, or None when they are not in the experiment."""
        if self._shipped is not None:
            return self._shipped
        # No key, no sticky arm: such callers read the flag as without the experiment.
        if not targeting_key or not self._audience(targeting_key, attributes):
            return None
        if self._cohort is not None:
            cohorts = attributes.get("cohorts")
            if not isinstance(cohorts, list) or self._cohort not in cohorts:
                return None
        arm = self._split.arm(targeting_key)
        if arm is None:
            return None
        return Assignment(arm, self._values[arm], exposure=True)


class CompiledCohort:
    def __init__(self, cohort: Cohort) -> None:
        self.key = cohort.key
        self._members = frozenset(cohort.members)
        self._conditions: Predicate | None = (
            compile_all(cohort.conditions) if cohort.conditions else None
        )

    def contains(self, targeting_key: str | None, attributes: Attributes) -> bool:
        if targeting_key is not None and targeting_key in self._members:
            return True
        return self._conditions is not None and self._conditions(targeting_key, attributes)


@dataclass(frozen=True)
class _Snapshot:
    experiments: dict[str, CompiledExperiment]
    cohorts: tuple[CompiledCohort, ...]
    definitions: dict[str, ExperimentRead]


class ExperimentRegistry:
    def __init__(self) -> None:
        # One object, replaced whole: a read takes it once and sees one consistent set.
        self._now = _Snapshot({}, (), {})

    def replace(
        self, experiments: Iterable[ExperimentRead], cohorts: Iterable[Cohort]
    ) -> list[str]:
        """Installs a new set; returns the keys whose reads may have changed."""
        definitions = {experiment.key: experiment for experiment in experiments}
        compiled = {
            key: CompiledExperiment(experiment)
            for key, experiment in definitions.items()
            if experiment.status in ("running", "shipped")
        }
        before = self._now.experiments
        changed = sorted(
            key
            for key in compiled.keys() | before.keys()
            if key not in compiled
            or key not in before
            or compiled[key].definition != before[key].definition
        )
        self._now = _Snapshot(
            compiled, tuple(CompiledCohort(cohort) for cohort in cohorts), definitions
        )
        return changed

    def get(self, key: str) -> CompiledExperiment | None:
        return self._now.experiments.get(key)

    def definition(self, key: str) -> ExperimentRead | None:
        """Any experiment this process knows, whatever its status."""
        return self._now.definitions.get(key)

    def live_keys(self) -> list[str]:
        """Keys read differently because of an experiment (running or shipped)."""
        return list(self._now.experiments)

    def running(self) -> list[ExperimentRead]:
        definitions = self._now.definitions.values()
        return [experiment for experiment in definitions if experiment.status == "running"]

    def cohorts_of(self, targeting_key: str | None, attributes: Attributes) -> list[str]:
        return [
            cohort.key for cohort in self._now.cohorts if cohort.contains(targeting_key, attributes)
        ]
