"""The rollout report as one self-contained HTML file: what a programme manager opens on Monday.

Per programme: a line naming the districts that will miss their deadline, the summary table
(the totals, then each district; a district that will miss is tinted and marked), the
cumulative progress chart of the totals and of each district (PNG, base64 in ``data:`` URLs);
then the exception lists' counts. No external reference of any kind: styles inline, charts
embedded, text in the reader's fonts (the charts carry their own CJK glyphs).
"""

from __future__ import annotations

import base64
from html import escape

from dashboards.rollout_report.charts import COLOURS, progress_chart
from dashboards.rollout_report.document import (
    DASH,
    TOTAL,
    check,
    check_language,
    decimal,
    district_name,
    exception_title,
    integer,
    label,
    percent,
    rows,
    status,
)

CSS = """
body{font-family:"Noto Sans CJK SC","Microsoft YaHei","PingFang SC",sans-serif;margin:24px;color:#222;
     max-width:1500px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px} h3{font-size:15px;margin:18px 0 6px}
.meta{color:#666;font-size:13px}
.alert{background:#fdecea;border-left:4px solid #c62828;padding:8px 12px;margin:12px 0;font-size:14px}
.fine{background:#e8f5e9;border-left:4px solid #2e7d32;padding:8px 12px;margin:12px 0;font-size:14px}
table{border-collapse:collapse;font-size:13px} .wide{overflow-x:auto}
th,td{padding:4px 8px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}
th{background:#f3f5f8;position:sticky;top:0} td.name,th.name{text-align:left}
tr.total td{font-weight:bold;background:#f7f7f7}
tr.miss td{background:#fdecea} tr.miss td.status{color:#c62828;font-weight:bold}
td.status.yes,td.status.done{color:#2e7d32} td.status.unknown{color:#8a6d00}
.range{color:#777;font-size:11px;display:block}
.bar{display:inline-block;height:8px;background:#1f5fbf;vertical-align:middle;margin-left:6px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,470px);gap:12px}
.chart{border:1px solid #ddd;padding:4px;margin:0} .chart.miss{border:2px solid #c62828}
.chart img{width:460px;height:auto;display:block}
.key span{display:inline-block;margin-right:16px;font-size:13px}
.key i{display:inline-block;width:22px;height:0;vertical-align:middle;margin-right:5px;border-top:3px solid}
.key i.area{height:10px;border:0;opacity:.45}
@media print{body{margin:0} th{position:static} .chart,tr{break-inside:avoid}}
"""


def render_html(doc: dict, *, language: str = "zh") -> str:
    """The report ``doc`` (the agreed document: dashboards/rollout_report/document.py) as one
    self-contained HTML page in ``language`` (``zh`` or ``en``)."""
    check_language(language)
    check(doc)
    lang = language
    title = label("title", lang)
    body = [f"<h1>{escape(title)}</h1>", _meta(doc, lang)]
    for p in doc["programmes"]:
        body.append(_programme(p, doc["as_of"], lang))
    body.append(_exceptions(doc["exceptions"], lang))
    return (f'<!DOCTYPE html>\n<html lang="{"zh-CN" if lang == "zh" else "en"}">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(title)} {escape(doc['as_of'])}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _meta(doc: dict, lang: str) -> str:
    source = doc.get("source", "live")
    source_text = label(source, lang) if source in ("live", "snapshot") else source
    parts = [f"{label('as_of', lang)}: <b>{escape(doc['as_of'])}</b>",
             f"{label('generated', lang)}: {escape(doc['generated_at'])}",
             f"{label('source', lang)}: {escape(source_text)}"]
    if doc.get("tz"):
        parts.append(escape(doc["tz"]))
    return f'<p class="meta">{" · ".join(parts)}</p>'


def _programme(p: dict, as_of: str, lang: str) -> str:
    head = (f"<h2>{label('programme', lang)}: {escape(p['programme'])}</h2>"
            f'<p class="meta">{escape(p.get("kind", ""))} · {label("start", lang)} {escape(p.get("start", DASH))} · '
            f"{label('deadline', lang)} <b>{escape(p['deadline'])}</b></p>")
    return "\n".join([head, _behind(p, lang), _summary(p, lang), _charts(p, as_of, lang)])


def _behind(p: dict, lang: str) -> str:
    late = [d for d in p["districts"] if status(d) == "no"]
    if not late:
        return f'<p class="fine">{label("all_on_track", lang)}</p>'
    sep = "、" if lang == "zh" else ", "
    names = sep.join(f"<b>{escape(d['district'])}</b>" for d in late)
    return f'<p class="alert">⚠ {label("behind_intro", lang)}{names}</p>'


COLUMNS = ("district", "target", "planned", "installed", "commissioned", "reporting", "share", "pace", "forecast",
           "deadline", "on_track", "needed")


def _summary(p: dict, lang: str) -> str:
    head = "".join(f'<th class="{"name" if c == "district" else ""}">{label(c, lang)}</th>' for c in COLUMNS)
    body = [_row(name, f, lang) for name, f in rows(p)]
    return (f'<div class="wide"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(body)
            + "\n</tbody>\n</table></div>")


def _forecast(f: dict, lang: str) -> str:
    if f.get("completed_on"):
        return f"{label('done', lang)} {escape(f['completed_on'])}"
    main = escape(f.get("forecast") or DASH)
    if f.get("forecast") is None and not f.get("pace_per_week"):
        main = label("never", lang)
    early, late = f.get("forecast_early"), f.get("forecast_late")
    if early is None and late is None:
        return main
    return (f'{main}<span class="range">{label("range", lang)} {escape(early or DASH)} – '
            f'{escape(late or label("never", lang))}</span>')


def _row(name: str, f: dict, lang: str) -> str:
    st = status(f)
    cls = " ".join(c for c in ("total" if name == TOTAL else "", "miss" if st == "no" else "") if c)
    share = float(f["commissioned_share"])
    bar = f'<span class="bar" style="width:{min(share, 1.0) * 60:.0f}px"></span>'
    mark = "✗ " if st == "no" else ("✓ " if st in ("yes", "done") else "? ")
    cells = [
        f'<td class="name">{escape(district_name(name, lang))}</td>',
        *(f"<td>{integer(f[k])}</td>" for k in ("target", "planned", "installed", "commissioned", "reporting")),
        f"<td>{percent(share)}{bar}</td>",
        f"<td>{decimal(f['pace_per_week'])}</td>",
        f"<td>{_forecast(f, lang)}</td>",
        f"<td>{escape(f.get('deadline') or DASH)}</td>",
        f'<td class="status {st}">{mark}{label(st, lang)}</td>',
        f"<td>{decimal(f.get('needed_per_week'))}</td>",
    ]
    return f'<tr class="{cls}" data-district="{escape(name)}">' + "".join(cells) + "</tr>"


def _key(lang: str) -> str:
    items = [("line", COLOURS["commissioned"], label("commissioned_cumulative", lang)),
             ("line", COLOURS["installed"], label("installed_cumulative", lang)),
             ("line", COLOURS["target"], label("target_line", lang)),
             ("line", COLOURS["deadline"], label("deadline_line", lang)),
             ("line", COLOURS["now"], label("now", lang)),
             ("area", COLOURS["cone"], label("cone", lang))]
    spans = []
    for kind, colour, text in items:
        style = f"background:{colour}" if kind == "area" else f"border-color:{colour}"
        spans.append(f'<span><i class="{kind}" style="{style}"></i>{escape(text)}</span>')
    return f'<p class="key">{"".join(spans)}</p>'


def _charts(p: dict, as_of: str, lang: str) -> str:
    cards = []
    for name, f in rows(p):
        png = progress_chart(name, f, as_of, f.get("deadline") or p["deadline"], lang)
        alt = f"{district_name(name, lang)}: {label('commissioned', lang)} {integer(f['commissioned'])} / " \
              f"{label('target', lang)} {integer(f['target'])}"
        miss = " miss" if status(f) == "no" else ""
        cards.append(f'<figure class="chart{miss}" data-district="{escape(name)}"><img alt="{escape(alt)}" '
                     f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}"></figure>')
    return (f"<h3>{label('charts', lang)}</h3>\n{_key(lang)}\n<div class=\"charts\">\n" + "\n".join(cards)
            + "\n</div>")


def _exceptions(exceptions: dict, lang: str) -> str:
    body = "".join(f'<tr data-list="{escape(name)}"><td class="name">{escape(exception_title(name, e, lang))}</td>'
                   f'<td class="name"><code>{escape(name)}</code></td><td>{integer(e["count"])}</td></tr>'
                   for name, e in exceptions.items())
    return (f"<h2>{label('exceptions', lang)}</h2>\n<table><thead><tr><th class=\"name\">{label('list', lang)}</th>"
            f"<th class=\"name\">NAME</th><th>{label('count', lang)}</th></tr></thead><tbody>{body}</tbody></table>")
