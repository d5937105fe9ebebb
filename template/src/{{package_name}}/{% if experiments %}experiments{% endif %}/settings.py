"""The experiments slice's settings: ``APP_EXPERIMENTS__*``."""

from pydantic import BaseModel, ConfigDict, Field


class ExperimentsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # How often each process checks the database for changed experiments and cohorts
    # (a change made through this process applies at once).
    poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # Exposures and metric events wait in process at most this long before their write;
    # a crash loses at most this much of them.
    flush_seconds: float = Field(default=1.0, gt=0, le=60)
    # The longest one batch's write may take; then it counts as failed and is retried.
    write_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # Rows per write; a full batch is written at once.
    batch_size: int = Field(default=500, ge=1, le=5000)
    # Entries waiting at most; beyond it the oldest are dropped and counted.
    exposure_buffer_size: int = Field(default=100_000, ge=100)
    # (experiment, subject) pairs the process remembers having queued, so repeated reads
    # by one user cost no write.
    remembered_subjects: int = Field(default=100_000, ge=0)
    # How often the running experiments' sample ratio is checked against the database.
    sample_ratio_check_seconds: float = Field(default=60.0, gt=0)
    # Significance level of the results (two-sided).
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
