"""Run a Dispatcher in its own process (for the SIGKILL test): ``run_dispatcher.py DB CONFIG.json``
(DB: a SQLite file or a ``[state] url``).

CONFIG.json holds ``{"receivers": [...], "routes": [...]}``. Prints ``ready`` once the outbox is
open, then delivers until SIGTERM/SIGINT (clean stop) or SIGKILL (no cleanup at all).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from alerts.dispatch import DispatchConfig, Dispatcher  # noqa: E402


def main() -> int:
    db, config_path = sys.argv[1], sys.argv[2]
    raw = json.loads(Path(config_path).read_text())
    config = DispatchConfig.from_raw(raw["receivers"], raw["routes"])
    dispatcher = Dispatcher(db, config, backoff_base_s=0.05, backoff_cap_s=0.2, poll_interval_s=0.05)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    dispatcher.start()
    print("ready", flush=True)
    done.wait()
    dispatcher.stop(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
