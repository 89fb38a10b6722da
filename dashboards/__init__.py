"""Grafana dashboards as code (grafana-foundation-sdk) and their provisioning.

Not built yet: no open issue covers ``citywatch dashboards build|push`` (operator.md). This
package is where they will live; the readings they will query are in the store (DuckDB's
``readings`` view, or InfluxDB measurements per kind with device_id/district/asset_id tags).
"""
