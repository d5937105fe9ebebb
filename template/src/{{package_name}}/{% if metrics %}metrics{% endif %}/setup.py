"""Wires the metrics slice into an application."""

from fastapi import FastAPI

from .middleware import ExemplarSource, HttpMetricsMiddleware


def instrument_metrics(app: FastAPI, exemplar: ExemplarSource | None = None) -> None:
    """Measure every request; ``exemplar`` links latency samples to traces."""
    app.add_middleware(HttpMetricsMiddleware, exemplar=exemplar)
