"""From broker messages to rows: judge every message of a batch, then store the batch.

Pure except ``store``: ``judge_batch`` takes the messages, the registry and the
per-turbine tracks, and returns what to write plus the tracks as they will be
after the commit. The caller adopts the new tracks only once the write committed,
so a retried batch is judged against the same state as the first attempt.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from windpark import rollups, storage
from windpark.storage import AcceptedReading, BatchResult, RejectedMessage, Source
from windpark.validation import Outcome, TurbineInfo, TurbineTrack, judge


@dataclass(frozen=True, slots=True)
class Inbound:
    """What the concentrator needs of one delivered message."""

    body: bytes
    routing_key: str
    message_id: str | None
    received_at: datetime
    mqtt: bool = False  # published through RabbitMQ's MQTT plugin


@dataclass(slots=True)
class JudgedBatch:
    accepted: list[AcceptedReading] = field(default_factory=list)
    rejected: list[RejectedMessage] = field(default_factory=list)
    tracks: dict[str, TurbineTrack] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    unknown_turbines: set[str] = field(default_factory=set)


def source_of(message: Inbound) -> Source:
    if message.mqtt:
        return "mqtt"
    # The API publishes HTTP readings with message ids "http:<uuid>".
    if message.message_id and message.message_id.startswith("http:"):
        return "http"
    return "amqp"


def claimed_turbine_id(message: Inbound) -> str:
    return message.routing_key.partition(".")[2]


def dedup_key(message: Inbound) -> str:
    """The message's identity, stable across redeliveries of the same message.

    ``<source>:<message id>``; the API's ids ("http:<uuid>") already name their source,
    and are the dedup key as they are, as for the rejects the API files itself.
    """
    source = source_of(message)
    if source == "http" and message.message_id:
        return message.message_id
    if message.message_id:
        return f"{source}:{message.message_id}"
    return storage.payload_dedup_key(f"{source}:{message.routing_key}", message.body)


def judge_batch(
    messages: Sequence[Inbound],
    *,
    now: datetime,
    turbines: Mapping[str, TurbineInfo],
    tracks: Mapping[str, TurbineTrack],
) -> JudgedBatch:
    batch = JudgedBatch(tracks=dict(tracks))
    for message in messages:
        # The raw suffix, even when malformed: the validator rejects a body that names
        # another turbine than the one the routing key (the transport) vouches for.
        claimed = claimed_turbine_id(message)
        verdict = judge(
            message.body,
            now=now,
            turbines=turbines,
            track=batch.tracks.get(claimed),
            claimed_turbine_id=claimed,
        )
        batch.outcomes[str(verdict.outcome)] += 1
        source = source_of(message)
        key = dedup_key(message)
        if verdict.outcome is Outcome.REJECTED or verdict.reading is None:
            for reason in verdict.reasons:
                batch.reasons[str(reason.code)] += 1
                if str(reason.code) == "unknown_turbine" and verdict.turbine_id:
                    batch.unknown_turbines.add(verdict.turbine_id)
            batch.rejected.append(
                RejectedMessage(
                    payload=message.body,
                    reasons=[(str(r.code), r.message, r.field) for r in verdict.reasons],
                    source=source,
                    received_at=message.received_at,
                    dedup_key=key,
                    # Unparseable bodies are still filed under the turbine whose routing
                    # key carried them.
                    turbine_id=verdict.turbine_id or claimed,
                    seq=verdict.seq,
                )
            )
            continue
        batch.accepted.append(
            AcceptedReading(
                reading=verdict.reading,
                quality_flags=int(verdict.flags),
                source=source,
                received_at=message.received_at,
                dedup_key=key,
                payload=message.body,
            )
        )
        if verdict.track is not None:
            batch.tracks[verdict.track.turbine_id] = verdict.track
    return batch


async def store(
    pool: asyncpg.Pool, batch: JudgedBatch, rollup_engine: rollups.Engine
) -> BatchResult:
    async with pool.acquire() as conn:
        return await storage.write_batch(
            conn, batch.accepted, batch.rejected, rollup_engine=rollup_engine
        )
