"""Which exporters run, decided by OpenTelemetry's standard environment variables.

``OTEL_TRACES_EXPORTER`` / ``OTEL_LOGS_EXPORTER`` name the exporter (``otlp``, ``console``
or ``none``). Unlike the SDK's own default, an unset variable means ``otlp`` only when an
OTLP endpoint is configured: a laptop without a collector keeps its ids in the logs but
does not retry failed exports every few seconds.
"""

import os
from typing import Literal

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter, LogRecordExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter

Signal = Literal["traces", "logs"]
CHOICES = ("otlp", "console", "none")


def exporter_choice(signal: Signal) -> str:
    variable = f"OTEL_{signal.upper()}_EXPORTER"
    choice = os.environ.get(variable, "").strip().lower()
    if not choice:
        endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
        # An empty value counts as unset, so compose files can pass the variable through.
        return "otlp" if any(os.environ.get(name, "").strip() for name in endpoints) else "none"
    if choice not in CHOICES:
        raise ValueError(f"{variable}={choice!r} is not supported; use one of {', '.join(CHOICES)}")
    return choice


def span_exporter() -> SpanExporter | None:
    choice = exporter_choice("traces")
    if choice == "otlp":
        return OTLPSpanExporter()
    if choice == "console":
        return ConsoleSpanExporter()
    return None


def log_exporter() -> LogRecordExporter | None:
    choice = exporter_choice("logs")
    if choice == "otlp":
        return OTLPLogExporter()
    if choice == "console":
        return ConsoleLogRecordExporter()
    return None
