"""Grafana dashboards as code (grafana-foundation-sdk) and their provisioning.

One module per board (``overview``, ``bridges``, ``gas``, ``rollout``, ``noise``, ``fume``,
``toilets``, ``lighting``, ``citywatch_self``), shared helpers in ``common`` (variables, panels, alert
annotation and tables), thresholds from the rule pack and the catalogue in ``limits``, the typed
InfluxQL query in ``influxql``; ``provisioning`` writes the JSON and Grafana's provisioning files,
``push`` uploads them with grafana-client. docs/DASHBOARDS.md tells how to use them.

``rollout_report`` renders the rollout report as an HTML page and a workbook (matplotlib,
XlsxWriter; not the SDK).

The SDK is an optional dependency (``pip install 'citywatch[dashboards]'``): importing a board
without it raises :class:`MissingSDK` with that line.
"""

from __future__ import annotations

INSTALL_HINT = "pip install 'citywatch[dashboards]'"


class MissingSDK(RuntimeError):
    pass


def boards():
    """Every board, in menu order."""
    try:
        import grafana_foundation_sdk  # noqa: F401
    except ImportError:
        raise MissingSDK(f"grafana-foundation-sdk is not installed: {INSTALL_HINT}") from None
    from dashboards import bridges, citywatch_self, fume, gas, lighting, noise, overview, rollout, toilets

    return [m.BOARD for m in (overview, bridges, gas, rollout, noise, fume, toilets, lighting, citywatch_self)]
