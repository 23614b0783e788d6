"""HTTP ingest: raw bytes -> the shared validator -> the broker, or the rejects table.

The API does not write readings itself. An accepted reading is published, byte for
byte as received, to the same exchange the turbines publish to, so the concentrator
stores it under the same rules as every other reading (it judges it again, with the
turbine's history, which the API does not have: soft checks are the concentrator's).
The answer (``Queued``, a 202) therefore promises "queued for storage", not "stored":
the concentrator may still store it, keep it as a conflict (another reading of the
same turbine and ts is stored), count it as a duplicate, or reject it.
A rejected message is kept raw with its reasons, as the concentrator keeps its own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.aggregator.registry_cache import RegistryCache
from windpark.publishing import PublishError, ReadingPublisher
from windpark.storage import RejectedMessage, write_batch
from windpark.validation import Outcome, QualityFlag, Reason, ReasonCode, Verdict, judge


class BrokerUnavailableError(RuntimeError):
    """The reading is valid but the broker is down or did not confirm it: try again later."""


@dataclass(frozen=True, slots=True)
class Queued:
    turbine_id: str
    seq: int
    ts: datetime
    message_id: str
    outcome: Outcome
    flags: QualityFlag


@dataclass(frozen=True, slots=True)
class Rejected:
    reasons: tuple[Reason, ...]
    turbine_id: str | None

    @property
    def impersonation(self) -> bool:
        """The body names another turbine than the one the sender's token is bound to."""
        return any(r.code is ReasonCode.TURBINE_MISMATCH for r in self.reasons)


async def ingest_http(
    raw: bytes,
    *,
    now: datetime,
    pool: asyncpg.Pool,
    registry: RegistryCache,
    publisher: ReadingPublisher | None,
    publish_timeout_s: float,
    claimed_turbine_id: str | None = None,
) -> Queued | Rejected:
    """Judge one posted message; publish it (accepted, flagged) or store it (rejected).

    ``claimed_turbine_id`` is the turbine the sender's token is bound to, if any: a body
    naming another one is rejected as ``turbine_mismatch`` (and kept, like every reject).
    Raises BrokerUnavailableError when a valid reading could not be handed to the broker;
    nothing was stored then, and the client should send it again.
    """
    verdict = judge(
        raw,
        now=now,
        turbines=await registry.turbines(pool),
        track=None,
        claimed_turbine_id=claimed_turbine_id,
    )
    if _names_unknown_turbine(verdict):
        # Perhaps provisioned since the registry was read.
        turbines = await registry.refresh(pool)
        if turbines is not None:
            verdict = judge(
                raw, now=now, turbines=turbines, track=None, claimed_turbine_id=claimed_turbine_id
            )

    if verdict.outcome is Outcome.REJECTED:
        reject = RejectedMessage(
            payload=raw,
            reasons=[(str(r.code), r.message, r.field) for r in verdict.reasons],
            source="http",
            received_at=now,
            # Every POST is a message of its own, even with the same bytes as another.
            dedup_key=f"http:{uuid.uuid4()}",
            turbine_id=verdict.turbine_id,
            seq=verdict.seq,
        )
        async with pool.acquire() as conn:
            await write_batch(conn, [], [reject])
        return Rejected(reasons=verdict.reasons, turbine_id=verdict.turbine_id)

    reading = verdict.reading
    if reading is None:  # judge gives the reading with every verdict but a reject
        raise RuntimeError(f"{verdict.outcome} verdict without a reading")
    if publisher is None:
        raise BrokerUnavailableError("not connected to the broker")
    # Also the concentrator's dedup key as it is: the prefix names the source once.
    message_id = f"http:{uuid.uuid4()}"
    try:
        await publisher.publish(
            raw, turbine_id=reading.turbine_id, message_id=message_id, timeout_s=publish_timeout_s
        )
    except PublishError as exc:
        raise BrokerUnavailableError(str(exc)) from exc
    return Queued(
        turbine_id=reading.turbine_id,
        seq=reading.seq,
        ts=reading.ts,
        message_id=message_id,
        outcome=verdict.outcome,
        flags=verdict.flags,
    )


def _names_unknown_turbine(verdict: Verdict) -> bool:
    return any(r.code is ReasonCode.UNKNOWN_TURBINE for r in verdict.reasons)
