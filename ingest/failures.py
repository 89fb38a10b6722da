"""How the ingest pipeline tells failures apart: what it was given (set aside, never retried)
from a service away (retried, or left unacknowledged for redelivery)."""

from __future__ import annotations

import sqlite3

import psycopg

from ingest.stores.base import StoreRejected

# Errors that a write raises because of what it was given, not because the store or the state
# DB is unavailable: the same rows would be refused again, so retrying the batch cannot help.
# The write stage then splits the batch and sets aside only the rows refused on their own
# (Pipeline._isolate). StoreUnavailable, sqlite3.OperationalError (locked, disk full, I/O),
# sqlite3.IntegrityError (a constraint or trigger aborting: no table of ours has one that a
# message's content can break), psycopg.OperationalError (the server gone) and the like are not
# here: those are retried, with the acknowledgements withheld (tests/faults test_g).
# psycopg.DataError: a value PostgreSQL refuses (a NUL in text, a number out of range).
CONTENT_ERRORS = (StoreRejected, ValueError, OverflowError, TypeError, RecursionError,
                  sqlite3.InterfaceError, sqlite3.DataError, psycopg.DataError)


def unavailable(e: BaseException) -> bool:
    """Whether ``e`` says a service is away (the state DB, a lease), not what it was given."""
    return isinstance(e, (sqlite3.OperationalError, psycopg.OperationalError, psycopg.InterfaceError)) or bool(
        getattr(e, "unavailable", False))
