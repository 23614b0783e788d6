"""Prometheus metrics of the concentrator (served on WINDPARK_METRICS_PORT when set)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

from services.concentrator.ingest import JudgedBatch
from windpark.storage import BatchResult

MESSAGES = Counter(
    "windpark_concentrator_messages_total", "Messages judged, by outcome", ["outcome"]
)
REJECT_REASONS = Counter(
    "windpark_concentrator_reject_reasons_total", "Reject reason codes seen", ["code"]
)
STORED = Counter("windpark_concentrator_readings_stored_total", "Readings inserted")
DUPLICATES = Counter("windpark_concentrator_duplicates_total", "Readings absorbed as duplicates")
CONFLICTS = Counter(
    "windpark_concentrator_conflicts_total",
    "Readings kept as conflicts: same turbine and ts as a stored one, other values",
)
REJECTED = Counter("windpark_concentrator_rejects_stored_total", "Rejects stored")
REFRESH_FAILURES = Counter(
    "windpark_concentrator_refresh_failures_total",
    "Committed batches whose continuous-aggregate refresh failed (community license):"
    " their buckets stay stale until the refresh policies run",
)
DB_RETRIES = Counter("windpark_concentrator_db_retries_total", "Database attempts retried")
BATCH_SECONDS = Histogram(
    "windpark_concentrator_batch_seconds",
    "Time from batch start to ack",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "windpark_concentrator_batch_messages",
    "Messages per batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)


def observe_batch(judged: JudgedBatch, result: BatchResult, seconds: float) -> None:
    for outcome, count in judged.outcomes.items():
        MESSAGES.labels(outcome).inc(count)
    for code, count in judged.reasons.items():
        REJECT_REASONS.labels(code).inc(count)
    STORED.inc(result.stored)
    DUPLICATES.inc(result.duplicates)
    CONFLICTS.inc(result.conflicts)
    REJECTED.inc(result.rejected)
    REFRESH_FAILURES.inc(result.refresh_failed)
    BATCH_SECONDS.observe(seconds)
    BATCH_SIZE.observe(sum(judged.outcomes.values()))


def serve(host: str, port: int) -> None:
    if port:
        start_http_server(port, addr=host)
