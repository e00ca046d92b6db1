"""Dark-mode checks on rendered HTML, for preflight.

Mail apps with a dark mode replace transparent backgrounds with a dark one but keep
colours that are hard-coded in inline styles, so dark text with no background of its
own (on any ancestor) turns into dark-on-dark. Text under an element with a
background colour is safe: apps either keep both colours or invert both.

Also checks that the HTML declares a `color-scheme` (so apps know we style dark mode
ourselves) and, when it claims dark support, that it has dark styles.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

#: The background a dark-mode app paints behind transparent areas (Gmail, Outlook: ~#121212).
DARK_BACKGROUND = (0.07, 0.07, 0.07)
#: Below this contrast against DARK_BACKGROUND, text is unreadable (WCAG large-text level).
MIN_CONTRAST = 3.0

_HEX = re.compile(r"#([0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8})\b")
_RGB = re.compile(r"rgba?\(\s*([^)]*)\)")
_NAMED = {
    "black": "#000000", "white": "#ffffff", "gray": "#808080", "grey": "#808080",
    "silver": "#c0c0c0", "dimgray": "#696969", "dimgrey": "#696969", "darkgray": "#a9a9a9",
    "darkgrey": "#a9a9a9", "navy": "#000080", "maroon": "#800000", "darkblue": "#00008b",
    "darkgreen": "#006400", "darkred": "#8b0000", "midnightblue": "#191970", "red": "#ff0000",
    "blue": "#0000ff", "green": "#008000", "purple": "#800080", "olive": "#808000",
    "teal": "#008080", "darkslategray": "#2f4f4f", "darkslategrey": "#2f4f4f",
}  # fmt: skip
_COLOUR_TOKEN = re.compile(r"#[0-9a-fA-F]{3,8}\b|rgba?\([^)]*\)|\b[a-zA-Z]+\b")
_VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
_SKIP_TEXT = frozenset({"style", "script", "title", "head"})
_DARK_MEDIA = re.compile(r"prefers-color-scheme\s*:\s*dark", re.IGNORECASE)
_CSS_SCHEME = re.compile(r"(?<![-\w])color-scheme\s*:\s*([^;}\"']+)", re.IGNORECASE)

Rgba = tuple[float, float, float, float]


def parse_colour(value: str) -> Rgba | None:
    """#rgb, #rrggbb(aa), rgb()/rgba(), a few names, or transparent; None if unknown."""
    v = value.strip().lower().removesuffix("!important").strip()
    if v == "transparent":
        return (0.0, 0.0, 0.0, 0.0)
    v = _NAMED.get(v, v)
    m = _HEX.fullmatch(v)
    if m:
        h = m.group(1)
        if len(h) in (3, 4):
            h = "".join(c * 2 for c in h)
        channels = [int(h[i : i + 2], 16) / 255 for i in range(0, len(h), 2)]
        return (channels[0], channels[1], channels[2], channels[3] if len(channels) == 4 else 1.0)
    m = _RGB.fullmatch(v)
    if m:
        parts = [p.strip() for p in re.split(r"[,\s/]+", m.group(1)) if p.strip()]
        try:
            rgb = [float(p[:-1]) / 100 if p.endswith("%") else float(p) / 255 for p in parts[:3]]
            alpha = 1.0
            if len(parts) > 3:
                a = parts[3]
                alpha = float(a[:-1]) / 100 if a.endswith("%") else float(a)
        except ValueError:
            return None
        if len(rgb) == 3:
            return (rgb[0], rgb[1], rgb[2], alpha)
    return None


def luminance(rgb: tuple[float, float, float] | Rgba) -> float:
    """WCAG relative luminance."""

    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    la, lb = sorted((luminance(a[:3]), luminance(b[:3])), reverse=True)  # type: ignore[arg-type]
    return (la + 0.05) / (lb + 0.05)


def _style(value: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for decl in (value or "").split(";"):
        prop, sep, val = decl.partition(":")
        if sep:
            out[prop.strip().lower()] = val.strip()
    return out


def _background(attrs: dict[str, str | None], style: dict[str, str]) -> bool:
    """Does this element paint an opaque background colour of its own?"""
    candidates = [style.get("background-color", "")]
    candidates += _COLOUR_TOKEN.findall(style.get("background", ""))
    candidates.append(attrs.get("bgcolor") or "")
    for c in candidates:
        rgba = parse_colour(c) if c else None
        if rgba is not None and rgba[3] > 0.5:
            return True
    return False


@dataclass(frozen=True)
class Vanishing:
    """Dark text with no background behind it."""

    colour: str
    sample: str


class _Scan(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        # (tag, colour set here or None, has background, hidden)
        self.stack: list[tuple[str, str | None, bool, bool]] = []
        self.found: dict[str, Vanishing] = {}
        self.css: list[str] = []
        self.meta_scheme: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "meta" and (a.get("name") or "").lower() == "color-scheme":
            self.meta_scheme = a.get("content") or ""
        if tag in _VOID:
            return
        style = _style(a.get("style"))
        colour = style.get("color") or (a.get("color") if tag == "font" else None)
        hidden = style.get("display", "").startswith("none") or style.get("opacity") == "0"
        self.stack.append((tag, colour, _background(a, style), hidden))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        tags = {t for t, *_ in self.stack}
        if "style" in tags:
            self.css.append(data)
            return
        text = " ".join(data.split())
        if not text or tags & _SKIP_TEXT or any(h for *_, h in self.stack):
            return
        if any(bg for _, _, bg, _ in self.stack):
            return
        colour = next((c for _, c, _, _ in reversed(self.stack) if c), None)
        rgba = parse_colour(colour) if colour else None
        if colour is None or rgba is None or rgba[3] < 0.5:
            return
        if contrast(rgba, DARK_BACKGROUND) < MIN_CONTRAST and colour not in self.found:
            self.found[colour] = Vanishing(colour, text[:60])


@dataclass(frozen=True)
class DarkModeReport:
    vanishing: list[Vanishing]
    scheme: str | None  # the declared color-scheme, from the meta tag or CSS
    dark_styles: bool  # has @media (prefers-color-scheme: dark) rules


def scan(html: str) -> DarkModeReport:
    s = _Scan()
    s.feed(html)
    s.close()
    css = "\n".join(s.css)
    scheme = s.meta_scheme
    if scheme is None:
        m = _CSS_SCHEME.search(css)
        scheme = m.group(1).strip() if m else None
    return DarkModeReport(list(s.found.values()), scheme, bool(_DARK_MEDIA.search(css)))
