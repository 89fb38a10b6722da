"""Deterministic compact JSON for the few payloads not built from templates (events)."""

from __future__ import annotations

import json
from typing import Any


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, keys in insertion order, non-ASCII kept, NaN refused."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
