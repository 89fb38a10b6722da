"""The rollout report rendered for people: one self-contained HTML page (:func:`render_html`)
and one Excel workbook (:func:`render_xlsx`), from the document of devices/rollout.py (its
``format=json``; keys in :mod:`dashboards.rollout_report.document`).

Needs matplotlib and XlsxWriter (runtime dependencies) and a CJK font (Debian's
``fonts-noto-cjk``) for the charts; not the Grafana SDK.
"""

from __future__ import annotations

from dashboards.rollout_report.document import BadDocument
from dashboards.rollout_report.fonts import MissingFont
from dashboards.rollout_report.html import render_html
from dashboards.rollout_report.xlsx import render_xlsx

__all__ = ["BadDocument", "MissingFont", "render_html", "render_xlsx"]
