"""The model serving slice's settings: ``APP_ML__*``."""

from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class S3Settings(BaseModel):
    """Where artifacts live when ``artifact_store`` is ``s3``; any S3-compatible store."""

    model_config = ConfigDict(extra="forbid")

    bucket: str = ""
    # Keys start with this prefix, so one bucket can hold several services' models.
    prefix: str = "models/"
    # MinIO, Ceph, R2...; empty for AWS itself.
    endpoint_url: str = ""
    region: str = "us-east-1"
    # Empty: boto3's own chain (environment, instance role, ~/.aws).
    access_key_id: str = ""
    secret_access_key: SecretStr = SecretStr("")


class MlSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Where registered artifacts are written and read: a directory, or an S3 bucket.
    artifact_store: str = Field(default="local", pattern="^(local|s3)$")
    artifact_dir: Path = Path("var/models")
    s3: S3Settings = S3Settings()
    # How often each process checks the registry for moved aliases or a changed canary
    # share (a change made through this process applies at once).
    poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # Threads running inference at once, over all models: the event loop never runs a
    # model. scikit-learn and onnxruntime release the GIL in their numeric kernels.
    inference_threads: int = Field(default=2, ge=1, le=64)
    # A request finding its version idle runs at once; those arriving while a call runs
    # wait for it to end, at most this long, to share the next call. 0: each on its own.
    batch_wait_ms: float = Field(default=2.0, ge=0, le=1000)
    # Rows several requests batched together add up to at most; a batch that reaches it
    # runs at once (one request of more rows still runs, as a call of its own).
    max_batch_rows: int = Field(default=256, ge=1, le=100_000)
    # Every model with a champion is loaded; these must also have one to be ready.
    required_models: list[str] = []
    # Each served version's last this many inputs are compared with its training data.
    # (8 bytes per feature each, per served version: 1000 inputs of 100 features, 800 kB.)
    drift_window: int = Field(default=1000, ge=50, le=100_000)
    # Fewer inputs than this in the window give no drift figure yet.
    drift_min_samples: int = Field(default=200, ge=10)
    drift_check_seconds: float = Field(default=30.0, gt=0)
    # Requests a shadow model (or a comparison) may be behind; beyond it, copies are
    # dropped and counted. Copies run in one thread of their own, never the answers'.
    shadow_queue_size: int = Field(default=1000, ge=1)
    # With a challenger taking traffic, the champion also predicts what the challenger
    # answered, off the request path, to measure their agreement.
    compare_challenger: bool = True
    # Share of predictions written to the prediction log for later labelling (0 to 1).
    prediction_log_rate: float = Field(default=0.0, ge=0, le=1)
    prediction_log_flush_seconds: float = Field(default=1.0, gt=0, le=60)
    # Types a scikit-learn artifact may hold beyond skops' own trusted list
    # ("mypackage.features.Clipper"): anything else is refused at registration.
    trusted_types: list[str] = []

    @model_validator(mode="after")
    def _store_named(self) -> Self:
        if self.artifact_store == "s3" and not self.s3.bucket:
            raise ValueError("artifact_store 's3' needs a bucket: set APP_ML__S3__BUCKET")
        return self
