"""devices.csv and rollout.csv import and export (registry.md).

Files are UTF-8 (a leading byte-order mark, as Excel writes, is accepted), comma separated,
with a header row and RFC 4180 quoting; quoted fields may hold commas, quotes and newlines.

Import is all-or-nothing: the whole file is parsed and validated first, every problem is
collected as ``(line, column, message)`` and reported at once in a :class:`CsvError`; only a
clean file is upserted, in one transaction. Line numbers are those of a text editor (the header
is line 1); when a quoted field holding a newline makes them differ from the row a spreadsheet
shows, the message says so.

Export writes the same columns in the same order (``\\r\\n`` line ends, RFC 4180 quoting), so
export -> import is lossless: floats are written in their shortest round-trip form, ``attrs``
as JSON with sorted keys and Chinese text kept as is. Derived fields (commissioned_at,
last_seen) are never exported nor imported.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from devices.errors import CsvError, CsvProblem
from devices.model import Device, RolloutTarget
from devices.registry import Registry, attrs_json, device_problems, rollout_problems

__all__ = [
    "DEVICE_COLUMNS", "DEVICE_REQUIRED", "ROLLOUT_COLUMNS",
    "read_devices", "parse_devices", "import_devices", "export_devices", "write_devices",
    "read_rollout", "parse_rollout", "import_rollout", "export_rollout", "write_rollout",
]

DEVICE_COLUMNS: tuple[str, ...] = (
    "device_id", "kind", "district", "lat", "lon", "asset_id", "asset_name",
    "responsible_unit", "status", "installed_at", "attrs",
)
DEVICE_REQUIRED: tuple[str, ...] = ("device_id", "kind", "district")
ROLLOUT_COLUMNS: tuple[str, ...] = ("programme", "kind", "district", "target", "start", "deadline")

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SLASH_DATE = re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$")  # how Chinese-locale Excel saves dates
_WHOLE = re.compile(r"^\d+$")


class _Bad(ValueError):
    """A cell that cannot be parsed; its message goes into the CsvProblem."""


# --- cell parsers -------------------------------------------------------------------------

def _number(s: str) -> float | None:
    s = s.strip()
    if not s:
        return None
    try:
        v = float(s)
    except ValueError:
        raise _Bad(f"expected a number, got {s!r}") from None
    if not math.isfinite(v):
        raise _Bad(f"expected a finite number, got {s!r}")
    return v


def _date(s: str) -> str | None:
    """ISO date text; ``2026/3/2`` (a spreadsheet's way) is accepted and normalised."""
    s = s.strip()
    if not s:
        return None
    if m := _SLASH_DATE.match(s):
        try:
            return date(int(m[1]), int(m[2]), int(m[3])).isoformat()
        except ValueError:
            raise _Bad(f"no such date {s!r}") from None
    if not _ISO_DATE.match(s):
        raise _Bad(f"expected a date like 2026-03-02, got {s!r}")
    try:
        date.fromisoformat(s)
    except ValueError:
        raise _Bad(f"no such date {s!r}") from None
    return s


def _reject_constant(name: str) -> Any:
    raise _Bad(f"bad JSON: {name} is not allowed")


def _finite(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise _Bad(f"bad JSON: {text} is out of range")
    return v


# NaN, Infinity and overflowing numbers are refused: attrs must encode back to JSON unchanged
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite)


def _attrs(s: str) -> dict:
    s = s.strip()
    if not s:
        return {}
    try:
        v = _DECODER.decode(s)
    except _Bad:
        raise
    except json.JSONDecodeError as e:
        raise _Bad(f"bad JSON: {e.msg} at character {e.pos + 1}") from None
    except (ValueError, RecursionError) as e:  # a number too long to convert, nesting too deep
        raise _Bad(f"bad JSON: {e}") from None
    if not isinstance(v, dict):
        raise _Bad(f'must be a JSON object like {{"sensor": "strain"}}, got a JSON {type(v).__name__}')
    return v


def _whole(s: str) -> int:
    s = s.strip()
    if not _WHOLE.match(s):
        raise _Bad(f"expected a whole number >= 0, got {s!r}")
    return int(s)


# --- reading ------------------------------------------------------------------------------

def _decode(data: bytes | str, filename: str) -> str:
    if isinstance(data, str):
        return data[1:] if data.startswith("\ufeff") else data
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise CsvError(filename, [CsvProblem(
            line, "", f"not UTF-8 text (byte 0x{data[e.start]:02x}); in Excel save it as "
                      "'CSV UTF-8 (Comma delimited)' / 'CSV UTF-8（逗号分隔）'",
        )]) from None


def _rows(text: str, columns: Sequence[str], required: Sequence[str], problems: list[CsvProblem]):
    """Yield ``(line, spreadsheet_row, {column: cell})`` per non-blank record; header and
    shape problems go to ``problems`` (a bad header stops the file: rows are not read).

    Columns with an empty header (a spreadsheet's stray trailing commas) are ignored as long
    as they hold nothing."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    line = 1
    try:
        header = next(reader, None)
        if header is None:
            problems.append(CsvProblem(1, "", f"empty file: expected a header row ({','.join(columns)})"))
            return
        names = [h.strip() for h in header]
        seen: set[str] = set()
        for n in names:
            if not n:
                continue
            if n not in columns:
                problems.append(CsvProblem(1, n, f"unknown column {n!r} (known: {', '.join(columns)})"))
            elif n in seen:
                problems.append(CsvProblem(1, n, "column appears twice in the header"))
            seen.add(n)
        for n in required:
            if n not in seen:
                problems.append(CsvProblem(1, n, "missing required column"))
        if problems:
            return
        unnamed = [i for i, n in enumerate(names) if not n]
        end = reader.line_num
        line = end + 1  # where the next record starts, for a csv.Error while reading it
        row_no = 1
        for row in reader:
            line, end = end + 1, reader.line_num
            row_no += 1
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) != len(names):
                problems.append(CsvProblem(line, "", f"row has {len(row)} fields, the header has {len(names)}"
                                           + _row_note(line, row_no)))
                continue
            if unnamed and any(row[i].strip() for i in unnamed):
                problems.append(CsvProblem(line, "", f"a value in a column without a header name "
                                           f"(field {next(i for i in unnamed if row[i].strip()) + 1})"
                                           + _row_note(line, row_no)))
                continue
            yield line, row_no, {n: c for n, c in zip(names, row, strict=False) if n}
            line = reader.line_num + 1
    except csv.Error as e:
        problems.append(CsvProblem(line, "", f"malformed CSV (in the row starting on this line): {e}"))


def _ordered(problems: list[CsvProblem], columns: Sequence[str]) -> list[CsvProblem]:
    """By line, then in column order (a whole-row problem first)."""
    pos = {c: i for i, c in enumerate(columns)}
    return sorted(problems, key=lambda p: (p.line, pos.get(p.column, -1)))


def _row_note(line: int, row_no: int) -> str:
    return "" if line == row_no else f" (row {row_no} in a spreadsheet)"


def _cells(rec: dict[str, str], parsers: dict[str, Callable[[str], Any]], line: int, note: str,
           problems: list[CsvProblem]) -> tuple[dict[str, Any], set[str]]:
    """Parse each present cell; returns the values and the columns that failed."""
    values: dict[str, Any] = {}
    bad: set[str] = set()
    for col, cell in rec.items():
        try:
            values[col] = parsers[col](cell)
        except _Bad as e:
            problems.append(CsvProblem(line, col, f"{e}{note}"))
            bad.add(col)
    return values, bad


def _required(rec: dict[str, str], required: Sequence[str], line: int, note: str,
              bad: set[str], problems: list[CsvProblem]) -> None:
    for col in required:
        if col not in bad and not rec.get(col, "").strip():
            problems.append(CsvProblem(line, col, f"{col} is required{note}"))
            bad.add(col)


def _semantic(found: Sequence[tuple[str, str]], line: int, note: str, bad: set[str],
              problems: list[CsvProblem]) -> None:
    for col, msg in found:
        if col not in bad:
            problems.append(CsvProblem(line, col, f"{msg}{note}"))
            bad.add(col)


def _stripped(s: str) -> str:
    return s.strip()


_DEVICE_PARSERS: dict[str, Callable[[str], Any]] = {
    "device_id": _stripped, "kind": _stripped, "district": _stripped,
    "lat": _number, "lon": _number,
    # free text is kept verbatim (spaces may be meaningful), so export -> import is lossless
    "asset_id": str, "asset_name": str, "responsible_unit": str, "status": _stripped,
    "installed_at": _date, "attrs": _attrs,
}


def parse_devices(data: bytes | str, filename: str = "devices.csv") -> list[Device]:
    """Parse and validate devices.csv content; raises :class:`CsvError` naming every problem."""
    text = _decode(data, filename)
    problems: list[CsvProblem] = []
    devices: list[Device] = []
    first_line: dict[str, int] = {}
    for line, row_no, rec in _rows(text, DEVICE_COLUMNS, DEVICE_REQUIRED, problems):
        note = _row_note(line, row_no)
        v, bad = _cells(rec, _DEVICE_PARSERS, line, note, problems)
        _required(rec, DEVICE_REQUIRED, line, note, bad, problems)
        d = Device(
            device_id=v.get("device_id", ""), kind=v.get("kind", ""), district=v.get("district", ""),
            lat=v.get("lat"), lon=v.get("lon"), asset_id=v.get("asset_id", ""),
            asset_name=v.get("asset_name", ""), responsible_unit=v.get("responsible_unit", ""),
            status=v.get("status") or "installed", installed_at=v.get("installed_at"),
            attrs=v.get("attrs", {}),
        )
        _semantic(device_problems(d, encode_attrs=False), line, note, bad, problems)
        if "device_id" not in bad:
            if d.device_id in first_line:
                problems.append(CsvProblem(line, "device_id", f"duplicate device_id {d.device_id!r} "
                                           f"(first on line {first_line[d.device_id]}){note}"))
                bad.add("device_id")
            else:
                first_line[d.device_id] = line
        if not bad:
            devices.append(d)
    if problems:
        raise CsvError(filename, _ordered(problems, DEVICE_COLUMNS))
    return devices


_ROLLOUT_PARSERS: dict[str, Callable[[str], Any]] = {
    "programme": _stripped, "kind": _stripped, "district": _stripped,
    "target": _whole, "start": _date, "deadline": _date,
}


def parse_rollout(data: bytes | str, filename: str = "rollout.csv") -> list[RolloutTarget]:
    """Parse and validate rollout.csv content; raises :class:`CsvError` naming every problem.
    A row is identified by (programme, kind, district); a repeated one is an error."""
    text = _decode(data, filename)
    problems: list[CsvProblem] = []
    targets: list[RolloutTarget] = []
    first_line: dict[tuple[str, str, str], int] = {}
    for line, row_no, rec in _rows(text, ROLLOUT_COLUMNS, ROLLOUT_COLUMNS, problems):
        note = _row_note(line, row_no)
        v, bad = _cells(rec, _ROLLOUT_PARSERS, line, note, problems)
        _required(rec, ROLLOUT_COLUMNS, line, note, bad, problems)
        t = RolloutTarget(v.get("programme", ""), v.get("kind", ""), v.get("district", ""),
                          v.get("target", 0), v.get("start") or "", v.get("deadline") or "")
        _semantic(rollout_problems(t), line, note, bad, problems)
        key = (t.programme, t.kind, t.district)
        if not bad & {"programme", "kind", "district"}:
            if key in first_line:
                problems.append(CsvProblem(line, "district", f"duplicate target for {'/'.join(key)} "
                                           f"(first on line {first_line[key]}){note}"))
                bad.add("district")
            else:
                first_line[key] = line
        if not bad:
            targets.append(t)
    if problems:
        raise CsvError(filename, _ordered(problems, ROLLOUT_COLUMNS))
    return targets


def _read(path: str | Path) -> tuple[bytes, str]:
    p = Path(path)
    try:
        return p.read_bytes(), p.name
    except OSError as e:
        raise CsvError(p.name, [CsvProblem(0, "", f"cannot read {str(p)!r}: {e.strerror}")]) from None


def read_devices(path: str | Path) -> list[Device]:
    """Parse and validate a devices.csv file (nothing is stored)."""
    data, name = _read(path)
    return parse_devices(data, name)


def read_rollout(path: str | Path) -> list[RolloutTarget]:
    """Parse and validate a rollout.csv file (nothing is stored)."""
    data, name = _read(path)
    return parse_rollout(data, name)


def import_devices(registry: Registry, path: str | Path) -> int:
    """Import devices.csv: all rows upserted in one transaction, or none (:class:`CsvError`).
    Returns the number of devices written."""
    return registry.upsert(read_devices(path))


def import_rollout(registry: Registry, path: str | Path) -> int:
    """Import rollout.csv: all targets upserted in one transaction, or none (:class:`CsvError`).
    Returns the number of targets written."""
    return registry.upsert_rollout(read_rollout(path))


# --- writing ------------------------------------------------------------------------------

def _num(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def _device_row(d: Device) -> list[str]:
    return [
        d.device_id, d.kind, d.district, _num(d.lat), _num(d.lon), d.asset_id, d.asset_name,
        d.responsible_unit, d.status, d.installed_at or "", attrs_json(d.attrs) if d.attrs else "",
    ]


def _write(path: str | Path, columns: Sequence[str], rows: Iterable[list[str]], bom: bool) -> int:
    """Write atomically: a temporary file in the same directory, renamed over ``path``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\r\n")
            w.writerow(columns)
            for row in rows:
                w.writerow(row)
                n += 1
        os.replace(tmp, p)
    except BaseException:
        os.unlink(tmp)
        raise
    return n


def write_devices(devices: Iterable[Device], path: str | Path, *, bom: bool = False) -> int:
    """Write ``devices`` as devices.csv; returns the number of rows. ``bom=True`` prefixes a
    UTF-8 byte-order mark so that Excel shows Chinese text correctly when opening the file."""
    return _write(path, DEVICE_COLUMNS, map(_device_row, devices), bom)


def export_devices(registry: Registry, path: str | Path, *, bom: bool = False) -> int:
    """Export every device, ordered by device_id; returns the number of rows."""
    rows = (
        [*r[:3], _num(r[3]), _num(r[4]), *r[5:9], r[9] or "", "" if r[10] == "{}" else r[10]]
        for r in registry.iter_rows()
    )
    return _write(path, DEVICE_COLUMNS, rows, bom)


def write_rollout(targets: Iterable[RolloutTarget], path: str | Path, *, bom: bool = False) -> int:
    """Write ``targets`` as rollout.csv; returns the number of rows."""
    return _write(path, ROLLOUT_COLUMNS,
                  ([t.programme, t.kind, t.district, str(t.target), t.start, t.deadline] for t in targets),
                  bom)


def export_rollout(registry: Registry, path: str | Path, *, bom: bool = False) -> int:
    """Export every rollout target, ordered by programme, kind, district."""
    return write_rollout(registry.rollout_targets(), path, bom=bom)
