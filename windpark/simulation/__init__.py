"""Simulated wind turbines: physics, controller, faults, ground truth and backfill.

Pure code: the only I/O is the ground-truth writer and the backfill. ``docs/simulation.md``
describes the model, the fault kinds and the determinism guarantees.
"""

from windpark.simulation.faults import FaultMix
from windpark.simulation.ground_truth import GroundTruthWriter
from windpark.simulation.messages import Emission, Expected, FaultKind, TruthRecord
from windpark.simulation.park import ParkSimulator, ReadingBlock
from windpark.simulation.site import Site
from windpark.simulation.turbine import Reliability, SimTurbine

__all__ = [
    "Emission",
    "Expected",
    "FaultKind",
    "FaultMix",
    "GroundTruthWriter",
    "ParkSimulator",
    "ReadingBlock",
    "Reliability",
    "SimTurbine",
    "Site",
    "TruthRecord",
]
