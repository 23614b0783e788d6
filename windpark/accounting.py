"""Reconcile what generators published with what the database holds, and score the validator.

Used by the end-to-end tests and the benchmarks, never by the services. Every message a
generator publishes carries the message id ``<sender>:<seq>:<n>``; the concentrator keeps
it as the dedup key of rejects (``rejected_readings.dedup_key = 'amqp:' || id``) and
duplicates, and stored readings are found by (turbine, seq). "Nothing lost" means that
every published seq of every turbine is in exactly one of: readings, rejected_readings,
and additionally duplicate_readings for the extra copies. A message delivered twice (the
concentrator died between its commit and its ack, or the generator published again after a
failed confirm) may add one duplicate_readings row under its own message id: that is a
redelivery absorbed, counted apart from the copies the simulator sent on purpose (which
the ground-truth log lists by seq).
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
    expected_copies: int = 0  # copies the simulator sent on purpose (ground truth)
    redeliveries: int = 0  # duplicate rows of a message delivered twice
    # What does not add up, one line each, naming the turbine, the seq and the ledger.
    problems: list[str] = field(default_factory=list)

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
    copies: dict[str, Counter[int]] = defaultdict(Counter)  # sender -> seq -> copies sent
    for record in truth:
        key = (str(record["turbine_id"]), int(str(record["seq"])))
        if record["expected"] == "duplicate":
            copies[key[0]][key[1]] += 1
            continue
        expected[key] = str(record["expected"])
        kinds[key] = str(record["kind"])
    report = Report({}, 0, 0, 0, Counter(), {})
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    for sender, ledger in ledgers.items():
        sent_copies = sum(copies[sender].values())
        report.published_messages += published_seqs + sent_copies
        report.expected_copies += sent_copies
        report.stored_rows += len(ledger.stored_flags)
        report.db_rows += ledger.rows
        lost = []
        for seq in range(published_seqs):
            want = expected.get((sender, seq), "accepted")
            if seq in ledger.stored_flags:
                doubts = ledger.stored_flags[seq] & ~STREAM_FLAGS
                got = "flagged" if doubts else "accepted"
                if ledger.rejected[seq]:
                    report.problems.append(
                        f"{sender} seq {seq}: in readings and in rejected_readings"
                    )
            elif ledger.rejected[seq]:
                got = "rejected"
            else:
                lost.append(seq)
                report.problems.append(
                    f"{sender} seq {seq}: published ({want}) but in neither readings nor"
                    " rejected_readings"
                )
                continue
            report.confusion[(want, got)] += 1
            if (sender, seq) in kinds:
                by_kind[kinds[(sender, seq)]][got] += 1
        _match_copies(sender, ledger, copies[sender], report, by_kind)
        if lost:
            report.missing[sender] = lost
    report.by_kind = dict(by_kind)
    return report


def _match_copies(
    sender: str,
    ledger: Ledger,
    sent: Mapping[int, int],
    report: Report,
    by_kind: dict[str, Counter[str]],
) -> None:
    # Of a reading and its copies (identical bytes, different message ids) whichever the
    # concentrator meets first is stored, so copies are matched by seq and counted.
    for seq in sorted(sent.keys() | ledger.duplicates.keys()):
        copies, rows = sent.get(seq, 0), ledger.duplicates[seq]
        found = min(copies, rows)
        report.confusion[("duplicate", "duplicate")] += found
        by_kind["duplicate"]["duplicate"] += found
        if rows < copies:
            report.problems.append(
                f"{sender} seq {seq}: {copies} copies published, {rows} in duplicate_readings"
            )
        elif rows > copies:
            # The same message delivered again: absorbed only if the reading has its row.
            report.redeliveries += rows - copies
            if seq not in ledger.stored_flags and not ledger.rejected[seq]:
                report.problems.append(
                    f"{sender} seq {seq}: in duplicate_readings but in neither readings nor"
                    " rejected_readings"
                )
