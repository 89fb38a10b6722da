"""The CJK font the charts draw district names with, found by family name through matplotlib's
font manager.

Debian's ``fonts-noto-cjk`` provides "Noto Sans CJK SC" (the preferred family: simplified
Chinese glyph forms); other CJK families are accepted after it. Fonts installed after
matplotlib built its font cache are not in it: the system font directories are then scanned
once and the CJK files added. No CJK font at all is :class:`MissingFont`, naming the package.
"""

from __future__ import annotations

import functools

PACKAGE = "fonts-noto-cjk"
FAMILIES = ("Noto Sans CJK SC", "Noto Sans CJK TC", "Noto Sans CJK JP", "Source Han Sans SC", "WenQuanYi Micro Hei")
_FILE_HINTS = ("cjk", "wqy", "sourcehan")
SAMPLE = "江岸区江汉区硚口区汉阳区武昌区青山区洪山区东西湖区汉南区蔡甸区江夏区黄陂区新洲区已调试累计目标截止日期今天"


class MissingFont(RuntimeError):
    pass


def _known(families: tuple[str, ...]) -> str | None:
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    return next((f for f in families if f in names), None)


def _add_system_cjk_fonts() -> None:
    from matplotlib import font_manager

    for path in font_manager.findSystemFonts():
        if any(h in path.lower() for h in _FILE_HINTS):
            try:
                font_manager.fontManager.addfont(path)
            except (OSError, RuntimeError, ValueError):  # an unreadable file is not a font we can use
                continue


@functools.cache
def cjk_family(families: tuple[str, ...] = FAMILIES) -> str:
    """The first of ``families`` matplotlib knows, for text with Chinese district names."""
    found = _known(families)
    if found != families[0]:  # maybe installed after matplotlib built its font cache
        _add_system_cjk_fonts()
        found = _known(families)
    if found is None:
        raise MissingFont(f"no CJK font for the rollout charts (looked for {', '.join(families)}): "
                          f"install Debian's {PACKAGE} (apt-get install {PACKAGE})")
    return found


def font_path(family: str) -> str:
    """The file matplotlib draws ``family`` from."""
    from matplotlib import font_manager

    return font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)


def missing_glyphs(family: str, text: str = SAMPLE) -> set[str]:
    """The characters of ``text`` the font of ``family`` has no glyph for (empty: all drawn)."""
    from matplotlib.ft2font import FT2Font

    font = FT2Font(font_path(family))
    cmap = font.get_charmap()
    return {ch for ch in text if ord(ch) not in cmap}
