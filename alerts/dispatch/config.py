"""Receivers and routes (operator.md ``[[receivers]]``, ``[[routes]]``), validated once.

:meth:`DispatchConfig.from_raw` takes the lists of tables as they come out of the TOML file and
either returns an immutable :class:`DispatchConfig` or raises :class:`DispatchConfigError`
naming the first wrong key (``routes[1].receivers: unknown receiver 'x'``), so the program can
refuse to start with a message the operator can act on.

Raw keys accepted::

    [[receivers]]
    name = "jianghan-dispatch"          # required, unique
    url = "https://dispatch.example/hooks/citywatch"   # required, http or https
    secret = "change-me"                # required, the HMAC key
    timeout = "5s"                      # optional, per attempt (duration), default 5 s
    max_concurrency = 4                 # optional, requests in flight to this receiver
    headers = { Authorization = "..." } # optional, extra request headers

    [[routes]]                          # first match wins; an empty match catches everything
    match = { district = "江汉区", severity = ["major", "critical"] }
    receivers = ["jianghan-dispatch"]   # required (may be empty: matched alerts are not sent)
    escalate_to = ["city-duty-office"]  # optional, with escalate_after
    escalate_after = "10m"              # optional duration: 30s, 10m, 1h, 1d, 1h30m or seconds

Durations are a number of seconds or a string of ``<number><unit>`` parts, units ``ms s m h d``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from devices.catalogue import KINDS, SEVERITIES
from devices.durations import parse_duration_ms

from .errors import DispatchConfigError

# matcher key -> where its value is found in a notice ("alert" or "device") and under which key
MATCHERS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "kind": ("device", "kind"),
        "district": ("device", "district"),
        "severity": ("alert", "severity"),
        "rule": ("alert", "rule"),
        "responsible_unit": ("device", "responsible_unit"),
    }
)

# headers the notifier sets itself; a receiver's extra headers may not replace them
RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "x-citywatch-delivery", "x-citywatch-timestamp",
     "x-citywatch-signature"}
)

_RECEIVER_KEYS = ("name", "url", "secret", "timeout", "max_concurrency", "headers")
_ROUTE_KEYS = ("match", "receivers", "escalate_to", "escalate_after")


def parse_duration(value: object) -> float:
    """Seconds from ``30``, ``2.5``, ``"30"``, ``"30s"``, ``"10m"``, ``"1h30m"``, ``"250ms"``
    (``devices.durations``). Raises ValueError for anything else, negative numbers, NaN and
    infinities included."""
    return parse_duration_ms(value) / 1000.0


@dataclass(frozen=True, slots=True)
class Receiver:
    """One webhook endpoint of a dispatch centre."""

    name: str
    url: str
    secret: str
    timeout_s: float = 5.0
    max_concurrency: int = 4
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("receiver name must not be empty")
        if not _is_http_url(self.url):
            raise ValueError(f"receiver {self.name!r}: not an http(s) URL: {self.url!r}")
        if not self.secret:
            raise ValueError(f"receiver {self.name!r}: secret must not be empty")
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise ValueError(f"receiver {self.name!r}: timeout must be > 0")
        if self.max_concurrency < 1:
            raise ValueError(f"receiver {self.name!r}: max_concurrency must be >= 1")
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))

    def __repr__(self) -> str:  # never print the secret
        return f"Receiver(name={self.name!r}, url={self.url!r}, secret='***')"


@dataclass(frozen=True, slots=True)
class Route:
    """Matchers (all must hold; a list means any of its values) and where matched notices go.

    ``match`` keys are those of :data:`MATCHERS`; an empty ``match`` matches every notice.
    Escalation applies to ``major`` and ``critical`` alerts only.
    """

    match: Mapping[str, str | list[str]]
    receivers: list[str]
    escalate_to: list[str] = field(default_factory=list)
    escalate_after_s: float | None = None

    def __post_init__(self) -> None:
        norm: dict[str, tuple[str, ...]] = {}
        for key, want in self.match.items():
            if key not in MATCHERS:
                raise ValueError(f"unknown matcher {key!r}")
            norm[key] = (want,) if isinstance(want, str) else tuple(want)
        object.__setattr__(self, "match", MappingProxyType(norm))
        object.__setattr__(self, "receivers", tuple(self.receivers))
        object.__setattr__(self, "escalate_to", tuple(self.escalate_to))
        if bool(self.escalate_to) != (self.escalate_after_s is not None):
            raise ValueError("escalate_to and escalate_after go together")

    def matches(self, alert: Mapping[str, Any], device: Mapping[str, Any]) -> bool:
        """True when every matcher holds for this alert and device."""
        sources = {"alert": alert, "device": device}
        for key, wanted in self.match.items():
            where, field_name = MATCHERS[key]
            if sources[where].get(field_name) not in wanted:
                return False
        return True


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    """Receivers by name and the ordered routes. Build it with :meth:`from_raw` from a file."""

    receivers: Mapping[str, Receiver]
    routes: tuple[Route, ...]

    def __post_init__(self) -> None:
        recv = self.receivers
        if not isinstance(recv, Mapping):
            recv = {r.name: r for r in recv}
        object.__setattr__(self, "receivers", MappingProxyType(dict(recv)))
        object.__setattr__(self, "routes", tuple(self.routes))
        for i, route in enumerate(self.routes):
            for key in ("receivers", "escalate_to"):
                for name in getattr(route, key):
                    if name not in self.receivers:
                        raise DispatchConfigError(f"routes[{i}].{key}", f"unknown receiver {name!r}")

    def route_for(self, alert: Mapping[str, Any], device: Mapping[str, Any]) -> Route | None:
        """The first route whose matchers hold, or None when no route matches."""
        for route in self.routes:
            if route.matches(alert, device):
                return route
        return None

    @classmethod
    def from_raw(cls, receivers: Iterable[Mapping[str, Any]] | None,
                 routes: Iterable[Mapping[str, Any]] | None) -> DispatchConfig:
        """Validate the ``[[receivers]]`` and ``[[routes]]`` tables; raise DispatchConfigError."""
        by_name: dict[str, Receiver] = {}
        for i, raw in enumerate(receivers or ()):
            r = _receiver_from_raw(f"receivers[{i}]", raw)
            if r.name in by_name:
                raise DispatchConfigError(f"receivers[{i}].name", f"duplicate receiver {r.name!r}")
            by_name[r.name] = r
        parsed = [_route_from_raw(f"routes[{i}]", raw, by_name) for i, raw in enumerate(routes or ())]
        return cls(by_name, tuple(parsed))


def _is_http_url(url: object) -> bool:
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _table(key: str, raw: object, known: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise DispatchConfigError(key, f"expected a table, got {type(raw).__name__}")
    for k in raw:
        if k not in known:
            raise DispatchConfigError(f"{key}.{k}", f"unknown key (known: {', '.join(known)})")
    return raw


def _nonempty_str(key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DispatchConfigError(key, "required, a non-empty string")
    return value


def _receiver_from_raw(key: str, raw: object) -> Receiver:
    t = _table(key, raw, _RECEIVER_KEYS)
    name = _nonempty_str(f"{key}.name", t.get("name"))
    url = t.get("url")
    if not _is_http_url(url):
        raise DispatchConfigError(f"{key}.url", f"not an http(s) URL: {url!r}")
    secret = _nonempty_str(f"{key}.secret", t.get("secret"))
    timeout_s = 5.0
    if "timeout" in t:
        try:
            timeout_s = parse_duration(t["timeout"])
        except ValueError:
            raise DispatchConfigError(f"{key}.timeout", f"bad duration {t['timeout']!r}") from None
        if timeout_s <= 0:
            raise DispatchConfigError(f"{key}.timeout", "must be more than 0")
    conc = t.get("max_concurrency", 4)
    if isinstance(conc, bool) or not isinstance(conc, int) or conc < 1:
        raise DispatchConfigError(f"{key}.max_concurrency", f"expected an integer >= 1, got {conc!r}")
    headers = t.get("headers", {})
    if not isinstance(headers, Mapping):
        raise DispatchConfigError(f"{key}.headers", "expected a table of header = \"value\"")
    for h, v in headers.items():
        if not isinstance(h, str) or not isinstance(v, str):
            raise DispatchConfigError(f"{key}.headers.{h}", "header names and values must be strings")
        if h.lower() in RESERVED_HEADERS:
            raise DispatchConfigError(f"{key}.headers.{h}", "set by citywatch, may not be overridden")
    return Receiver(name, url, secret, timeout_s, conc, dict(headers))


def _route_from_raw(key: str, raw: object, receivers: Mapping[str, Receiver]) -> Route:
    t = _table(key, raw, _ROUTE_KEYS)
    match = t.get("match", {})
    if not isinstance(match, Mapping):
        raise DispatchConfigError(f"{key}.match", "expected a table of matcher = value or [values]")
    norm: dict[str, list[str]] = {}
    for mkey, want in match.items():
        mk = f"{key}.match.{mkey}"
        if mkey not in MATCHERS:
            raise DispatchConfigError(mk, f"unknown matcher (known: {', '.join(MATCHERS)})")
        values = [want] if isinstance(want, str) else want
        if not isinstance(values, list) or not values or not all(
                isinstance(v, str) and v for v in values):
            raise DispatchConfigError(mk, "expected a non-empty string or list of strings")
        allowed = {"kind": KINDS, "severity": SEVERITIES}.get(mkey)
        for v in values:
            if allowed is not None and v not in allowed:
                raise DispatchConfigError(mk, f"unknown {mkey} {v!r} (known: {', '.join(allowed)})")
        norm[mkey] = list(values)

    def names(k: str, required: bool) -> list[str]:
        if k not in t:
            if required:
                raise DispatchConfigError(f"{key}.{k}", "required, a list of receiver names")
            return []
        value = t[k]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DispatchConfigError(f"{key}.{k}", "expected a list of receiver names")
        for name in value:
            if name not in receivers:
                raise DispatchConfigError(f"{key}.{k}", f"unknown receiver {name!r}")
        return value

    to = names("receivers", True)
    esc = names("escalate_to", False)
    after: float | None = None
    if "escalate_after" in t:
        try:
            after = parse_duration(t["escalate_after"])
        except ValueError:
            raise DispatchConfigError(f"{key}.escalate_after",
                                      f"bad duration {t['escalate_after']!r}") from None
    if esc and after is None:
        raise DispatchConfigError(f"{key}.escalate_after", "required with escalate_to")
    if after is not None and not esc:
        raise DispatchConfigError(f"{key}.escalate_to", "required with escalate_after")
    return Route(norm, to, esc, after)
