"""Device catalogue, registry (devices and rollout plans in the state DB), CSV and sample fleets.

Modules: ``catalogue`` (kinds and metrics), ``model`` (Device, RolloutTarget), ``registry``
(the Registry over SQLite), ``csvio`` (devices.csv / rollout.csv), ``fleet`` (sample Wuhan
fleets), ``rollout*`` (the rollout report: docs/ROLLOUT.md), ``credentials`` (MQTT accounts from the registry:
Mosquitto passwd and ACL), ``errors``; small utilities the other packages share: ``times``, ``durations``,
``backoff`` (the retry delays of every retry loop), ``sqlite``.
"""

from devices.csvio import (
                           export_devices,
                           export_rollout,
                           import_devices,
                           import_rollout,
                           parse_devices,
                           parse_rollout,
                           read_devices,
                           read_rollout,
                           write_devices,
                           write_rollout,
)
from devices.errors import CsvError, CsvProblem, InvalidDevice, RegistryError
from devices.fleet import sample_fleet, sample_rollout
from devices.model import DEVICE_ID_RE, STATUSES, Device, RolloutTarget
from devices.registry import Registry, online
from devices.rollout import RolloutOptions, RolloutReport

__all__ = [
    "CsvError", "CsvProblem", "DEVICE_ID_RE", "Device", "InvalidDevice", "Registry",
    "RegistryError", "RolloutOptions", "RolloutReport", "RolloutTarget", "STATUSES",
    "export_devices", "export_rollout", "import_devices", "import_rollout", "online",
    "parse_devices", "parse_rollout", "read_devices", "read_rollout",
    "sample_fleet", "sample_rollout", "write_devices", "write_rollout",
]
