"""Settings (operator.md "Configuration"): one TOML file, overridden by ``CITYWATCH_*`` variables.

Validated completely before anything starts. Any problem (unknown key in the file or in the
environment, bad value, bad URL, a route naming a missing receiver) raises
:class:`ConfigError` whose message names the key, e.g. ``mqtt.url: expected mqtt:// or
mqtts://, got 'http://x'``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "CITYWATCH_"
DEFAULT_FILE = "citywatch.toml"
DEFAULT_DATA_DIR = "citywatch-data"


class ConfigError(Exception):
    """A configuration problem; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttSettings(_Section):
    url: str = "mqtt://127.0.0.1:1883"
    username: str = ""
    password: str = ""
    client_id: str = "citywatch-ingest"
    topics: list[str] = Field(default_factory=lambda: ["city/#"])
    qos: int = Field(1, ge=0, le=1)
    protocol: int = 5  # 5 or 4 (MQTT 3.1.1)
    receive_maximum: int = Field(20_000, ge=1, le=65535)
    shared_group: str = ""  # e.g. "citywatch": subscribe as $share/citywatch/<topic>
    # The consumer's MQTT client: "wire" (ingest/wire.py, stdlib sockets, coalesced PUBACKs) or
    # "paho" (paho-mqtt 2.x). The measured reason for the default is in docs/PERFORMANCE.md.
    client: Literal["wire", "paho"] = "wire"
    # TLS (mqtts:// only; none set: the system CA store): trust ca_file instead, present
    # cert_file + key_file as the client certificate, verify server_name instead of the URL's host
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = Field("", validate_default=True)
    server_name: str = ""

    @field_validator("ca_file", "cert_file", "key_file", "server_name")
    @classmethod
    def _tls_needs_mqtts(cls, v: str, info) -> str:
        url = info.data.get("url", "")
        if v and not url.startswith("mqtts://"):
            raise ValueError(f"TLS settings need an mqtts:// url, got {url!r}")
        if v and info.field_name != "server_name" and not Path(v).is_file():
            raise ValueError(f"no such file: {v}")
        return v

    @field_validator("ca_file")
    @classmethod
    def _ca(cls, v: str) -> str:
        if v:
            import ssl

            try:
                ssl.create_default_context(cafile=v)
            except (ssl.SSLError, OSError, ValueError) as e:
                raise ValueError(f"{v} holds no usable CA certificate (PEM): {e}") from None
        return v

    @field_validator("key_file")
    @classmethod
    def _key(cls, v: str, info) -> str:
        cert = info.data.get("cert_file", "")
        if "cert_file" not in info.data:
            return v  # cert_file itself was refused
        if cert and not v:
            raise ValueError("cert_file is set: its private key file is needed too")
        if v and not cert:
            raise ValueError("a key without cert_file (the client certificate)")
        if v:
            import ssl

            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, v)
            except (ssl.SSLError, OSError, ValueError) as e:
                raise ValueError(f"{v} is not the private key of cert_file {cert} (PEM): {e}") from None
        return v

    def tls_options(self):
        """The consumer's :class:`ingest.mqtt.TlsOptions`."""
        from ingest.mqtt import TlsOptions

        return TlsOptions(self.ca_file, self.cert_file, self.key_file, self.server_name)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        from ingest.mqtt import BrokerAddress

        BrokerAddress.parse(v)
        return v

    @field_validator("protocol")
    @classmethod
    def _proto(cls, v: int) -> int:
        if v not in (4, 5):
            raise ValueError("must be 5 (MQTT 5) or 4 (MQTT 3.1.1)")
        return v

    @field_validator("topics")
    @classmethod
    def _topics(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one topic filter")
        for t in v:
            parts = t.split("/")
            if not t or any(("#" in p and (p != "#" or i != len(parts) - 1)) or ("+" in p and p != "+")
                            for i, p in enumerate(parts)):
                raise ValueError(f"bad topic filter {t!r}")
        return v


class StoreSettings(_Section):
    url: str = f"duckdb:///{DEFAULT_DATA_DIR}/readings.duckdb"
    # InfluxDB only (ingest/stores/influx_retention.py): 1 s / 1 min aggregates kept
    # aggregate_retention, and the duration of the RP written into ("": as it is)
    downsample: bool = False
    raw_retention: str = ""
    aggregate_retention: str = "3650d"

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        from ingest.stores.base import check_url

        check_url(v)  # the stores' own URL parsers, nothing opened
        return v

    @field_validator("downsample", "raw_retention", "aggregate_retention")
    @classmethod
    def _retention(cls, v, info):
        from ingest.stores.influx_retention import parse_retention

        if v and info.field_name != "aggregate_retention" and not info.data.get("url", "").startswith("influxdb:"):
            raise ValueError("retention and downsampling are InfluxDB's; a duckdb:// store keeps every reading")
        if info.field_name != "downsample" and v:
            parse_retention(v)
        return v

    def options(self) -> dict[str, Any]:
        """What ``open_store`` takes beside the URL: the InfluxDB retention, when configured."""
        if not (self.raw_retention or self.downsample):
            return {}
        from ingest.stores.influx_retention import Retention

        return {"retention": Retention(self.raw_retention, self.downsample, self.aggregate_retention)}


class StateSettings(_Section):
    url: str = f"sqlite:///{DEFAULT_DATA_DIR}/state.db"

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        from devices.db import parse_url

        parse_url(v)
        return v


class RulesSettings(_Section):
    files: list[str] = Field(default_factory=list)
    tick_s: float = Field(10.0, gt=0)  # how often absence rules are evaluated


class NodeSettings(_Section):
    """``[node]``: this node among several on one PostgreSQL state DB (citywatch/cluster.py)."""

    # how long a dead node's leases (rule evaluation, dispatch) last before another node takes
    # the work over; renewed every third of it
    lease_s: float = Field(10.0, ge=1, le=600)
    # rule evaluation split into this many partitions of devices (a hash of the device id), each
    # held by one node at a time with its own MQTT session; every partition session receives
    # every reading from Mosquitto and keeps its own devices' (ARCHITECTURE.md, "Several nodes")
    partitions: int = Field(1, ge=1, le=256)


ROLES = ("ingest", "rules", "dispatch", "api")


class ApiSettings(_Section):
    listen: str = "127.0.0.1:8080"
    public_url: str = ""  # base of alert links in webhooks; default http://{listen}
    tokens: list[dict[str, str]] = Field(default_factory=list)  # {token, role, name}
    open: bool = False  # true: requests without a token act as admin (docs/SECURITY.md)
    max_body_bytes: int = Field(1_048_576, ge=1024, le=1 << 30)  # a larger request body: 413
    max_silence: str = "90d"  # the longest silence an operator may set

    @field_validator("max_silence")
    @classmethod
    def _max_silence(cls, v: str) -> str:
        from devices.durations import parse_duration_ms

        if parse_duration_ms(v) <= 0 or parse_duration_ms(v) > 3650 * 86_400_000:
            raise ValueError(f"expected a duration from 1s to 3650d, got {v!r}")
        return v

    @field_validator("tokens")
    @classmethod
    def _tokens(cls, v: list[dict[str, str]]) -> list[dict[str, str]]:
        for i, t in enumerate(v):
            unknown = set(t) - {"token", "role", "name"}
            if unknown:
                raise ValueError(f"tokens[{i}]: unknown key {sorted(unknown)[0]!r}")
            if len(t.get("token", "")) < 16:
                raise ValueError(f"tokens[{i}].token: at least 16 characters")
            if t.get("role", "viewer") not in ("viewer", "operator", "admin"):
                raise ValueError(f"tokens[{i}].role: one of viewer, operator, admin")
        return v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected host:port, got {v!r}")
        return v

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class IngestSettings(_Section):
    batch_readings: int = Field(100_000, ge=1)
    batch_messages: int = Field(20_000, ge=1)
    linger_ms: float = Field(2.0, ge=0)
    # the store write gathers evaluated batches this long (fewer, larger writes; see
    # ingest/pipeline.py Pipeline._linger_for_write)
    write_linger_ms: float = Field(150.0, ge=0, le=10_000)
    # how long the intake and the write stage step aside, at most, while an alert is on its
    # way (ingest/priority.py); 0 turns that off
    priority_wait_ms: float = Field(10.0, ge=0, le=1000)
    max_pending_readings: int = Field(1_000_000, ge=1)
    spool_dir: str = f"{DEFAULT_DATA_DIR}/spool"
    spool_max_bytes: int = Field(2 * 1024**3, ge=1024 * 1024)
    # the quarantine's bounds (ingest/quarantine.py): entries older than this are deleted, and
    # the oldest while the kept payloads are over quarantine_max_mb; one source (device) has at
    # most quarantine_per_device_per_minute entries kept whole a minute, the rest are counted
    quarantine_max_age_days: float = Field(30.0, gt=0, le=3650)
    quarantine_max_mb: float = Field(1024.0, gt=0)
    quarantine_per_device_per_minute: int = Field(60, ge=1)
    waveform_features: bool = True  # RMS, peak, dominant frequency of accel windows (ingest/features.py)

    def quarantine_retention(self):
        from ingest.quarantine import Retention

        return Retention(max_age_ms=int(self.quarantine_max_age_days * 86_400_000),
                         max_bytes=int(self.quarantine_max_mb * 1024 * 1024),
                         per_source_per_minute=self.quarantine_per_device_per_minute)


class UpSettings(_Section):
    """``citywatch up`` only: the embedded broker and the sample fleet."""

    broker_port: int = Field(1883, ge=0, le=65535)  # 0 = any free port
    fleet_scale: float = Field(0.0005, ge=0)
    devices_per_kind: int = Field(3, ge=1)  # at least this many of each kind
    seed: int = 2021
    speed: float = Field(1.0, gt=0)  # simulated seconds per real second
    # Simulated history published at full speed before going live, so that the board and the API
    # show every kind at once (gas meters report once an hour in the demo, once a day for real).
    backfill_s: float = Field(3600.0, ge=0)
    gas_mode: Literal["hourly", "daily"] = "hourly"
    rollout_sample: bool = True  # the sample programme over the fleet's gas meters (docs/ROLLOUT.md)
    # The demo: a fault scenario every scenario_every while live, each kind in turn ("0": none);
    # the built-in webhook receiver keeps the last webhook_log deliveries.
    scenario_every: str = "3m"
    webhook_log: int = Field(200, ge=1, le=100_000)

    @field_validator("scenario_every")
    @classmethod
    def _scenario_every(cls, v: str) -> str:
        from devices.durations import parse_duration_ms

        try:
            ms = parse_duration_ms(v)
        except ValueError:
            ms = -1
        if ms != 0 and not 1000 <= ms <= 86_400_000:
            raise ValueError(f"expected 0 (no scenarios) or a duration from 1s to 1d, e.g. \"3m\", got {v!r}")
        return v


class RolloutSettings(_Section):
    """``[rollout]``: the rollout report and its daily snapshots (docs/ROLLOUT.md)."""

    pace_weeks: int = Field(8, ge=1, le=520)  # recent full weeks the pace and its p10/p90 are taken over
    never_heard_days: float = Field(3.0, ge=0, le=365)  # installed this long ago without a reading
    silent_days: float = Field(2.0, ge=0, le=365)  # commissioned, no reading for longer than this
    weak_rsrp_dbm: float = Field(-115.0, ge=-160, le=-20)
    low_battery_v: float = Field(3.3, gt=0, le=15)  # when a meter's attrs has no battery_warn_v
    snapshots: bool = True  # the node keeps a daily snapshot (state DB; InfluxDB measurement rollout)
    snapshot_check_s: float = Field(60.0, gt=0, le=3600)  # how often the node checks for a new local day

    def options(self, tz: str):
        from devices.rollout import RolloutOptions

        return RolloutOptions(tz=tz, pace_weeks=self.pace_weeks, never_heard_days=self.never_heard_days,
                              silent_days=self.silent_days, weak_rsrp_dbm=self.weak_rsrp_dbm,
                              low_battery_v=self.low_battery_v)


class DashboardsSettings(_Section):
    """``[dashboards]``: the Grafana boards of ``citywatch dashboards build|push`` (docs/DASHBOARDS.md)."""

    language: Literal["zh", "en"] = "zh"  # panel and board titles
    # Grafana's Prometheus datasource speaks PromQL: a Prometheus server scraping /metrics
    prometheus_url: str = "http://127.0.0.1:9090"


class LogSettings(_Section):
    """``[log]``: the log records of ``serve`` and ``up`` on stderr (citywatch/logs.py, docs/OPERATIONS.md)."""

    # "text": one line per event (rich's handler on a terminal); "json": one JSON object per line
    format: Literal["text", "json"] = "text"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="forbid")

    timezone: str = "Asia/Shanghai"
    # What this node does: "all", or a comma list of ingest (store, quarantine, events), rules
    # (rule engine), dispatch (webhooks), api. On SQLite (one node): "rules" also dispatches,
    # and several "ingest" nodes may share a subscription ([mqtt] shared_group) beside exactly
    # one "rules" node. On PostgreSQL (several nodes): rules and dispatch run where their lease
    # is held (docs/ARCHITECTURE.md, "Several nodes").
    role: str = "all"
    node: NodeSettings = Field(default_factory=NodeSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    rules: RulesSettings = Field(default_factory=RulesSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    up: UpSettings = Field(default_factory=UpSettings)
    dashboards: DashboardsSettings = Field(default_factory=DashboardsSettings)
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    receivers: list[dict[str, Any]] = Field(default_factory=list)
    routes: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @field_validator("role")
    @classmethod
    def _role(cls, v: str) -> str:
        names = [r.strip() for r in v.split(",") if r.strip()]
        unknown = [r for r in names if r not in ("all", *ROLES)]
        if unknown or not names:
            raise ValueError(f"unknown role(s) {unknown or [v]}: \"all\" or a comma list of {', '.join(ROLES)}")
        return "all" if "all" in names else ",".join(r for r in ROLES if r in names)

    @property
    def roles(self) -> frozenset[str]:
        """What this node does (``all`` spelled out)."""
        return frozenset(ROLES) if self.role == "all" else frozenset(self.role.split(","))

    @property
    def clustered(self) -> bool:
        """Whether the state DB is shared with other nodes (PostgreSQL): leases decide who evaluates
        rules and who dispatches."""
        from devices.db import is_shared, parse_url

        return is_shared(parse_url(self.state.url))

    @model_validator(mode="after")
    def _roles(self) -> Settings:
        if self.clustered:
            if self.mqtt.shared_group and self.mqtt.protocol != 5:
                raise ValueError("mqtt.shared_group: shared subscriptions need mqtt.protocol = 5")
            return self
        if self.role not in ("all", "ingest", "rules"):
            raise ValueError(f"role: {self.role!r} needs a PostgreSQL [state] url (several nodes); with SQLite "
                             "a node is \"all\", \"ingest\" or \"rules\"")
        if self.mqtt.shared_group and self.role != "ingest":
            raise ValueError("mqtt.shared_group: only role = \"ingest\" nodes may share a subscription; "
                             "rules need every reading of a device in one process (one role = \"rules\" "
                             "node, subscribed without a group)")
        if self.mqtt.shared_group and self.mqtt.protocol != 5:
            raise ValueError("mqtt.shared_group: shared subscriptions need mqtt.protocol = 5")
        return self

    @model_validator(mode="after")
    def _dispatch(self) -> Settings:
        self.dispatch_config()  # raises naming receivers[i]/routes[i] keys
        if self.rules.files:
            from alerts.errors import RuleError
            from alerts.rules import RulePack

            try:
                RulePack.load(self.rules.files)
            except (RuleError, OSError) as e:
                raise ValueError(f"rules.files: {e}") from None
        return self

    def dispatch_config(self):
        from alerts.dispatch.config import DispatchConfig

        return DispatchConfig.from_raw(self.receivers, self.routes)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file and the environment are merged by load_settings (environment wins), so
        # that unknown variables can be refused by name like unknown keys.
        return (init_settings,)


def _check_env(env: dict[str, str]) -> None:
    """Unknown ``CITYWATCH_*`` variables are refused like unknown keys (typos must not pass)."""
    known = {"CONFIG"}
    for name, field in Settings.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            known.update(f"{name}_{k}".upper() for k in ann.model_fields)
        else:
            known.add(name.upper())
    for var in env:
        if var.upper().startswith(ENV_PREFIX) and var.upper()[len(ENV_PREFIX):] not in known:
            raise ConfigError(f"{var}: unknown setting (environment variable)")


def config_path(explicit: str | Path | None, env: dict[str, str] | None = None) -> Path | None:
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit)
    if env.get("CITYWATCH_CONFIG"):
        return Path(env["CITYWATCH_CONFIG"])
    p = Path(DEFAULT_FILE)
    return p if p.exists() else None


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None,
                  **overrides: Any) -> Settings:
    """Settings from the TOML file (see :func:`config_path`), the environment and ``overrides``."""
    env = dict(os.environ if env is None else env)
    _check_env(env)
    p = config_path(path, env)
    data: dict[str, Any] = {}
    where = "defaults"
    if p is not None:
        where = str(p)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{p}: no such config file") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: not valid TOML: {e}") from None
    for k, v in overrides.items():
        section, _, key = k.partition("__")
        if key:
            data.setdefault(section, {})[key] = v
        else:
            data[section] = v
    try:
        return Settings(**_merge_env(data, env))
    except ValidationError as e:
        raise ConfigError(_explain(e, where)) from None
    except Exception as e:  # dispatch config errors carry their key in the message
        if type(e).__name__.endswith("ConfigError"):
            raise ConfigError(f"{where}: {e}") from None
        raise


def _merge_env(data: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """The file's values with ``CITYWATCH_<SECTION>_<KEY>`` / ``CITYWATCH_<KEY>`` applied over them."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for var, value in env.items():
        u = var.upper()
        if not u.startswith(ENV_PREFIX) or u == "CITYWATCH_CONFIG":
            continue
        rest = u[len(ENV_PREFIX):].lower()
        if rest in Settings.model_fields:
            out[rest] = _env_value(value)
            continue
        section, _, key = rest.partition("_")
        if section in Settings.model_fields and key:
            if not isinstance(out.get(section), dict):
                out[section] = {}
            out[section][key] = _env_value(value)
    return out


def _env_value(v: str) -> Any:
    s = v.strip()
    if s.startswith("[") or s.startswith("{"):
        import json

        try:
            return json.loads(s)
        except ValueError:
            return v
    return v


def _explain(e: ValidationError, where: str) -> str:
    lines = []
    for err in e.errors():
        key = ".".join(str(x) for x in err["loc"]) or "(top)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        lines.append(f"{key}: {msg}" if err["loc"] else msg)
    return f"{where}: " + "; ".join(lines)
