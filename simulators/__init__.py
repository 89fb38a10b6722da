"""Simulated devices for citywatch: vectorised models of the six kinds, named fault scenarios,
deterministic seeded streams in simulated time, publishing to MQTT, record and replay.

Entry points: :class:`Simulation` (``simulators.engine``), :func:`run` (``simulators.publish``),
:func:`record` / :func:`replay` (``simulators.record``), and the CLI ``simulators.cli.app``.
"""

from __future__ import annotations

from .errors import BrokerError, FleetError, RecordingError, ScenarioError, SimulatorError
from .message import Message

__all__ = ["Message", "SimulatorError", "ScenarioError", "FleetError", "BrokerError", "RecordingError"]
