"""Where model artifacts are kept: a local directory (the default) or an S3 bucket.

The registry stores an artifact's key, SHA-256 and size; the store decides where the key
lives, so a service can move its artifacts (copy the files, change the setting) without
touching the registry. Every read is checked against the stored digest.
"""

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

from .settings import MlSettings


class ArtifactMissingError(LookupError):
    """The store has no such artifact, or one whose digest differs from the registry's."""


class ArtifactStore(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str) -> bytes: ...

    def describe(self) -> str: ...


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def fetch_checked(store: ArtifactStore, key: str, sha256: str) -> bytes:
    data = await store.get(key)
    if digest(data) != sha256:
        raise ArtifactMissingError(
            f"artifact {key} in {store.describe()} does not match its registered SHA-256"
        )
    return data


class LocalArtifactStore:
    def __init__(self, root: Path) -> None:
        self._root = root

    def describe(self) -> str:
        return str(self._root)

    def _path(self, key: str) -> Path:
        path = (self._root / key).resolve()
        if not path.is_relative_to(self._root.resolve()):
            raise ArtifactMissingError(f"artifact key {key!r} leaves the artifact directory")
        return path

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, self._path(key), data)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        # Written beside the target and renamed: a reader never sees half a file.
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            Path(temporary).replace(path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    async def get(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self._path(key).read_bytes)
        except FileNotFoundError:
            raise ArtifactMissingError(f"no artifact {key} in {self._root}") from None


class S3ArtifactStore:
    """An S3-compatible bucket through boto3, whose blocking calls run in threads."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        # Imported here, as boto3 is: only services keeping artifacts in S3 load botocore.
        from botocore.exceptions import BotoCoreError, ClientError

        self._failures: tuple[type[Exception], ...] = (BotoCoreError, ClientError)
        self._client = client
        self._bucket = bucket
        self._prefix = prefix

    def describe(self) -> str:
        return f"s3://{self._bucket}/{self._prefix}"

    async def put(self, key: str, data: bytes) -> None:
        def write() -> None:
            try:
                self._client.put_object(Bucket=self._bucket, Key=self._prefix + key, Body=data)
            except self._failures as exc:
                raise OSError(f"{self.describe()}: {exc}") from exc

        await asyncio.to_thread(write)

    async def get(self, key: str) -> bytes:
        def read() -> bytes:
            try:
                found = self._client.get_object(Bucket=self._bucket, Key=self._prefix + key)
                body: bytes = found["Body"].read()
            except self._client.exceptions.NoSuchKey:
                raise ArtifactMissingError(f"no artifact {key} in {self.describe()}") from None
            except self._failures as exc:
                # Unreachable, refused, no such bucket: the store's fault, not the key's.
                raise OSError(f"{self.describe()}: {exc}") from exc
            return body

        return await asyncio.to_thread(read)


def artifact_store(settings: MlSettings) -> ArtifactStore:
    if settings.artifact_store == "local":
        return LocalArtifactStore(settings.artifact_dir)
    import boto3  # imported only by services that keep their artifacts in S3

    s3 = settings.s3
    credentials = (
        {
            "aws_access_key_id": s3.access_key_id,
            "aws_secret_access_key": s3.secret_access_key.get_secret_value(),
        }
        if s3.access_key_id
        else {}
    )
    client = boto3.client(
        "s3", endpoint_url=s3.endpoint_url or None, region_name=s3.region, **credentials
    )
    return S3ArtifactStore(client, s3.bucket, s3.prefix)
