"""The metrics slice's settings: ``APP_METRICS__*``."""

from pydantic import BaseModel, Field


class MetricsSettings(BaseModel):
    # How often each worker samples event-loop lag, CPU, memory and the connection pool.
    runtime_sample_seconds: float = Field(default=1.0, gt=0)
    # The lag gauge reports the worst sample of this window: keep it at least as long as
    # the scrape interval, or stalls between scrapes go unseen.
    event_loop_lag_window_seconds: float = Field(default=15.0, gt=0)
