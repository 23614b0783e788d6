"""The generator's durable sequence state and what it logs as dropped (no I/O but files)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.generator.main import describe_dropped
from services.generator.state import SeqState, StateError
from windpark.simulation import Emission, ParkSimulator, SimTurbine
from windpark.turbine_model import DEFAULT_MODEL, load_model

START = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_a_turbine_without_state_starts_at_zero_and_a_saved_one_continues(
    tmp_path: Path,
) -> None:
    state = SeqState(tmp_path / "state")
    assert state.load(["WTG01", "WTG02"]) == {"WTG01": 0, "WTG02": 0}
    state.save({"WTG01": 150, "WTG02": 7}, durable=True)
    state.save({"WTG01": 151})
    assert state.load(["WTG01", "WTG02"]) == {"WTG01": 151, "WTG02": 7}
    # Written atomically: no temporary file is left behind.
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["WTG01.json", "WTG02.json"]


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"turbine_id": "WTG02", "next_seq": 3}', b'{"turbine_id": "WTG01", "next_seq": -1}'],
    ids=["torn", "another-turbine", "negative"],
)
def test_an_unreadable_state_is_refused_not_guessed(tmp_path: Path, body: bytes) -> None:
    (tmp_path / "WTG01.json").write_bytes(body)
    with pytest.raises(StateError, match="WTG01"):
        SeqState(tmp_path).load(["WTG01"])


def test_a_simulator_resumed_from_its_state_continues_the_sequence() -> None:
    model = load_model(DEFAULT_MODEL)
    turbines = [SimTurbine(turbine_id=t, model=model) for t in ("WTG01", "WTG02")]
    first = ParkSimulator(turbines, seed=3)
    for step in range(4):
        first.step(START + timedelta(seconds=step))
    assert first.next_seqs() == {"WTG01": 4, "WTG02": 4}
    resumed = ParkSimulator(turbines, seed=3, seq_start=first.next_seqs())
    assert [e.seq for e in resumed.step(START + timedelta(seconds=10))] == [4, 4]


def test_dropped_readings_are_named_by_turbine_and_seq_ranges() -> None:
    def emission(turbine_id: str, seq: int) -> tuple[str, Emission]:
        return f"{turbine_id}:{seq}:0", Emission(turbine_id, turbine_id, seq, b"{}")

    lost = [emission("WTG02", 3), *(emission("WTG01", s) for s in (9, 7, 10, 11, 12))]
    assert describe_dropped(lost) == "WTG01 seq 7, 9..12 (5); WTG02 seq 3 (1)"
