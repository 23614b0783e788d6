"""A generator's durable memory: the next sequence number of each of its turbines.

A field device keeps its message counter across restarts (in its own flash), so a
concentrator that sees the counter go back can call that a reset. The generator does the
same with one small file per turbine, ``<state_dir>/<turbine_id>.json``, so one process
per turbine and one process for the whole park share the files. It reads no database:
turbines hold broker credentials only, and the registry does not know what a turbine
sent but the broker has not yet delivered.

Each file is replaced atomically (write a temporary file, then ``os.replace``): a crash
leaves the old count or the new one, never a torn file. The generator reserves a block of
seqs (a minute of readings) before it publishes the first of them and writes the exact next
seq at a clean stop, so a restarted generator never sends a seq twice; after a crash it
skips the rest of the block. ``fsync`` runs only at a clean stop: after a power cut a
reservation may be lost, and the repeated seqs are then flagged ``seq_reset``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import orjson

from windpark.contract import TURBINE_ID_RE


class StateError(RuntimeError):
    """A state file that exists but cannot be read: refuse to guess a sequence number."""


class SeqState:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, turbine_id: str) -> Path:
        if not TURBINE_ID_RE.fullmatch(turbine_id):
            raise ValueError(f"invalid turbine id {turbine_id!r}")
        return self.directory / f"{turbine_id}.json"

    def load(self, turbine_ids: Iterable[str]) -> dict[str, int]:
        """The next seq of each turbine; 0 for a turbine that has no file yet."""
        return {turbine_id: self._load_one(turbine_id) for turbine_id in turbine_ids}

    def _load_one(self, turbine_id: str) -> int:
        path = self.path(turbine_id)
        try:
            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return 0
        except (OSError, orjson.JSONDecodeError) as exc:
            raise StateError(f"cannot read the sequence state {path}: {exc}") from exc
        next_seq = data.get("next_seq") if isinstance(data, dict) else None
        if not isinstance(next_seq, int) or next_seq < 0 or data.get("turbine_id") != turbine_id:
            raise StateError(f"{path} is not the sequence state of {turbine_id}: {data!r}")
        return next_seq

    def save(self, next_seqs: Mapping[str, int], *, durable: bool = False) -> None:
        """Replace each turbine's file; ``durable`` also flushes them to the disk."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for turbine_id, next_seq in next_seqs.items():
            target = self.path(turbine_id)
            body = orjson.dumps({"turbine_id": turbine_id, "next_seq": next_seq})
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{turbine_id}.")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(body)
                    if durable:
                        f.flush()
                        os.fsync(f.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        if durable:
            # The renames themselves live in the directory's entry list.
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
