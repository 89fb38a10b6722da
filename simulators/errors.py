"""The simulators' error hierarchy: one base, messages a user can act on."""

from __future__ import annotations


class SimulatorError(Exception):
    """Base of every error raised by ``simulators``."""


class ScenarioError(SimulatorError):
    """A scenario is unknown, badly specified, or cannot run on the given fleet."""


class FleetError(SimulatorError):
    """The fleet is empty, or names a kind the simulators do not know."""


class BrokerError(SimulatorError):
    """The MQTT broker cannot be reached or refused a connection or a publish."""


class RecordingError(SimulatorError):
    """A recording file is missing, truncated or not a citywatch recording."""
