"""The model registry: versions registered once and never changed, aliases moved, every
change audited. The API, the CLI and the tests all go through ``ModelRegistry``."""

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from numpy.typing import NDArray
from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..core.database import conflict_insert
from ..core.errors import ConflictError, NotFoundError
from .artifacts import ArtifactMissingError, ArtifactStore, digest, fetch_checked
from .drift import fingerprint, profile
from .formats import ArtifactRefusedError, Described, Framework, describe, load, predictor
from .models import ModelAliasRow, ModelChange, ModelRow, ModelVersionRow
from .schemas import ALIASES, MODEL_NAME, Alias, ChangeRead, ModelRead, VersionRead
from .signature import Feature, Signature

Changed = Callable[[], Awaitable[None]]
EXTENSIONS: dict[str, str] = {"sklearn": "skops", "onnx": "onnx"}


async def nothing_changed() -> None:
    """For callers without a serving process to tell (the CLI): workers poll."""


def version_read(row: ModelVersionRow, aliases: Sequence[Alias] = ()) -> VersionRead:
    return VersionRead(
        model=row.model_name,
        version=row.version,
        framework=row.framework,
        signature=Signature.model_validate(row.signature),
        metrics=row.metrics,
        training_fingerprint=row.training_fingerprint,
        drift_monitored=row.training_profile is not None,
        artifact_sha256=row.artifact_sha256,
        artifact_bytes=row.artifact_bytes,
        description=row.description,
        created_by=row.created_by,
        created_at=row.created_at,
        aliases=list(aliases),
    )


def _signature(
    described: Described,
    features: Sequence[str] | None,
    classes: Sequence[str | int] | None,
) -> Signature:
    names = list(features or described.feature_names or [])
    if not names:
        raise ArtifactRefusedError(
            "the model does not name its features: give them (a training CSV's header, "
            "or --features)"
        )
    if described.feature_count is not None and described.feature_count != len(names):
        raise ArtifactRefusedError(
            f"the model takes {described.feature_count} features, {len(names)} were named"
        )
    try:
        return Signature(
            task=described.task or "regression",
            features=[Feature(name=name) for name in names],
            classes=list(classes) if classes else described.classes,
        )
    except ValidationError as exc:
        problems = "; ".join(error["msg"] for error in exc.errors(include_url=False))
        raise ArtifactRefusedError(
            f"the features cannot be served as named ({', '.join(names)}): {problems}; names "
            "are letters, digits and '_', not starting with a digit, at most 64 characters"
        ) from None


def _checked(
    framework: Framework,
    described: Described,
    signature: Signature,
    training: NDArray[Any] | None,
) -> None:
    """Predicts a few rows, so an artifact that loads but cannot answer is refused now
    rather than when it is promoted."""
    import numpy as np

    rows = training[:5] if training is not None else np.zeros((1, len(signature.features)))
    try:
        predictor(framework, described.model, signature).predict(rows)
    except Exception as exc:
        raise ArtifactRefusedError(f"the model fails on its own inputs: {exc!r}") from None


class ModelRegistry:
    def __init__(
        self,
        session: AsyncSession,
        store: ArtifactStore,
        trusted: Sequence[str] = (),
        changed: Changed = nothing_changed,
    ) -> None:
        self._session = session
        self._store = store
        self._trusted = tuple(trusted)
        self._changed = changed

    async def register(
        self,
        name: str,
        framework: Framework,
        data: bytes,
        *,
        actor: str,
        features: Sequence[str] | None = None,
        classes: Sequence[str | int] | None = None,
        training: NDArray[Any] | None = None,
        metrics: dict[str, Any] | None = None,
        description: str = "",
    ) -> VersionRead:
        """Checks the artifact, stores it and records a new version of ``name``.

        Refuses (``ArtifactRefusedError``) what cannot be served: untrusted types in a
        skops file, a file that does not load, features that do not match the model.
        """
        if not re.fullmatch(MODEL_NAME, name):
            raise ArtifactRefusedError(
                f"{name!r} is not a model name: lower-case letters, digits, '.', '_' and "
                "'-', starting with a letter or digit, at most 64 characters"
            )
        if metrics is not None and not isinstance(metrics, dict):
            raise ArtifactRefusedError('the metrics must be a JSON object ({"auc": 0.91})')
        described = await asyncio.to_thread(describe, framework, data, self._trusted)
        signature = _signature(described, features, classes)
        await asyncio.to_thread(_checked, framework, described, signature, training)
        training_profile = None
        training_fingerprint = None
        if training is not None:
            if training.ndim != 2 or training.shape[1] != len(signature.features):
                raise ArtifactRefusedError(
                    f"the training data has {training.shape[-1]} columns, the model "
                    f"{len(signature.features)} features"
                )
            training_profile = profile(signature, training).model_dump()
            training_fingerprint = fingerprint(signature, training)
        sha256 = digest(data)
        dialect = self._session.get_bind().dialect.name
        await self._session.execute(
            conflict_insert(dialect)(ModelRow).values(name=name).on_conflict_do_nothing()
        )
        # Two registrations of one model may race for a number: the unique constraint
        # refuses the second, which takes the next one.
        for _ in range(5):
            version = 1 + (
                await self._session.scalar(
                    select(func.coalesce(func.max(ModelVersionRow.version), 0)).where(
                        ModelVersionRow.model_name == name
                    )
                )
                or 0
            )
            key = f"{name}/{version}/{sha256[:16]}.{EXTENSIONS[framework]}"
            await self._store.put(key, data)
            row = ModelVersionRow(
                model_name=name,
                version=version,
                framework=framework,
                artifact_key=key,
                artifact_sha256=sha256,
                artifact_bytes=len(data),
                signature=signature.model_dump(),
                metrics=metrics or {},
                training_fingerprint=training_fingerprint,
                training_profile=training_profile,
                description=description,
                created_by=actor,
            )
            try:
                async with self._session.begin_nested():
                    self._session.add(row)
            except IntegrityError:
                continue
            self._audit(name, "register", None, None, {"version": version}, actor)
            await self._session.commit()
            # A new model is answered (409: no champion yet) rather than unknown (404).
            await self._changed()
            return version_read(row)
        raise ConflictError(f"model {name!r}: too many concurrent registrations", field="name")

    def _audit(
        self,
        name: str,
        action: str,
        alias: Alias | None,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        actor: str,
    ) -> None:
        self._session.add(
            ModelChange(
                model_name=name, action=action, alias=alias, before=before, after=after, actor=actor
            )
        )

    async def _model(self, name: str) -> ModelRow:
        row = await self._session.get(ModelRow, name)
        if row is None:
            raise NotFoundError(f"no model {name!r}")
        return row

    async def _aliases(self, name: str) -> dict[Alias, int]:
        rows = await self._session.scalars(
            select(ModelAliasRow).where(ModelAliasRow.model_name == name)
        )
        return {row.alias: row.version for row in rows}  # type: ignore[misc]

    async def _read(self, row: ModelRow) -> ModelRead:
        latest = await self._session.scalar(
            select(func.max(ModelVersionRow.version)).where(ModelVersionRow.model_name == row.name)
        )
        return ModelRead(
            name=row.name,
            description=row.description,
            aliases=await self._aliases(row.name),
            challenger_percent=row.challenger_percent,
            experiment=row.experiment,
            latest_version=latest,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    async def list_models(self) -> list[ModelRead]:
        rows = await self._session.scalars(select(ModelRow).order_by(ModelRow.name))
        return [await self._read(row) for row in rows]

    async def get(self, name: str) -> ModelRead:
        return await self._read(await self._model(name))

    async def version_row(self, name: str, version: int) -> ModelVersionRow:
        row = await self._session.scalar(
            select(ModelVersionRow).where(
                ModelVersionRow.model_name == name, ModelVersionRow.version == version
            )
        )
        if row is None:
            await self._model(name)
            raise NotFoundError(f"model {name!r} has no version {version}")
        return row

    async def version(self, name: str, version: int) -> VersionRead:
        row = await self.version_row(name, version)
        aliases = await self._aliases(name)
        return version_read(row, [alias for alias, at in aliases.items() if at == version])

    async def versions(self, name: str) -> list[VersionRead]:
        await self._model(name)
        aliases = await self._aliases(name)
        rows = await self._session.scalars(
            select(ModelVersionRow)
            .where(ModelVersionRow.model_name == name)
            .order_by(ModelVersionRow.version.desc())
        )
        return [
            version_read(row, [alias for alias, at in aliases.items() if at == row.version])
            for row in rows
        ]

    async def _bump(self, name: str) -> None:
        """Counts a change the serving processes must see. In SQL, not in Python: SQLite
        ignores FOR UPDATE, and two read-modify-writes there would count one change."""
        await self._session.execute(
            update(ModelRow).where(ModelRow.name == name).values(revision=ModelRow.revision + 1)
        )

    async def _locked(self, name: str) -> ModelRow:
        """The model's row, locked until commit on PostgreSQL, so alias moves of one model
        never interleave (SQLite runs one writing transaction at a time)."""
        row = await self._session.scalar(
            select(ModelRow).where(ModelRow.name == name).with_for_update()
        )
        if row is None:
            raise NotFoundError(f"no model {name!r}")
        return row

    async def _move(
        self, model: ModelRow, alias: Alias, version: int | None, action: str, actor: str
    ) -> ModelRead:
        current = await self._session.get(ModelAliasRow, (model.name, alias))
        before = None if current is None else {"version": current.version}
        if version is None:
            if current is not None:
                await self._session.delete(current)
        elif current is None:
            self._session.add(
                ModelAliasRow(model_name=model.name, alias=alias, version=version, updated_by=actor)
            )
        else:
            current.version = version
            current.updated_by = actor
        await self._bump(model.name)
        self._audit(
            model.name,
            action,
            alias,
            before,
            None if version is None else {"version": version},
            actor,
        )
        await self._session.commit()
        await self._changed()
        return await self.get(model.name)

    async def promote(self, name: str, alias: Alias, version: int, actor: str) -> ModelRead:
        """Points ``alias`` at ``version``, once its artifact is known to load: every
        process serves it within a poll and a load."""
        model = await self._locked(name)
        await self._loadable(await self.version_row(name, version))
        return await self._move(model, alias, version, "promote", actor)

    async def _loadable(self, row: ModelVersionRow) -> None:
        """Refuses a version whose artifact is gone, changed or no longer loads (a file
        edited in the store, a trusted type since removed): promoted, it would leave the
        alias on its old version in every process, and a new process without a champion."""
        try:
            data = await fetch_checked(self._store, row.artifact_key, row.artifact_sha256)
            signature = Signature.model_validate(row.signature)
            framework: Framework = row.framework  # type: ignore[assignment]
            await asyncio.to_thread(load, framework, data, signature, self._trusted)
        except (ArtifactMissingError, ArtifactRefusedError) as exc:
            raise ConflictError(
                f"version {row.version} of {row.model_name!r} cannot be served: {exc}",
                field="version",
            ) from None

    async def retire(self, name: str, alias: Alias, actor: str) -> ModelRead:
        """Removes ``alias`` (a challenger or shadow that is done)."""
        model = await self._locked(name)
        if alias == "champion":
            raise ConflictError(
                "the champion answers every caller outside the challenger's share: promote "
                "another version instead of removing it",
                field="alias",
            )
        if await self._session.get(ModelAliasRow, (name, alias)) is None:
            raise NotFoundError(f"model {name!r} has no {alias}")
        if alias == "challenger" and (model.challenger_percent or model.experiment):
            # A challenger promoted later starts with no traffic, not its predecessor's.
            await self.split(name, 0.0, actor, commit=False)
        return await self._move(model, alias, None, "retire", actor)

    async def rollback(self, name: str, alias: Alias, actor: str) -> ModelRead:
        """Moves ``alias`` back to the version it pointed at before it was last promoted
        to its current one; repeated, it walks further back through the promotions."""
        model = await self._locked(name)
        current = await self._session.get(ModelAliasRow, (name, alias))
        if current is None:
            raise NotFoundError(f"model {name!r} has no {alias}")
        promotions = await self._session.scalars(
            select(ModelChange)
            .where(
                ModelChange.model_name == name,
                ModelChange.alias == alias,
                ModelChange.action == "promote",
            )
            .order_by(ModelChange.id.desc())
        )
        for change in promotions:
            if (change.after or {}).get("version") != current.version:
                continue
            previous = (change.before or {}).get("version")
            if previous is None:
                break
            return await self._move(model, alias, int(previous), "rollback", actor)
        raise ConflictError(
            f"the {alias} of {name!r} was not promoted from another version: nothing to "
            "roll back to",
            field="alias",
        )

    async def split(
        self,
        name: str,
        challenger_percent: float,
        actor: str,
        experiment: str | None = None,
        *,
        commit: bool = True,
    ) -> ModelRead:
        """Sends ``challenger_percent`` of callers to the challenger, or lets the arms of
        ``experiment`` (an experiment of the experiments slice) assign them."""
        model = await self._locked(name)
        if (challenger_percent > 0 or experiment is not None) and (
            await self._session.get(ModelAliasRow, (name, "challenger")) is None
        ):
            raise ConflictError(
                f"model {name!r} has no challenger to send traffic to: promote a version "
                "to challenger first",
                field="experiment" if experiment is not None else "challenger_percent",
            )
        before = {"challenger_percent": model.challenger_percent, "experiment": model.experiment}
        after = {"challenger_percent": challenger_percent, "experiment": experiment}
        model.challenger_percent = challenger_percent
        model.experiment = experiment
        await self._bump(name)
        self._audit(name, "split", None, before, after, actor)
        if not commit:  # part of a larger change, which commits
            return await self.get(name)
        await self._session.commit()
        await self._changed()
        return await self.get(name)

    async def changes(self, name: str, limit: int = 100) -> list[ChangeRead]:
        await self._model(name)
        rows = await self._session.scalars(
            select(ModelChange)
            .where(ModelChange.model_name == name)
            .order_by(ModelChange.id.desc())
            .limit(limit)
        )
        return [
            ChangeRead(
                id=row.id,
                model=row.model_name,
                action=row.action,
                alias=row.alias,
                before=row.before,
                after=row.after,
                actor=row.actor,
                changed_at=row.changed_at,
            )
            for row in rows
        ]


async def registry_revision(session: AsyncSession) -> tuple[int, int]:
    """What moves with every alias or split change: the processes' poll compares it."""
    count, total = (
        await session.execute(select(func.count(), func.coalesce(func.sum(ModelRow.revision), 0)))
    ).one()
    return int(count), int(total)


async def serving_state(
    session: AsyncSession,
) -> list[tuple[ModelRow, dict[Alias, ModelVersionRow]]]:
    """Each model with the versions its aliases point at, for a serving process."""
    models = list(await session.scalars(select(ModelRow).order_by(ModelRow.name)))
    pointed = await session.execute(
        select(ModelAliasRow.model_name, ModelAliasRow.alias, ModelVersionRow).join(
            ModelVersionRow,
            (ModelVersionRow.model_name == ModelAliasRow.model_name)
            & (ModelVersionRow.version == ModelAliasRow.version),
        )
    )
    by_model: dict[str, dict[Alias, ModelVersionRow]] = {}
    for name, alias, version in pointed:
        if alias in ALIASES:
            by_model.setdefault(name, {})[alias] = version
    return [(model, by_model.get(model.name, {})) for model in models]
