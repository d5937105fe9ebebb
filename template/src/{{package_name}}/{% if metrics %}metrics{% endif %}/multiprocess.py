"""Correct counts under several uvicorn workers: prometheus_client's multiprocess mode.

Each worker writes its values to memory-mapped files in one directory, and whichever
worker answers ``/metrics`` sums them, so no count is lost to the scrape hitting another
worker. prometheus_client reads ``PROMETHEUS_MULTIPROC_DIR`` when it is first imported,
and stale files would add a previous run's counts, so ``serve`` prepares an empty
directory before the workers start.
"""

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
from prometheus_client import multiprocess

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_DIR_VARIABLE) or None


@contextmanager
def metrics_directory(workers: int) -> Iterator[None]:
    """Empties a configured directory; creates a temporary one for several workers."""
    configured = multiprocess_dir()
    if configured is not None:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        yield
        return
    if workers < 2:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="metrics-") as temporary:
        os.environ[MULTIPROCESS_DIR_VARIABLE] = temporary
        try:
            yield
        finally:
            del os.environ[MULTIPROCESS_DIR_VARIABLE]


def forget_dead_processes() -> None:
    """Drops the live gauges of workers that died without stopping cleanly.

    uvicorn replaces a crashed worker, but the dead one's files would keep counting its
    in-flight requests, memory and pool in the sums; each new worker sweeps them.
    """
    directory = multiprocess_dir()
    if directory is None:
        return
    pids = {
        int(match.group(1))
        for path in Path(directory).glob("gauge_live*_*.db")
        if (match := re.search(r"_(\d+)\.db$", path.name))
    }
    for pid in pids:
        if not psutil.pid_exists(pid):
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def forget_this_process() -> None:
    """Drops this worker's live gauges (in-flight requests, memory) when it stops."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
