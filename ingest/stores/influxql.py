"""InfluxQL quoting, shared by the InfluxDB store and its retention set-up."""

from __future__ import annotations


def quote_ident(name: str) -> str:
    """An InfluxQL identifier: double-quoted, quotes and backslashes escaped."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def quote_str(value: str) -> str:
    """An InfluxQL string literal: single-quoted, quotes and backslashes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"
