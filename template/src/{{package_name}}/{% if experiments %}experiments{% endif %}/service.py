"""Reading and changing experiments and cohorts, each change written to the audit log.

Every change commits the new state and its audit entry together, then tells the sync
(``notify``) so this process serves it at once and the others within a poll. Changes
apply to the version they read (optimistic concurrency), as for flags.

What may change when:

* draft: everything; ``start`` makes it running.
* running: the hypothesis, and the coverage upwards (raising it moves nobody between
  arms). Everything else is fixed (409 naming the field): arms, weights, seed, namespace
  and audience would move users between arms, and changing the metrics or the analysis
  options after seeing data would bias the results. ``stop`` ends it: everyone reads
  the flag as without the experiment.
* stopped: ``ship`` serves one arm to everyone; results stay readable.
"""

from collections.abc import Awaitable, Callable
from typing import Any, Literal

import structlog
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from ..core.database import utcnow
from ..core.errors import ConflictError, NotFoundError
from .models import CohortRow, ExperimentChange, ExperimentRow, Exposure
from .schemas import (
    ChangeRead,
    Cohort,
    CohortBody,
    Experiment,
    ExperimentBody,
    ExperimentRead,
)

logger = structlog.stdlib.get_logger(__name__)

Notify = Callable[[], Awaitable[None]]
Kind = Literal["experiment", "cohort"]
# Fields fixed once an experiment runs: the first four would move users between arms, the
# others would let the analysis be chosen after seeing the data.
FIXED_WHILE_RUNNING = (
    "arms",
    "seed",
    "namespace",
    "audience",
    "primary_metrics",
    "guardrail_metrics",
    "sequential",
    "planned_sample_size",
    "cuped_days",
)
ATTEMPTS = 5


async def nothing_to_announce() -> None:
    """The ``notify`` of a service whose changes others learn by polling (the CLI), or
    that only reads (the sync's reload)."""


def experiment_of(row: ExperimentRow) -> ExperimentRead:
    return ExperimentRead.model_validate(
        {
            **row.definition,
            "key": row.key,
            "status": row.status,
            "started_at": row.started_at,
            "stopped_at": row.stopped_at,
            "shipped_arm": row.shipped_arm,
        }
    )


def cohort_of(row: CohortRow) -> Cohort:
    return Cohort.model_validate({**row.definition, "key": row.key})


def _body_json(body: ExperimentBody | CohortBody) -> dict[str, Any]:
    return body.model_dump(mode="json", exclude={"key"})


def _state_json(row: ExperimentRow) -> dict[str, Any]:
    return experiment_of(row).model_dump(mode="json", exclude={"key"})


class ExperimentService:
    def __init__(self, session: AsyncSession, notify: Notify) -> None:
        self.session = session
        self.notify = notify

    # Experiments.

    async def list_all(self) -> list[ExperimentRead]:
        rows = await self.session.scalars(select(ExperimentRow).order_by(ExperimentRow.key))
        return [experiment_of(row) for row in rows]

    async def _row(self, key: str) -> ExperimentRow:
        row = await self.session.get(ExperimentRow, key, populate_existing=True)
        if row is None:
            raise NotFoundError(f"no experiment {key!r}")
        return row

    async def get(self, key: str) -> ExperimentRead:
        return experiment_of(await self._row(key))

    async def create(self, experiment: Experiment, actor: str) -> ExperimentRead:
        if await self.session.get(ExperimentRow, experiment.key) is not None:
            raise ConflictError(f"experiment {experiment.key!r} exists")
        row = ExperimentRow(key=experiment.key, definition=_body_json(experiment), status="draft")
        self.session.add(row)
        try:
            await self._commit("experiment", experiment.key, actor, "create", None, row)
        except IntegrityError as exc:
            await self.session.rollback()
            raise ConflictError(f"experiment {experiment.key!r} exists") from exc
        return experiment_of(row)

    async def replace(self, key: str, body: ExperimentBody, actor: str) -> ExperimentRead:
        def change(row: ExperimentRow) -> None:
            if row.status == "running":
                current = ExperimentBody.model_validate(row.definition)
                for name in FIXED_WHILE_RUNNING:
                    if getattr(current, name) != getattr(body, name):
                        raise ConflictError(
                            f"{name} cannot change while experiment {key!r} runs (it would "
                            "move users between arms or change the analysis after the "
                            "fact); stop it and start a new experiment",
                            field=f"body.{name}",
                        )
                if body.coverage < current.coverage:
                    raise ConflictError(
                        "coverage can only grow while the experiment runs: lowering it "
                        "would drop users who were already in",
                        field="body.coverage",
                    )
            elif row.status != "draft":
                raise ConflictError(f"experiment {key!r} is {row.status}; it can no longer change")
            row.definition = _body_json(body)

        return await self._change(key, "update", change, actor)

    async def start(self, key: str, actor: str) -> ExperimentRead:
        cohort = (await self.get(key)).audience.cohort
        if cohort is not None and await self.session.get(CohortRow, cohort) is None:
            raise ConflictError(
                f"the audience's cohort {cohort!r} does not exist; nobody would enter",
                field="audience.cohort",
            )

        def change(row: ExperimentRow) -> None:
            if row.status != "draft":
                raise ConflictError(
                    f"experiment {key!r} is {row.status}, not draft", field="status"
                )
            row.status = "running"
            row.started_at = utcnow()

        return await self._change(key, "start", change, actor)

    async def stop(self, key: str, actor: str) -> ExperimentRead:
        def change(row: ExperimentRow) -> None:
            if row.status != "running":
                raise ConflictError(
                    f"experiment {key!r} is {row.status}, not running", field="status"
                )
            row.status = "stopped"
            row.stopped_at = utcnow()

        return await self._change(key, "stop", change, actor)

    async def ship(self, key: str, arm: str, actor: str) -> ExperimentRead:
        def change(row: ExperimentRow) -> None:
            arms = [entry["key"] for entry in row.definition["arms"]]
            if arm not in arms:
                raise ConflictError(f"no arm {arm!r}; the experiment has {arms}", field="body.arm")
            if row.status == "running":
                row.stopped_at = utcnow()
            elif row.status != "stopped":
                raise ConflictError(
                    f"experiment {key!r} is {row.status}; ship a running or stopped one",
                    field="status",
                )
            row.status = "shipped"
            row.shipped_arm = arm

        return await self._change(key, "ship", change, actor)

    async def delete(self, key: str, actor: str) -> None:
        for _ in range(ATTEMPTS):
            row = await self._row(key)
            if row.status == "running":
                raise ConflictError(f"experiment {key!r} is running; stop it first", field="status")
            before = _state_json(row)
            await self.session.delete(row)
            # Its exposures go with it: the key may be used again for a new experiment.
            await self.session.execute(delete(Exposure).where(Exposure.experiment_key == key))
            self.session.add(
                ExperimentChange(
                    subject_kind="experiment",
                    subject_key=key,
                    actor=actor,
                    action="delete",
                    before=before,
                    after=None,
                )
            )
            try:
                await self.session.commit()
            except StaleDataError:
                await self.session.rollback()
                continue
            await self._notify()
            return
        raise ConflictError(f"experiment {key!r} kept changing while it was being deleted; retry")

    async def _change(
        self, key: str, action: str, change: Callable[[ExperimentRow], None], actor: str
    ) -> ExperimentRead:
        for _ in range(ATTEMPTS):
            row = await self._row(key)
            before = _state_json(row)
            change(row)
            if _state_json(row) == before:
                return experiment_of(row)
            try:
                await self._commit("experiment", key, actor, action, before, row)
            except StaleDataError:
                await self.session.rollback()
                continue
            return experiment_of(row)
        raise ConflictError(f"experiment {key!r} kept changing while this change was made; retry")

    async def _commit(
        self,
        kind: Kind,
        key: str,
        actor: str,
        action: str,
        before: dict[str, Any] | None,
        row: ExperimentRow | CohortRow | None,
    ) -> None:
        await self.session.flush()
        after: dict[str, Any] | None = None
        if isinstance(row, ExperimentRow):
            after = _state_json(row)
        elif isinstance(row, CohortRow):
            after = row.definition
        self.session.add(
            ExperimentChange(
                subject_kind=kind,
                subject_key=key,
                actor=actor,
                action=action,
                before=before,
                after=after,
            )
        )
        await self.session.commit()
        await self._notify()

    async def _notify(self) -> None:
        """Applies a committed change in this process now; if that fails, the change is
        saved all the same and the sync's next poll applies it (no error for the caller)."""
        try:
            await self.notify()
        except Exception:
            logger.warning("change saved; this process applies it at its next poll", exc_info=True)

    async def changes(self, kind: Kind, key: str, limit: int) -> list[ChangeRead]:
        rows = await self.session.scalars(
            select(ExperimentChange)
            .where(ExperimentChange.subject_kind == kind, ExperimentChange.subject_key == key)
            .order_by(ExperimentChange.id.desc())
            .limit(limit)
        )
        changes = [ChangeRead.model_validate(row, from_attributes=True) for row in rows]
        if not changes:
            raise NotFoundError(f"no {kind} {key!r}")
        return changes

    # Cohorts.

    async def list_cohorts(self) -> list[Cohort]:
        rows = await self.session.scalars(select(CohortRow).order_by(CohortRow.key))
        return [cohort_of(row) for row in rows]

    async def _cohort_row(self, key: str) -> CohortRow:
        row = await self.session.get(CohortRow, key, populate_existing=True)
        if row is None:
            raise NotFoundError(f"no cohort {key!r}")
        return row

    async def get_cohort(self, key: str) -> Cohort:
        return cohort_of(await self._cohort_row(key))

    async def put_cohort(self, key: str, body: CohortBody, actor: str) -> tuple[Cohort, bool]:
        """Creates or replaces cohort ``key``; True when it was created."""
        for _ in range(ATTEMPTS):
            row = await self.session.get(CohortRow, key, populate_existing=True)
            after = _body_json(body)
            if row is None:
                row = CohortRow(key=key, definition=after)
                self.session.add(row)
                try:
                    await self._commit("cohort", key, actor, "create", None, row)
                except IntegrityError:
                    await self.session.rollback()
                    continue
                return cohort_of(row), True
            before = row.definition
            if before == after:
                return cohort_of(row), False
            row.definition = after
            try:
                await self._commit("cohort", key, actor, "update", before, row)
            except StaleDataError:
                await self.session.rollback()
                continue
            return cohort_of(row), False
        raise ConflictError(f"cohort {key!r} kept changing while this change was made; retry")

    async def delete_cohort(self, key: str, actor: str) -> None:
        row = await self._cohort_row(key)
        users = [
            experiment.key
            for experiment in await self.list_all()
            if experiment.audience.cohort == key and experiment.status in ("draft", "running")
        ]
        if users:
            raise ConflictError(f"cohort {key!r} is the audience of {users}", field="path.key")
        before = row.definition
        await self.session.delete(row)
        try:
            await self._commit("cohort", key, actor, "delete", before, None)
        except StaleDataError as exc:
            await self.session.rollback()
            raise ConflictError(
                f"cohort {key!r} changed while it was being deleted; retry"
            ) from exc

    async def revision(self) -> tuple[Any, ...]:
        """Changes whenever an experiment or cohort does (the sync's cheap poll)."""
        experiments = (
            await self.session.execute(
                select(
                    func.count(),
                    func.max(ExperimentRow.updated_at),
                    func.sum(ExperimentRow.version),
                )
            )
        ).one()
        cohorts = (
            await self.session.execute(
                select(func.count(), func.max(CohortRow.updated_at), func.sum(CohortRow.version))
            )
        ).one()
        return (*experiments, *cohorts)
