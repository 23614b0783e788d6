"""The ground-truth log: one JSON line per message that an injected fault affected."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import TextIO

import orjson

from windpark.simulation.messages import TruthRecord


class GroundTruthWriter:
    """Appends ``TruthRecord`` lines to a file (or to an open text stream).

    Lines are flushed at every ``write`` so that a test can read the log while the
    generator runs. Write the records of the messages actually published, with the message
    id they were published under when there is one: it tells a copy the simulator sent on
    purpose from a redelivery of the same message.
    """

    def __init__(self, target: str | os.PathLike[str] | TextIO) -> None:
        if isinstance(target, str | os.PathLike):
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._stream: TextIO = path.open("a", encoding="utf-8")
            self._owned = True
        else:
            self._stream = target
            self._owned = False
        self.records_written = 0

    def write(self, records: Iterable[TruthRecord], *, message_id: str | None = None) -> int:
        extra = {} if message_id is None else {"message_id": message_id}
        lines = [orjson.dumps(record.to_json() | extra).decode() + "\n" for record in records]
        if lines:
            self._stream.write("".join(lines))
            self._stream.flush()
            self.records_written += len(lines)
        return len(lines)

    def close(self) -> None:
        if self._owned and not self._stream.closed:
            self._stream.close()

    def __enter__(self) -> GroundTruthWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
