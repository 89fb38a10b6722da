"""Alert dispatch: routes, a durable outbox, signed webhooks retried until delivered.

Wiring (the lead's side)::

    config = DispatchConfig.from_raw(toml.get("receivers", []), toml.get("routes", []))
    dispatcher = Dispatcher(state_db_path, config, public_url="http://host:8080")
    conn = devices.sqlite.connect(state_db_path)
    outbox = dispatcher.make_outbox(conn)       # on the alert store's own connection
    alerts = AlertState(conn, listeners=[outbox.listener])   # called inside the alert transaction
    dispatcher.start()                          # a thread; or ``await dispatcher.run(stop)``
    ...after each alert commit that produced notices: dispatcher.wake()
    app.state.outbox = outbox; app.include_router(alerts.dispatch.api.router)
    dispatcher.stop()
"""

from .config import DispatchConfig, Receiver, Route, parse_duration
from .dispatcher import Dispatcher
from .errors import DispatchConfigError, DispatchError
from .metrics import DispatchMetrics
from .outbox import Outbox, build_body
from .webhook import Notifier, WebhookNotifier, sign

__all__ = [
    "DispatchConfig", "DispatchConfigError", "DispatchError", "DispatchMetrics", "Dispatcher",
    "Notifier", "Outbox", "Receiver", "Route", "WebhookNotifier", "build_body", "parse_duration",
    "sign",
]
