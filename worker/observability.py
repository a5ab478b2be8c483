"""Logs and metrics of the amend processes.

Logs: `AMEND_LOG_FORMAT=json` writes one JSON object a line, with the round
and proposal ids lifted out of Temporal's workflow and activity context (or a
record's own `round_id`/`proposal_id` extras), so a log search finds
everything about one round.

Metrics: the worker exports Temporal's runtime metrics (task latencies,
polls, schedule-to-start) and amend's own counters, recorded through the
activity metric meter, on one Prometheus endpoint (`AMEND_WORKER_METRICS_BIND`).
The gateway serves its own at `/metrics` (see `gateway.metrics`).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from functools import cache
from typing import Any

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from constitution import round_id_of

CONTEXT_KEYS = ("temporal_workflow", "temporal_activity")


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            context = getattr(record, key, None)
            if isinstance(context, dict):
                workflow_id = str(context.get("workflow_id", ""))
                if (round_id := round_id_of(workflow_id)) is not None:
                    entry["round_id"] = round_id
                entry["workflow_id"] = workflow_id or None
                for name in ("activity_type", "workflow_type", "attempt"):
                    if name in context:
                        entry[name] = context[name]
        for key in ("round_id", "proposal_id", "actor"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps({k: v for k, v in entry.items() if v is not None}, default=str)


class WithoutTraceback(logging.Filter):
    """Keeps a library's warning to one line: the exception's message, not its traceback.

    asyncpg's pool logs a full traceback each time it fails to reconnect, several a
    second while the database is down; the line says as much, and `amend dev`
    names the database that stopped on a line of its own.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.levelno < logging.ERROR:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(error).__name__}: {error})"
            record.args = None
            record.exc_info = None
        return True


# Loggers whose warnings carry tracebacks nobody needs: see `WithoutTraceback`.
ONE_LINE_LOGGERS = ("asyncpg.pool",)


def configure_logging(verbose: bool, json_format: bool) -> None:
    for name in ONE_LINE_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, WithoutTraceback) for f in target.filters):
            target.addFilter(WithoutTraceback())
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonLogFormatter()
        if json_format
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


@cache
def metrics_runtime(bind: str) -> Runtime:
    """One Temporal runtime per process exporting Prometheus metrics at `bind`
    (host:port); clients connected with it report their workers' metrics."""
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind)))
