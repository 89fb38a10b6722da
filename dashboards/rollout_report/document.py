"""The rollout report document the renderers read (devices/rollout.py's ``format=json``), its
check, labels in two languages and the formatting of its values.

The document: ``{"generated_at", "as_of", "source", "tz", "programmes": [{"programme", "kind",
"start", "deadline", "totals": FIGURES, "districts": [{"district", "start", "deadline",
**FIGURES}]}], "exceptions": {NAME: {"title_zh", "title_en", "count"}}}`` with FIGURES the
counts (target, planned, installed, commissioned, reporting), ``commissioned_share``, the
``weekly`` series, ``pace_per_week``, ``pace_p10``, ``pace_p90``, ``forecast``,
``forecast_early``, ``forecast_late``, ``completed_on``, ``on_track`` and ``needed_per_week``.
"""

from __future__ import annotations

from collections.abc import Iterator

LANGUAGES = ("zh", "en")
COUNTS = ("target", "planned", "installed", "commissioned", "reporting")
FIGURES = (*COUNTS, "commissioned_share", "weekly", "pace_per_week", "pace_p10", "pace_p90", "forecast",
           "forecast_early", "forecast_late", "completed_on", "on_track", "needed_per_week")
WEEK = ("week_start", "installed", "commissioned", "installed_cumulative", "commissioned_cumulative")
LIST_COLUMNS = ("device_id", "district", "asset_id", "asset_name", "responsible_unit", "reason", "since")
TOTAL = "_all"  # the programme totals' district, as in the snapshot measurement


class BadDocument(ValueError):
    """The document lacks what the renderer needs; the message names the key and where."""


def check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, not {language!r}")
    return language


def _need(obj: object, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(obj, dict):
        raise BadDocument(f"rollout document: {where} must be an object, not {type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise BadDocument(f"rollout document: {where} lacks {', '.join(missing)}")


def check(doc: dict) -> dict:
    """``doc`` if it has every key the renderers read, else :class:`BadDocument` naming it."""
    _need(doc, ("as_of", "generated_at", "programmes", "exceptions"), "the document")
    for i, p in enumerate(doc["programmes"]):
        where = f"programmes[{i}]"
        _need(p, ("programme", "deadline", "totals", "districts"), where)
        _need(p["totals"], FIGURES, f"{where}.totals")
        for j, d in enumerate(p["districts"]):
            _need(d, ("district", "deadline", *FIGURES), f"{where}.districts[{j}] ({d.get('district', '?')})")
            for k, w in enumerate(d["weekly"][:1]):
                _need(w, WEEK, f"{where}.districts[{j}].weekly[{k}]")
    for name, e in doc["exceptions"].items():
        _need(e, ("count",), f"exceptions.{name}")
    return doc


def rows(programme: dict) -> Iterator[tuple[str, dict]]:
    """(district name or TOTAL, figures with deadline) of a programme, the totals first."""
    yield TOTAL, {**programme["totals"], "deadline": programme["deadline"]}
    for d in programme["districts"]:
        yield d["district"], d


# -- labels --------------------------------------------------------------------------------------

LABELS: dict[str, tuple[str, str]] = {  # key: (zh, en)
    "title": ("燃气表智能化改造进度周报", "Smart meter rollout report"),
    "as_of": ("数据截至", "Figures as of"),
    "generated": ("生成时间", "Generated"),
    "source": ("数据来源", "Source"),
    "live": ("实时", "live"),
    "snapshot": ("每日快照", "daily snapshot"),
    "programme": ("项目", "Programme"),
    "district": ("行政区", "District"),
    "total": ("全部（合计）", "All (total)"),
    "start": ("开始", "Start"),
    "deadline": ("截止日期", "Deadline"),
    "target": ("目标", "Target"),
    "planned": ("待安装", "Planned"),
    "installed": ("已安装", "Installed"),
    "commissioned": ("已调试", "Commissioned"),
    "reporting": ("48 h 内上报", "Reporting (48 h)"),
    "share": ("完成率", "Share of target"),
    "pace": ("近期每周", "Pace / week"),
    "forecast": ("预计完成", "Forecast"),
    "range": ("区间", "range"),
    "on_track": ("能否按期", "On track"),
    "needed": ("按期所需每周", "Needed / week"),
    "yes": ("按期", "on track"),
    "no": ("将延期", "will miss"),
    "unknown": ("无法预测", "unknown"),
    "done": ("已完成", "done"),
    "never": ("当前速度下无法完成", "never at that pace"),
    "behind_intro": ("按近期速度将无法在截止日期前完成的区：", "Districts that will miss their deadline at their "
                     "recent pace: "),
    "all_on_track": ("各区按近期速度均可按期完成。", "Every district meets its deadline at its recent pace."),
    "charts": ("各区累计进度", "Cumulative progress per district"),
    "exceptions": ("异常清单", "Exception lists"),
    "list": ("清单", "List"),
    "count": ("数量", "Count"),
    "cone": ("预测区间（近期每周速度第 10–90 百分位）",
             "Forecast cone (10th–90th percentile of the recent weekly pace)"),
    "target_line": ("目标", "target"),
    "deadline_line": ("截止日期", "deadline"),
    "now": ("今天", "today"),
    "p10": ("慢（P10）", "slow (p10)"),
    "p90": ("快（P90）", "fast (p90)"),
    "installed_cumulative": ("累计安装", "installed, cumulative"),
    "commissioned_cumulative": ("累计调试", "commissioned, cumulative"),
    "week_start": ("周一", "week (Monday)"),
    "installed_week": ("本周安装", "installed in the week"),
    "commissioned_week": ("本周调试", "commissioned in the week"),
    "summary_sheet": ("汇总", "Summary"),
    "device_id": ("设备编号", "device id"),
    "asset_id": ("设施编号", "asset id"),
    "asset_name": ("设施名称", "asset"),
    "responsible_unit": ("责任单位", "responsible unit"),
    "reason": ("原因", "reason"),
    "since": ("开始时间", "since"),
    "p10_col": ("每周 P10", "pace p10"),
    "p90_col": ("每周 P90", "pace p90"),
    "early": ("最早", "early"),
    "late": ("最晚", "late"),
    "completed_on": ("完成日期", "completed on"),
}


def label(key: str, language: str) -> str:
    zh, en = LABELS[key]
    return zh if language == "zh" else en


def both(key: str) -> str:
    """``中文 English``: the workbook's headers (Chinese offices, English readers)."""
    zh, en = LABELS[key]
    return f"{zh} {en}"


def district_name(name: str, language: str) -> str:
    return label("total", language) if name == TOTAL else name


def exception_title(name: str, entry: dict | None, language: str) -> str:
    entry = entry or {}
    return str(entry.get(f"title_{language}") or entry.get("title_en") or name)


def status(f: dict) -> str:
    """``done``, ``yes``, ``no`` or ``unknown``: the label key of a district's standing."""
    if f.get("completed_on"):
        return "done" if f.get("on_track") is not False else "no"
    return {True: "yes", False: "no"}.get(f.get("on_track"), "unknown")


# -- values --------------------------------------------------------------------------------------

DASH = "—"


def integer(v: object) -> str:
    return DASH if v is None else f"{int(v):,}"


def decimal(v: object, places: int = 0) -> str:
    return DASH if v is None else f"{float(v):,.{places}f}"


def percent(v: object) -> str:
    return DASH if v is None else f"{float(v) * 100:.1f} %"
