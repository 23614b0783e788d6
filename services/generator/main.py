"""The generator: simulate turbines and publish their readings with publisher confirms.

Two tasks share an outbox. The sampler steps the simulation at every interval
boundary (wall clock) and appends the messages; the sender publishes them in
order, a window at a time, and removes a message only once the broker confirmed
it. While the broker is away the outbox grows (up to ``buffer_max``): an outage
delays readings, it does not lose them.

Every reading simulated is either confirmed by the broker or logged as dropped (turbine and
seq): a stop (``--count`` reached, SIGINT, SIGTERM) first releases what the fault injector
holds back, then drains the outbox for up to ``drain_s``. The ground-truth log is written
at confirm time, so it describes exactly the messages the broker took. Each turbine's next
seq is kept in ``state_dir`` (services/generator/state.py), so a restart continues the
sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import signal
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from services.generator.config import Settings
from services.generator.state import SeqState
from services.generator.transport import Publisher, open_publisher
from windpark.publishing import PublishError
from windpark.registry import park_turbine_ids
from windpark.simulation import (
    Emission,
    FaultMix,
    GroundTruthWriter,
    ParkSimulator,
    SimTurbine,
    Site,
)
from windpark.turbine_model import load_model

log = logging.getLogger("windpark.generator")
# How many seconds of readings one write of the seq state covers (Generator._reserve_seqs).
SEQ_RESERVE_S = 60.0


def turbine_ids(settings: Settings) -> list[str]:
    return (
        [settings.turbine_id]
        if settings.turbine_id
        else park_turbine_ids(settings.turbines, settings.id_prefix)
    )


def build_simulator(
    settings: Settings, seq_start: Mapping[str, int] | None = None
) -> ParkSimulator:
    ids = turbine_ids(settings)
    model = load_model(settings.turbine_model)
    return ParkSimulator(
        turbines=[SimTurbine(turbine_id=t, model=model) for t in ids],
        site=Site(),
        seed=settings.seed,
        error_rate=settings.error_rate,
        fault_mix=FaultMix.parse(settings.fault_mix),
        interval_s=settings.interval_s,
        seq_start=seq_start or 0,
    )


def describe_dropped(items: Iterable[tuple[str, Emission]]) -> str:
    """``WTG01 seq 7, 9..12 (5); WTG02 seq 3 (1)``: what a stop or a full outbox lost."""
    by_turbine: dict[str, list[int]] = defaultdict(list)
    for _, emission in items:
        by_turbine[emission.routing_turbine_id].append(-1 if emission.seq is None else emission.seq)
    parts = []
    for turbine_id, seqs in sorted(by_turbine.items()):
        ranges: list[str] = []
        for _, run_ in itertools.groupby(enumerate(sorted(seqs)), lambda p: p[1] - p[0]):
            run = [seq for _, seq in run_]
            ranges.append(str(run[0]) if len(run) == 1 else f"{run[0]}..{run[-1]}")
        parts.append(f"{turbine_id} seq {', '.join(ranges)} ({len(seqs)})")
    return "; ".join(parts)


class Outbox:
    """Messages waiting for a broker confirm, oldest first."""

    def __init__(self, limit: int) -> None:
        self._items: deque[tuple[str, Emission]] = deque()
        self._limit = limit
        self.changed = asyncio.Event()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message_id: str, emission: Emission) -> None:
        if len(self._items) >= self._limit:
            # Only when the broker has been away for longer than the buffer covers.
            lost = self._items.popleft()
            self.dropped += 1
            log.error("outbox full (%d): dropped %s", self._limit, describe_dropped([lost]))
        self._items.append((message_id, emission))
        self.changed.set()

    def window(self, size: int) -> list[tuple[str, Emission]]:
        return [self._items[i] for i in range(min(size, len(self._items)))]

    def confirm(self, count: int) -> list[tuple[str, Emission]]:
        return [self._items.popleft() for _ in range(count)]

    def drop_all(self) -> list[tuple[str, Emission]]:
        items = list(self._items)
        self._items.clear()
        self.dropped += len(items)
        return items


class Generator:
    def __init__(self, settings: Settings, publisher: Publisher) -> None:
        self.settings = settings
        self.publisher = publisher
        self.state = SeqState(settings.state_dir)
        ids = turbine_ids(settings)
        self._reserved = self.state.load(ids)
        self._reserve = max(1, math.ceil(SEQ_RESERVE_S / settings.interval_s))
        self.simulator = build_simulator(settings, seq_start=self._reserved)
        self.outbox = Outbox(settings.buffer_max)
        self.truth = (
            GroundTruthWriter(settings.ground_truth_path) if settings.ground_truth_path else None
        )
        self.published = 0
        self._emitted = 0

    async def sample(self, stop: asyncio.Event) -> None:
        """Step the simulation at each interval boundary until stopped or max_readings,
        then release what the fault injector still holds back."""
        try:
            await self._sample(stop)
        finally:
            # A reading held back for out-of-order delivery was simulated: it is sent
            # late rather than never (or, if the drain runs out, logged as dropped).
            self._enqueue(self.simulator.flush())
            await asyncio.to_thread(self.state.save, self.simulator.next_seqs(), durable=True)

    async def _sample(self, stop: asyncio.Event) -> None:
        interval = self.settings.interval_s
        steps = 0
        next_tick = math.floor(time.time() / interval) * interval + interval
        while not stop.is_set():
            if self.settings.max_readings is not None and steps >= self.settings.max_readings:
                return
            delay = next_tick - time.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                if stop.is_set():
                    return
            emissions = self.simulator.step(datetime.fromtimestamp(next_tick, tz=UTC))
            await self._reserve_seqs()
            self._enqueue(emissions)
            steps += 1
            next_tick += interval
            # A late wake-up (suspended laptop, CPU starved) skips to the present instead
            # of bursting the missed ticks.
            behind = time.time() - next_tick
            if behind > interval:
                skipped = math.floor(behind / interval)
                log.warning("sampler %d intervals behind; skipping ahead", skipped)
                next_tick += skipped * interval

    async def _reserve_seqs(self) -> None:
        """Before a seq is published, the state file says a later one comes next.

        Like a database sequence's cache: the file is written once per SEQ_RESERVE_S of
        readings, not at every step (a park of 1000 turbines in one process would spend
        most of a core on it), so after a crash the restarted generator skips the unused
        rest of the block (a seq_gap) but never sends a seq twice (a seq_reset). A clean
        stop writes the exact next seq.
        """
        next_seqs = self.simulator.next_seqs()
        if all(next_seqs[t] <= self._reserved[t] for t in next_seqs):
            return
        self._reserved = {t: seq + self._reserve for t, seq in next_seqs.items()}
        await asyncio.to_thread(self.state.save, self._reserved)

    def _enqueue(self, emissions: Iterable[Emission]) -> None:
        for emission in emissions:
            self._emitted += 1
            seq = "x" if emission.seq is None else str(emission.seq)
            # Unique per publish and kept across redeliveries: the concentrator's
            # idempotency key for rejects and duplicates.
            self.outbox.put(f"{emission.routing_turbine_id}:{seq}:{self._emitted}", emission)

    async def send(self, sampling_done: asyncio.Event, stop: asyncio.Event, drain_s: float) -> None:
        """Publish the outbox in order until sampling is over and the outbox is empty."""
        delay = 0.2
        drain_deadline: float | None = None
        while True:
            if not len(self.outbox):
                if sampling_done.is_set():
                    return
                self.outbox.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.outbox.changed.wait(), timeout=0.5)
                continue
            if stop.is_set() and sampling_done.is_set():
                drain_deadline = drain_deadline or time.monotonic() + drain_s
                if time.monotonic() > drain_deadline:
                    lost = self.outbox.drop_all()
                    log.error(
                        "stopping with %d messages unconfirmed, dropped: %s",
                        len(lost),
                        describe_dropped(lost),
                    )
                    return
            window = self.outbox.window(self.settings.max_in_flight)
            results = await asyncio.gather(
                *(
                    self.publisher.publish(
                        e.payload, turbine_id=e.routing_turbine_id, message_id=message_id
                    )
                    for message_id, e in window
                ),
                return_exceptions=True,
            )
            confirmed = 0
            for result in results:
                if isinstance(result, BaseException):
                    break
                confirmed += 1
            # Confirmed messages after a failed one are published again with the failed
            # one: the concentrator absorbs the repeats as duplicates, order is kept.
            for message_id, emission in self.outbox.confirm(confirmed):
                if self.truth is not None:
                    self.truth.write(emission.truth, message_id=message_id)
            self.published += confirmed
            if confirmed < len(window):
                error = next(r for r in results if isinstance(r, BaseException))
                if not isinstance(error, PublishError):
                    raise error
                log.warning("publish failed (%s); retrying in %.1f s", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            else:
                delay = 0.2

    def close(self) -> None:
        if self.truth is not None:
            self.truth.close()


async def run(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # One broker identity per simulated turbine (or the claimed one): transport.py.
    async with open_publisher(settings, turbine_ids(settings)) as (connected, publisher):
        generator = Generator(connected, publisher)
        ids = turbine_ids(connected)
        log.info(
            "simulating %d turbine(s) %s every %.2f s, error rate %.3f",
            len(ids),
            ids[0] if len(ids) == 1 else f"{ids[0]}..{ids[-1]}",
            settings.interval_s,
            settings.error_rate,
        )
        sampling_done = asyncio.Event()

        async def sample() -> None:
            try:
                await generator.sample(stop)
            finally:
                sampling_done.set()

        try:
            await asyncio.gather(sample(), generator.send(sampling_done, stop, drain_s=10.0))
        finally:
            generator.close()
        log.info(
            "generator stopped: %d messages confirmed, %d dropped",
            generator.published,
            generator.outbox.dropped,
        )
    return 0
