"""A typed InfluxQL query for grafana-foundation-sdk panels (the SDK has none for InfluxDB).

:class:`InfluxQuery` is a ``Dataquery`` (what a panel's ``targets`` hold) and its own
``Builder`` (what ``Panel.with_target`` takes), so panels accept it like the SDK's Prometheus
queries. Its JSON is the model of Grafana's InfluxDB datasource in raw InfluxQL mode::

    {"refId": "A", "query": "SELECT ...", "rawQuery": true, "resultFormat": "time_series",
     "datasource": {"type": "influxdb", "uid": "citywatch-influxdb"}}

plus ``alias`` and ``hide`` when set. Registered with the SDK's runtime, so
``Dashboard.from_json`` reads the queries back as :class:`InfluxQuery` (the round trip the tests
check). ``shape`` says what the panel expects of the result (``series``, ``table`` or ``value``):
not part of Grafana's model, it is kept out of the JSON and used by the query proof
(tests/dashboards/test_queries.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef

DATASOURCE_TYPE = "influxdb"
INFLUX_UID = "citywatch-influxdb"
PROMETHEUS_UID = "citywatch-prometheus"

ResultFormat = Literal["time_series", "table"]
Shape = Literal["series", "table", "value"]
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")


def influx_ref(uid: str = INFLUX_UID) -> DataSourceRef:
    return DataSourceRef(type_val=DATASOURCE_TYPE, uid=uid)


def prometheus_ref(uid: str = PROMETHEUS_UID) -> DataSourceRef:
    return DataSourceRef(type_val="prometheus", uid=uid)


@dataclass
class InfluxQuery(cogvariants.Dataquery, cogbuilder.Builder["InfluxQuery"]):
    """One raw InfluxQL target; ``query`` may use Grafana's variables (``$timeFilter``,
    ``$__interval``, ``$district``, ...)."""

    query: str
    ref_id: str = "A"
    result_format: ResultFormat = "time_series"
    alias: str = ""
    hide: bool = False
    datasource_uid: str = INFLUX_UID
    shape: Shape = field(default="series", compare=False)

    def __post_init__(self) -> None:
        if not self.query.strip():
            raise ValueError("an InfluxQL query cannot be empty")
        if self.result_format not in ("time_series", "table"):
            raise ValueError(f"resultFormat must be time_series or table, not {self.result_format!r}")
        if self.shape not in ("series", "table", "value"):
            raise ValueError(f"shape must be series, table or value, not {self.shape!r}")

    # Builder
    def build(self) -> InfluxQuery:
        return self

    def with_ref_id(self, ref_id: str) -> InfluxQuery:
        return replace(self, ref_id=ref_id)

    # Dataquery
    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "refId": self.ref_id,
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
            "datasource": {"type": DATASOURCE_TYPE, "uid": self.datasource_uid},
        }
        if self.alias:
            out["alias"] = self.alias
        if self.hide:
            out["hide"] = True
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InfluxQuery:
        if data.get("rawQuery") is not True:
            raise ValueError("only raw InfluxQL targets are supported (rawQuery: true)")
        ds = data.get("datasource") or {}
        return cls(query=str(data["query"]), ref_id=str(data.get("refId", "A")),
                   result_format=data.get("resultFormat", "time_series"), alias=str(data.get("alias", "")),
                   hide=bool(data.get("hide", False)), datasource_uid=str(ds.get("uid", INFLUX_UID)))

    def variables(self) -> set[str]:
        """The names of the template variables the query uses."""
        return {a or b or c for a, b, c in _VARIABLE.findall(self.query)}


cogruntime.register_dataquery_variant(cogruntime.DataqueryConfig(identifier=DATASOURCE_TYPE,
                                                                 from_json_hook=InfluxQuery.from_json))
