"""The duty board: a web page for duty officers, served by the API at ``/`` (presentation only).

- ``static/``: the page (``index.html``), its ES modules (``static/js/``, no build step) and the
  browser libraries vendored from npm at pinned versions (``static/vendor/``, see ``vendor.sh``);
  they ship in the wheel, so the board works offline.
- :mod:`.feed`: the alert transitions the alert state produces, handed to the board's live
  streams (an alert-state listener, registered by the runner).
- :mod:`.tiles`: the per-kind tiles (online, offline, readings per minute, open alerts).
- :mod:`.live`: a device's telemetry as it arrives, subscribed on the broker with aiomqtt.
- :mod:`.api`: the routes: the page, its assets, ``/api/v1/summary``, ``/api/v1/stream`` and
  ``/api/v1/devices/{id}/live``.

docs/BOARD.md describes the views.
"""

from .feed import AlertFeed

__all__ = ["AlertFeed"]
