"""The rollout report's renderers over a generated document (tests/dashboards/rollout_sample.py,
13 Wuhan districts, a year of weekly series, some districts behind): the HTML is one
self-contained page that parses, carries every district's figures as the document has them, and
draws Chinese district names without a missing glyph; the workbook read back with openpyxl has
every figure, date and exception row of the document, in valid sheets with frozen headers."""

from __future__ import annotations

import base64
import copy
import io
import re
import warnings
import zipfile
from datetime import date, datetime
from html.parser import HTMLParser

import openpyxl
import pytest
from PIL import Image

from dashboards.rollout_report import BadDocument, MissingFont, render_html, render_xlsx
from dashboards.rollout_report.fonts import PACKAGE, cjk_family, font_path, missing_glyphs
from dashboards.rollout_report.xlsx import sheet_name, text_width
from tests.dashboards.rollout_sample import WUHAN, sample_document, sample_rows

VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source", "wbr"}


@pytest.fixture(scope="module")
def doc():
    return sample_document(seed=7)


class Page(HTMLParser):
    """The report's rows (``data-district``), images and exception counts; fails on a tag
    closed out of order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.rows: dict[str, list[str]] = {}
        self.row_class: dict[str, str] = {}
        self.charts: dict[str, str] = {}
        self.lists: dict[str, list[str]] = {}
        self.attrs: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.attrs += [v or "" for _, v in attrs]
        if tag not in VOID:
            self.stack.append(tag)
        if tag == "tr" and ("data-district" in a or "data-list" in a):
            self._row = []
            key = a.get("data-district") or a["data-list"]
            (self.rows if "data-district" in a else self.lists)[key] = self._row
            self.row_class[key] = a.get("class", "")
        if tag == "figure":
            self._figure = a["data-district"]
        if tag == "img":
            self.charts[self._figure] = a["src"]
        if tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()
        if tag == "td" and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(page: str) -> Page:
    p = Page()
    p.feed(page)
    p.close()
    assert p.stack == [], p.stack
    return p


def expected_cells(f: dict) -> list[str]:
    """The figures a summary row shows, formatted independently of the renderer."""
    return [f"{f[k]:,}" for k in ("target", "planned", "installed", "commissioned", "reporting")] + [
        f"{f['commissioned_share'] * 100:.1f} %", f"{f['pace_per_week']:,.0f}"]


@pytest.mark.parametrize("language", ["zh", "en"])
def test_html_is_self_contained_parses_and_carries_every_figure(doc, language):
    page = render_html(doc, language=language)
    assert not re.search(r"https?://", page, re.I), "an external reference"
    assert "@import" not in page and "url(" not in page
    p = parse(page)
    assert all(v.startswith("data:image/png;base64,") or not v.startswith(("//", "/")) for v in p.attrs)
    programme = doc["programmes"][0]
    by_name = {"_all": {**programme["totals"], "deadline": programme["deadline"]},
               **{d["district"]: d for d in programme["districts"]}}
    assert set(p.rows) == set(by_name) == {"_all", *WUHAN}
    missed = set()
    for name, f in by_name.items():
        cells = p.rows[name]
        assert cells[1:8] == expected_cells(f), name
        assert cells[9] == f["deadline"]
        if f["completed_on"]:
            assert f["completed_on"] in cells[8]
        else:
            for k in ("forecast", "forecast_early", "forecast_late"):
                assert f[k] is None or f[k] in cells[8], (name, k)
        needed = f["needed_per_week"]
        assert cells[11] == ("—" if needed is None else f"{needed:,.0f}")
        if f["on_track"] is False:
            missed.add(name)
            assert "miss" in p.row_class[name] and cells[10].startswith("✗")
        else:
            assert "miss" not in p.row_class[name]
    assert missed >= {"江汉区", "青山区", "蔡甸区"}  # the sample's districts behind
    for name in missed - {"_all"}:
        assert name in page.split("<table>")[0]  # named in the line above the table
    assert set(p.charts) == set(by_name)
    for src in p.charts.values():
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert img.format == "PNG" and img.size[0] >= 400
    assert {k: v[-1] for k, v in p.lists.items()} == {k: f"{e['count']:,}" for k, e in doc["exceptions"].items()}
    title = {"zh": "安装后未上报", "en": "Installed, never heard from"}[language]
    assert p.lists["never_heard"][0] == title


def test_chinese_district_names_draw_without_a_missing_glyph(doc):
    family = cjk_family()
    assert "CJK" in family and "noto" in font_path(family).lower()
    assert missing_glyphs(family, "".join(WUHAN)) == set()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        render_html(doc, language="zh")
    missing = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    assert not missing, missing[:3]


def test_the_glyph_check_sees_tofu():
    """The check above would see a font without Chinese glyphs: matplotlib warns per glyph."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure()
    FigureCanvasAgg(fig)
    fig.text(0.1, 0.5, "江岸区", fontfamily="DejaVu Sans")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.canvas.draw()
    assert any("missing from font" in str(w.message) for w in caught)
    assert missing_glyphs("DejaVu Sans", "江岸区") == set("江岸区")


def test_no_cjk_font_is_an_error_naming_the_package():
    with pytest.raises(MissingFont, match=PACKAGE):
        cjk_family(("No Such Font Family",))


def test_bad_input_is_named(doc):
    with pytest.raises(ValueError, match="language must be one of zh, en, not 'fr'"):
        render_html(doc, language="fr")
    bad = copy.deepcopy(doc)
    del bad["programmes"][0]["districts"][3]["forecast"]
    with pytest.raises(BadDocument, match=r"districts\[3\] \(汉阳区\) lacks forecast"):
        render_html(bad)
    with pytest.raises(BadDocument, match="exceptions"):
        render_xlsx({k: v for k, v in doc.items() if k != "exceptions"}, {})


# -- the workbook --------------------------------------------------------------------------------

def as_date(v: str | None):
    if v is None:
        return None
    if len(v) == 10:
        return datetime.combine(date.fromisoformat(v), datetime.min.time())
    return datetime.fromisoformat(v).replace(tzinfo=None)


def summary_expected(programme: str, name: str, f: dict, deadline: str) -> list:
    status = ("已完成" if f["completed_on"] else "按期") if f["on_track"] else (
        "将延期" if f["on_track"] is False else "无法预测")
    return [programme, "全部（合计）" if name == "_all" else name, as_date(deadline),
            f["target"], f["planned"], f["installed"], f["commissioned"], f["reporting"], f["commissioned_share"],
            f["pace_per_week"], f["pace_p10"], f["pace_p90"], *(as_date(f[k]) for k in (
                "forecast", "forecast_early", "forecast_late", "completed_on")), status, f["needed_per_week"]]


@pytest.fixture(scope="module")
def lists(doc):
    out = {name: sample_rows(doc, 120, name, seed=i) for i, name in enumerate(doc["exceptions"])}
    out["never_heard"][0]["asset_name"] = '=HYPERLINK("x","y")'  # text, never a formula
    out["weak_signal"] = []
    return out


@pytest.fixture(scope="module")
def xlsx(doc, lists):
    return render_xlsx(doc, lists)


@pytest.fixture(scope="module")
def book(xlsx):
    return openpyxl.load_workbook(io.BytesIO(xlsx))


def test_each_district_sheet_has_its_chart(xlsx):
    with zipfile.ZipFile(io.BytesIO(xlsx)) as z:
        charts = sorted(n for n in z.namelist() if re.fullmatch(r"xl/charts/chart\d+\.xml", n))
        assert len(charts) == 14  # the totals and 13 districts
        second = z.read("xl/charts/chart2.xml").decode()  # the first district's
    assert "江岸区!$E$2:$E$53" in second and "江岸区!$F$2:$F$53" in second  # commissioned, target


def values(ws) -> list[list]:
    return [list(r) for r in ws.iter_rows(values_only=True)]


def test_workbook_has_every_figure_of_the_document(doc, book):
    programme = doc["programmes"][0]
    names = book.sheetnames
    assert names[0] == "汇总 Summary" and names[1:15] == ["全部（合计）", *WUHAN]
    summary = values(book[names[0]])
    expected = [summary_expected(programme["programme"], "_all", programme["totals"], programme["deadline"])]
    expected += [summary_expected(programme["programme"], d["district"], d, d["deadline"])
                 for d in programme["districts"]]
    assert len(summary[1:15]) == len(expected)
    for got, want in zip(summary[1:15], expected, strict=True):
        assert got == pytest.approx(want, rel=1e-14), want[1]  # Excel keeps 15 significant digits
    assert summary[16][:3] == ["异常清单 Exception lists", "清单 List", "数量 Count"]
    counts = {r[0]: r[2] for r in summary[17:]}
    assert counts == {k: e["count"] for k, e in doc["exceptions"].items()}
    ws = book[names[0]]
    assert ws["I2"].number_format == "0.0%" and isinstance(ws["D2"].value, int) and ws["C2"].is_date
    for d in programme["districts"]:
        rows = values(book[d["district"]])
        assert rows[1:] == [[as_date(w["week_start"]), w["installed"], w["commissioned"], w["installed_cumulative"],
                             w["commissioned_cumulative"], d["target"]] for w in d["weekly"]], d["district"]
        assert book[d["district"]]["A2"].number_format == "yyyy-mm-dd"


def test_workbook_lists_and_sheet_layout(doc, lists, book):
    titles = [e["title_zh"] for e in doc["exceptions"].values()]
    assert book.sheetnames[15:] == titles
    for (name, rows), title in zip(lists.items(), titles, strict=True):
        got = values(book[title])
        assert got[0][0] == "设备编号 device_id" and len(got) == len(rows) + 1
        assert got[1:] == [[r["device_id"], r["district"], r["asset_id"], r["asset_name"], r["responsible_unit"],
                            r["reason"], as_date(r["since"])] for r in rows], name
    assert book["安装后未上报"]["D2"].data_type == "s"
    for ws in book.worksheets:
        assert len(ws.title) <= 31 and not re.search(r"[\[\]:*?/\\]", ws.title)
        assert ws.freeze_panes == ("C2" if ws.title == "汇总 Summary" else "A2"), ws.title
        widths = {k: d.width for k, d in ws.column_dimensions.items()}
        assert widths and all(8 <= w <= 60 for w in widths.values()), (ws.title, widths)
    names = book["安装后未上报"]
    assert names.column_dimensions["D"].width >= max(text_width(r["asset_name"]) for r in lists["never_heard"])


def test_sheet_names_are_valid_and_unique():
    taken: set[str] = set()
    assert sheet_name("a/b:c*d?[e]\\f", taken) == "a_b_c_d__e__f"
    long = "调试后静默超过两天的新表清单" * 3
    first = sheet_name(long, taken)
    second = sheet_name(long, taken)
    assert len(first) == len(second) == 31 and first != second and second.endswith(" (2)")
    assert sheet_name("History", taken) == "History_"
    assert sheet_name("A_B_C_D__E__F", taken) == "A_B_C_D__E__F (2)"  # Excel ignores case


def test_several_programmes_get_their_own_district_sheets(doc):
    two = copy.deepcopy(doc)
    other = copy.deepcopy(two["programmes"][0])
    other["programme"] = "smart-gas-meters-2022-phase-two-extension"
    two["programmes"].append(other)
    book = openpyxl.load_workbook(io.BytesIO(render_xlsx(two, {})), read_only=True)
    names = book.sheetnames
    assert len(names) == len(set(n.lower() for n in names)) == 1 + 2 * 14 + 5
    assert "江岸区 smart-gas-meters-2021" in names
    assert sum(n.startswith("江岸区 smart-gas-meters-2022") for n in names) == 1


def test_edge_cases_render(doc):
    """A district not started (no weeks, target 0, nothing forecast), a name that is markup and
    mathtext, a deadline already passed: both outputs render, the name escaped."""
    odd = copy.deepcopy(doc)
    d = odd["programmes"][0]["districts"][0]
    d.update(district="<i>A$b$</i>", target=0, planned=0, installed=0, commissioned=0, reporting=0,
             commissioned_share=0.0, weekly=[], pace_per_week=0.0, pace_p10=0.0, pace_p90=0.0, forecast=None,
             forecast_early=None, forecast_late=None, completed_on=None, on_track=None, needed_per_week=None)
    odd["programmes"][0]["districts"][1]["deadline"] = "2026-01-31"
    page = render_html(odd, language="en")
    assert "<i>A$b$</i>" not in page and "&lt;i&gt;A$b$&lt;/i&gt;" in page
    p = parse(page)
    assert p.rows["<i>A$b$</i>"][1:6] == ["0"] * 5 and "<i>A$b$</i>" in p.charts
    book = openpyxl.load_workbook(io.BytesIO(render_xlsx(odd, {})), read_only=True)
    assert "<i>A$b$<_i>" in book.sheetnames  # "/" is not allowed in a sheet name
