"""Device catalogue, registry (devices and rollout plans in the state DB), CSV and sample fleets."""

from devices.errors import CsvError, CsvProblem, InvalidDevice, RegistryError
from devices.model import DEVICE_ID_RE, STATUSES, Device, RolloutTarget
from devices.registry import Registry, online

__all__ = [
    "CsvError", "CsvProblem", "DEVICE_ID_RE", "Device", "InvalidDevice", "Registry",
    "RegistryError", "RolloutTarget", "STATUSES", "online",
]
