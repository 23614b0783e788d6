"""Reconcile what generators published with what the database holds, and score the validator.

Used by the end-to-end tests and the benchmarks, never by the services. Every message a
generator publishes carries the message id ``<sender>:<seq>:<n>``; the concentrator keeps
it as the dedup key of rejects (``rejected_readings.dedup_key = 'amqp:' || id``) and
duplicates, and stored readings are found by (turbine, seq). "Nothing lost" means that
every published seq of every turbine is in exactly one of: readings, rejected_readings,
and additionally duplicate_readings for the extra copies.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from windpark.db import Connection
from windpark.validation import QualityFlag

OUTCOMES = ("accepted", "flagged", "rejected", "duplicate")
# Notes about the stream, not doubts about the reading's values: a gap before it (the
# previous message was lost or rejected) or a restarted counter. They do not make a
# reading "flagged" when scoring the validator.
STREAM_FLAGS = QualityFlag.SEQ_GAP | QualityFlag.SEQ_RESET


@dataclass(slots=True)
class Ledger:
    """What the database holds for one sending turbine, by seq."""

    stored_flags: dict[int, int] = field(default_factory=dict)
    rejected: Counter[int] = field(default_factory=Counter)
    rejected_unattributed: int = 0  # rejects whose message id carries no seq
    duplicates: Counter[int] = field(default_factory=Counter)

    @property
    def rows(self) -> int:
        return (
            len(self.stored_flags)
            + sum(self.rejected.values())
            + self.rejected_unattributed
            + sum(self.duplicates.values())
        )


def _sender_and_seq(dedup_key: str) -> tuple[str, int | None] | None:
    # "<source>:<sender>:<seq>:<n>"
    parts = dedup_key.split(":")
    if len(parts) != 4:
        return None
    _, sender, seq, _ = parts
    return sender, int(seq) if seq.isdigit() else None


async def read_ledgers(conn: Connection, senders: Sequence[str]) -> dict[str, Ledger]:
    ledgers = {s: Ledger() for s in senders}
    rows = await conn.fetch(
        "SELECT turbine_id, seq, quality_flags FROM readings WHERE turbine_id = ANY($1::text[])",
        list(senders),
    )
    for row in rows:
        ledgers[row["turbine_id"]].stored_flags[row["seq"]] = row["quality_flags"]
    for table, attr in (("rejected_readings", "rejected"), ("duplicate_readings", "duplicates")):
        keys = await conn.fetch(
            f"SELECT dedup_key FROM {table} WHERE "
            + " OR ".join(f"dedup_key LIKE ${i + 1}" for i in range(len(senders))),
            *[f"%:{s}:%" for s in senders],
        )
        for row in keys:
            parsed = _sender_and_seq(row["dedup_key"])
            if parsed is None or parsed[0] not in ledgers:
                continue
            sender, seq = parsed
            if seq is None:
                ledgers[sender].rejected_unattributed += 1
            else:
                getattr(ledgers[sender], attr)[seq] += 1
    return ledgers


def load_truth(path: Path) -> list[dict[str, object]]:
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass(slots=True)
class Report:
    missing: dict[str, list[int]]  # published seqs found nowhere
    published_messages: int
    stored_rows: int
    db_rows: int  # readings + rejects + duplicates of these senders
    confusion: Counter[tuple[str, str]]  # (expected, actual) -> messages
    by_kind: dict[str, Counter[str]]  # fault kind -> actual outcomes

    def count(self, expected: str, actual: str) -> int:
        return self.confusion[(expected, actual)]

    def recall(self, expected: str, actual: str | None = None) -> float:
        actual = actual or expected
        total = sum(v for (e, _), v in self.confusion.items() if e == expected)
        return self.confusion[(expected, actual)] / total if total else 1.0

    def precision(self, actual: str) -> float:
        total = sum(v for (_, a), v in self.confusion.items() if a == actual)
        return self.confusion[(actual, actual)] / total if total else 1.0

    def false_reject_rate(self) -> float:
        valid = sum(v for (e, _), v in self.confusion.items() if e == "accepted")
        return self.confusion[("accepted", "rejected")] / valid if valid else 0.0

    def matrix(self) -> str:
        width = 11
        lines = ["expected \\ actual".ljust(20) + "".join(a.rjust(width) for a in OUTCOMES)]
        for e in OUTCOMES:
            lines.append(
                e.ljust(20) + "".join(str(self.count(e, a)).rjust(width) for a in OUTCOMES)
            )
        return "\n".join(lines)


def reconcile(
    ledgers: Mapping[str, Ledger], truth: Iterable[Mapping[str, object]], published_seqs: int
) -> Report:
    """Compare the ledgers with ``published_seqs`` readings per sender and the truth log."""
    expected: dict[tuple[str, int], str] = {}
    kinds: dict[tuple[str, int], str] = {}
    extra_copies: Counter[str] = Counter()
    for record in truth:
        key = (str(record["turbine_id"]), int(str(record["seq"])))
        if record["expected"] == "duplicate":
            extra_copies[key[0]] += 1
            continue
        expected[key] = str(record["expected"])
        kinds[key] = str(record["kind"])
    confusion: Counter[tuple[str, str]] = Counter()
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    missing: dict[str, list[int]] = {}
    published_messages = stored = db_rows = 0
    for sender, ledger in ledgers.items():
        published_messages += published_seqs + extra_copies[sender]
        stored += len(ledger.stored_flags)
        db_rows += ledger.rows
        lost = []
        for seq in range(published_seqs):
            want = expected.get((sender, seq), "accepted")
            if seq in ledger.stored_flags:
                doubts = ledger.stored_flags[seq] & ~STREAM_FLAGS
                got = "flagged" if doubts else "accepted"
            elif ledger.rejected[seq]:
                got = "rejected"
            else:
                lost.append(seq)
                continue
            confusion[(want, got)] += 1
            if (sender, seq) in kinds:
                by_kind[kinds[(sender, seq)]][got] += 1
        for copies in ledger.duplicates.values():
            confusion[("duplicate", "duplicate")] += copies
            by_kind["duplicate"]["duplicate"] += copies
        if lost:
            missing[sender] = lost
    return Report(missing, published_messages, stored, db_rows, confusion, dict(by_kind))
