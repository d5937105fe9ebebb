"""What a process serves: the loaded versions behind each model's aliases, how callers
split between champion and challenger, the copies a shadow predicts, and drift.

Every ``poll_seconds`` the process reads one cheap revision from the registry, and on a
change the aliases: a version it has not loaded is fetched, checked against its digest,
loaded and warmed up with one prediction off the event loop, and only then swapped in.
Until then the alias keeps serving what it served, so a promotion or a rollback never
leaves a gap; every worker serves the new version within a poll and a load.
"""

import asyncio
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import numpy as np
import structlog
from numpy.typing import NDArray
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..core.assignment import Split
from ..core.errors import ConflictError, NotFoundError, ProblemError
from .artifacts import ArtifactStore, fetch_checked
from .batching import MicroBatcher
from .drift import ACT_PSI, WARN_PSI, DriftWindow, TrainingProfile
from .formats import Framework, ModelInputError, Output, Predictor, checked_call, load
from .models import ModelVersionRow
from .observer import ServingObserver
from .recorder import PredictionLog
from .registry import registry_revision, serving_state
from .schemas import Alias, DriftRead, Role
from .settings import MlSettings
from .signature import InputError, Loc, Signature, rows_array

logger = structlog.stdlib.get_logger(__name__)

# The arm an experiment gives a routing key (recording the exposure), or None when the
# caller is not in it: the experiments slice's assignment, when the service has it.
ExperimentArm = Callable[[str, str], str | None]

# A version that failed to load is tried again this much later, not at every poll.
RETRY_LOAD_SECONDS = 30.0
# Versions no alias points at any more stay loaded, the latest few per model, so a
# rollback to one of them is served at the next poll without a load.
KEEP_UNUSED_VERSIONS = 2


class ModelLoadingError(ProblemError):
    status = 503

    def __init__(self, detail: str, retry_after: float = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(round(retry_after))})


class ModelRefusedInputError(ProblemError):
    """The model refused a request's rows (formats.ModelInputError), as a 422."""

    status = 422


LoadKey = tuple[str, int, str]


@dataclass(eq=False)
class LoadedVersion:
    model: str
    version: int
    digest: str
    signature: Signature
    predictor: Predictor
    batcher: MicroBatcher
    window: DriftWindow | None
    last_used: float = field(default_factory=time.monotonic)
    psi: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> LoadKey:
        return (self.model, self.version, self.digest)


@dataclass(frozen=True)
class Route:
    model: str
    # What the registry points each alias at, and what this process serves for it.
    wanted: Mapping[Alias, int]
    served: Mapping[Alias, LoadedVersion]
    challenger_percent: float
    split: Split
    # The experiment assigning callers instead of the split, and how to ask it.
    experiment: str | None = None
    experiment_arm: "ExperimentArm | None" = None

    def _to_challenger(self, routing_key: str | None) -> bool:
        if self.experiment is not None:
            # Callers without a key, or outside the experiment, get the champion.
            if self.experiment_arm is None or not routing_key:
                return False
            return self.experiment_arm(self.experiment, routing_key) == "challenger"
        return (
            self.challenger_percent > 0
            and self.split.arm(routing_key or uuid.uuid4().hex) == "challenger"
        )

    def choose(self, routing_key: str | None) -> tuple[Role, LoadedVersion] | None:
        champion = self.served.get("champion")
        challenger = self.served.get("challenger")
        if challenger is not None and self._to_challenger(routing_key):
            return "challenger", challenger
        return None if champion is None else ("champion", champion)


def _split(model: str, challenger_percent: float) -> Split:
    # The seed keeps each model's split independent of the others' and of experiments'.
    share = challenger_percent / 100
    return Split.of(f"model:{model}", [("champion", 1 - share), ("challenger", share)])


@dataclass
class _Comparison:
    route: Route
    served_role: Role
    served_version: int
    rows: Sequence[Mapping[str, object]]
    outputs: list[Output]
    prediction_id: str
    logged: bool


def _agree(first: Output, second: Output) -> bool:
    if "label" in first or "label" in second:
        return first.get("label") == second.get("label")
    return math.isclose(first["value"], second["value"], rel_tol=1e-3, abs_tol=1e-9)


def _warm_rows(signature: Signature, training: TrainingProfile | None) -> NDArray[Any]:
    """One plausible row: each feature's training median where known, else zero."""
    row: list[object] = []
    for feature in signature.features:
        bins = training.features.get(feature.name) if training else None
        if feature.type == "string":
            row.append("")
        elif bins and bins.edges:
            row.append(bins.edges[len(bins.edges) // 2])
        else:
            row.append(0.0)
    return np.array([row], dtype=np.float64 if signature.numeric else object)


class ModelServer:
    def __init__(
        self,
        settings: MlSettings,
        sessions: async_sessionmaker[AsyncSession],
        store: ArtifactStore,
        observer: ServingObserver,
        log: PredictionLog,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._store = store
        self._observer = observer
        self._log = log
        self._limiter = anyio.CapacityLimiter(settings.inference_threads)
        # Shadow copies and comparisons: one thread of their own, so they never take the
        # answers' threads; when they fall behind, their queue drops copies instead.
        self._copies_limiter = anyio.CapacityLimiter(1)
        self._routes: dict[str, Route] = {}
        # Keyed by the artifact's digest too: a registry emptied and filled again (a test
        # database) reuses names and numbers for other files.
        self._loaded: dict[LoadKey, LoadedVersion] = {}
        self._retry_at: dict[LoadKey, float] = {}
        self._revision: tuple[int, int] | None = None
        self._lock = asyncio.Lock()
        self._comparisons: asyncio.Queue[_Comparison] = asyncio.Queue(settings.shadow_queue_size)
        self.refreshed = False
        # Set by the lifespan when the experiments slice is on.
        self.experiment_arm: ExperimentArm | None = None

    # Loading

    async def _load(self, row: ModelVersionRow) -> LoadedVersion:
        started = time.perf_counter()
        signature = Signature.model_validate(row.signature)
        training = (
            None
            if row.training_profile is None
            else TrainingProfile.model_validate(row.training_profile)
        )
        data = await fetch_checked(self._store, row.artifact_key, row.artifact_sha256)
        framework: Framework = row.framework  # type: ignore[assignment]
        predictor = await anyio.to_thread.run_sync(
            load, framework, data, signature, self._settings.trusted_types, limiter=self._limiter
        )
        # Warm-up: the first call of a model pays for lazy set-up; a caller never does.
        # The row is made up (training medians), and a model may refuse it (a category
        # it never saw): then the first caller pays, and the version serves all the same.
        try:
            await anyio.to_thread.run_sync(
                checked_call, predictor, _warm_rows(signature, training), limiter=self._limiter
            )
        except ModelInputError:
            logger.info(
                "warm-up row refused by the model", model=row.model_name, version=row.version
            )
        name, version = row.model_name, row.version

        def observe(requests: int, rows: int, seconds: float) -> None:
            self._observer.batch(name, requests, rows, seconds)

        loaded = LoadedVersion(
            model=name,
            version=version,
            digest=row.artifact_sha256,
            signature=signature,
            predictor=predictor,
            batcher=MicroBatcher(
                partial(checked_call, predictor),
                self._limiter,
                max_rows=self._settings.max_batch_rows,
                wait_seconds=self._settings.batch_wait_ms / 1000,
                observe=observe,
            ),
            window=None
            if training is None
            else DriftWindow(signature, training, self._settings.drift_window),
        )
        classes = [str(label) for label in signature.classes or []]
        self._observer.known(
            name, version, classes, loaded.window.features if loaded.window else []
        )
        self._observer.loaded(name, "ok", time.perf_counter() - started)
        logger.info("model version loaded", model=name, version=version)
        return loaded

    async def _version(self, row: ModelVersionRow) -> LoadedVersion | None:
        key = (row.model_name, row.version, row.artifact_sha256)
        if key in self._loaded:
            return self._loaded[key]
        if time.monotonic() < self._retry_at.get(key, 0.0):
            return None
        try:
            loaded = await self._load(row)
        except Exception:
            self._retry_at[key] = time.monotonic() + RETRY_LOAD_SECONDS
            self._observer.loaded(row.model_name, "failed", 0.0)
            logger.exception(
                "model version not loaded; its alias keeps what it served",
                model=row.model_name,
                version=row.version,
                retry_in_seconds=RETRY_LOAD_SECONDS,
            )
            return None
        self._retry_at.pop(key, None)
        self._loaded[key] = loaded
        return loaded

    async def refresh(self) -> None:
        """Reads the registry and serves what its aliases point at."""
        async with self._lock:
            async with self._sessions() as session:
                revision = await registry_revision(session)
                state = await serving_state(session)
            routes: dict[str, Route] = {}
            for model, pointed in state:
                if model.name not in self._routes:
                    self._observer.model(model.name)
                previous = self._routes.get(model.name)
                served: dict[Alias, LoadedVersion] = {}
                for alias, row in pointed.items():
                    loaded = await self._version(row)
                    if loaded is None and previous is not None:
                        loaded = previous.served.get(alias)
                    if loaded is not None:
                        served[alias] = loaded
                for alias in ("champion", "challenger", "shadow"):
                    at = served.get(alias)
                    self._observer.serving(model.name, alias, None if at is None else at.version)
                routes[model.name] = Route(
                    model=model.name,
                    wanted={alias: row.version for alias, row in pointed.items()},
                    served=served,
                    challenger_percent=model.challenger_percent,
                    split=_split(model.name, model.challenger_percent),
                    experiment=model.experiment,
                    experiment_arm=self.experiment_arm,
                )
            self._routes = routes
            # Retried loads change nothing the revision shows: poll again until done.
            complete = all(
                route.wanted.get(alias)
                == (route.served[alias].version if alias in route.served else None)
                for route in routes.values()
                for alias in route.wanted
            )
            self._revision = revision if complete else None
            self.refreshed = True
            self._forget_unused()

    def _forget_unused(self) -> None:
        used = {loaded.key for route in self._routes.values() for loaded in route.served.values()}
        by_model: dict[str, list[LoadedVersion]] = {}
        for key, loaded in self._loaded.items():
            if key not in used:
                by_model.setdefault(loaded.model, []).append(loaded)
        for unused in by_model.values():
            unused.sort(key=lambda loaded: loaded.last_used, reverse=True)
            for loaded in unused[KEEP_UNUSED_VERSIONS:]:
                # In-flight batches keep their own reference and finish.
                del self._loaded[loaded.key]

    async def poll(self) -> None:
        async with self._sessions() as session:
            revision = await registry_revision(session)
        if revision != self._revision:
            await self.refresh()

    async def run(self) -> None:
        """Polls the registry every ``poll_seconds``."""
        failing = False
        while True:
            try:
                # A connection that hangs (rather than fails) must not stop the polling.
                async with asyncio.timeout(max(10.0, 5 * self._settings.poll_seconds)):
                    await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database being away must not end the sync: serve what is loaded.
                # One warning with its traceback per outage, not one a second.
                if not failing:
                    logger.warning("model registry not read; serving what is loaded", exc_info=True)
                failing = True
            else:
                if failing:
                    logger.info("model registry read again")
                failing = False
            await asyncio.sleep(self._settings.poll_seconds)

    def unready(self) -> list[str]:
        """Why this process cannot serve yet: models whose champion is not loaded."""
        if not self.refreshed:
            return ["the model registry has not been read yet"]
        reasons = [
            f"{name}: champion version {route.wanted['champion']} not loaded"
            for name, route in self._routes.items()
            if "champion" in route.wanted and "champion" not in route.served
        ]
        for name in self._settings.required_models:
            route = self._routes.get(name)
            if route is None or "champion" not in route.wanted:
                reasons.append(f"{name}: required, but has no champion")
        return reasons

    # Serving

    def route(self, name: str) -> Route:
        route = self._routes.get(name)
        if route is None and not self.refreshed:
            raise ModelLoadingError("the model registry has not been read yet")
        if route is None:
            raise NotFoundError(f"no model {name!r} to serve")
        return route

    def _no_champion(self, route: Route) -> ProblemError:
        wanted = route.wanted.get("champion")
        if wanted is not None:
            failed = any(key[:2] == (route.model, wanted) for key in self._retry_at)
            state = "failed to load (see the service's log)" if failed else "is still loading"
            return ModelLoadingError(
                f"model {route.model!r}: its champion, version {wanted}, {state}",
                retry_after=RETRY_LOAD_SECONDS if failed else 1,
            )
        return ConflictError(
            f"model {route.model!r} has no champion: promote a version to serve it",
            field="model",
        )

    async def predict(
        self,
        name: str,
        rows: Sequence[Mapping[str, object]],
        locs: Sequence[Loc],
        routing_key: str | None,
    ) -> tuple[LoadedVersion, Role, list[Output], str]:
        """The answers for ``rows`` from the version the caller's routing key goes to.

        Raises ``InputError`` for rows that do not fit that version's signature.
        """
        route = self.route(name)
        chosen = route.choose(routing_key)
        if chosen is None:
            raise self._no_champion(route)
        role, target = chosen
        rows_in = rows_array(target.signature, rows, locs)
        started = time.perf_counter()
        try:
            outputs = await target.batcher.predict(rows_in)
        except ModelInputError as exc:
            # The caller's rows, not the model, are at fault: not counted as an error.
            raise ModelRefusedInputError(str(exc), field="body") from None
        except Exception:
            self._observer.failed(name, target.version, role, len(rows_in))
            raise
        self._observer.predicted(name, target.version, role, outputs, time.perf_counter() - started)
        target.last_used = time.monotonic()
        if target.window is not None:
            target.window.add(rows_in)
        prediction_id = str(uuid.uuid4())
        logged = self._log.sampled()
        if logged:
            self._log.add(prediction_id, name, target.version, role, rows, outputs)
        comparison = _Comparison(route, role, target.version, rows, outputs, prediction_id, logged)
        if "shadow" in route.served or (role == "challenger" and self._settings.compare_challenger):
            try:
                self._comparisons.put_nowait(comparison)
            except asyncio.QueueFull:
                self._observer.dropped(name, "shadow", 1)
        return target, role, outputs, prediction_id

    async def _compare(self, job: _Comparison) -> None:
        # (alias compared, its role in the metrics and the log, the version)
        targets: list[tuple[Alias, str, LoadedVersion]] = []
        if "shadow" in job.route.served:
            targets.append(("shadow", "shadow", job.route.served["shadow"]))
        champion = job.route.served.get("champion")
        if job.served_role == "challenger" and self._settings.compare_challenger and champion:
            targets.append(("champion", "comparison", champion))
        name = job.route.model
        for alias, role, target in targets:
            try:
                rows = rows_array(target.signature, job.rows, [() for _ in job.rows])
            except InputError:
                # A shadow with other features cannot take these rows: nothing to compare.
                self._observer.dropped(name, "shadow", 1)
                continue
            started = time.perf_counter()
            try:
                # In a thread pool of its own, unbatched: copies never hold up answers.
                outputs = await anyio.to_thread.run_sync(
                    checked_call, target.predictor, rows, limiter=self._copies_limiter
                )
            except Exception:
                self._observer.failed(name, target.version, role, len(rows))
                logger.warning(
                    "copy not predicted",
                    model=name,
                    version=target.version,
                    role=role,
                    exc_info=True,
                )
                continue
            self._observer.predicted(
                name, target.version, role, outputs, time.perf_counter() - started
            )
            if alias == "shadow" and target.window is not None:
                # The shadow's own drift: the inputs it would answer if promoted.
                target.window.add(rows)
            for served, compared in zip(job.outputs, outputs, strict=True):
                self._observer.compared(name, job.served_role, alias, _agree(served, compared))
            if job.logged:
                self._log.add(job.prediction_id, name, target.version, role, job.rows, outputs)

    async def compare_forever(self) -> None:
        """Predicts the copies a shadow (or the champion behind a challenger) gets."""
        while True:
            job = await self._comparisons.get()
            try:
                await self._compare(job)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("comparison failed", model=job.route.model, exc_info=True)
            finally:
                self._comparisons.task_done()

    async def settle(self) -> None:
        """Waits until every queued comparison is done (tests, benchmarks)."""
        await self._comparisons.join()

    # Drift

    def measure_drift(self) -> None:
        for route in self._routes.values():
            for alias, loaded in route.served.items():
                if loaded.window is None or loaded.window.count < self._settings.drift_min_samples:
                    continue
                loaded.psi = loaded.window.psi()
                self._observer.drift(route.model, loaded.version, loaded.psi)
                worst = max(loaded.psi.values(), default=0.0)
                if worst > ACT_PSI:
                    logger.warning(
                        "inputs drifted from the training data",
                        model=route.model,
                        version=loaded.version,
                        alias=alias,
                        psi=loaded.psi,
                    )

    async def watch_drift(self) -> None:
        while True:
            await asyncio.sleep(self._settings.drift_check_seconds)
            try:
                self.measure_drift()
            except Exception:
                logger.warning("drift not measured", exc_info=True)

    def drift(self, name: str) -> list[DriftRead]:
        route = self.route(name)
        reads = []
        for alias, loaded in route.served.items():
            samples = 0 if loaded.window is None else loaded.window.count
            worst = max(loaded.psi.values(), default=0.0)
            if loaded.window is None:
                status = "unmonitored"
            elif samples < self._settings.drift_min_samples or not loaded.psi:
                status = "too few samples"
            else:
                status = "act" if worst > ACT_PSI else "watch" if worst > WARN_PSI else "none"
            reads.append(
                DriftRead(
                    model=name,
                    version=loaded.version,
                    alias=alias,
                    samples=samples,
                    psi=loaded.psi,
                    status=status,
                )
            )
        return reads

    async def close(self) -> None:
        for loaded in self._loaded.values():
            await loaded.batcher.close()
        for route in self._routes.values():
            for loaded in route.served.values():
                await loaded.batcher.close()
