"""Plain SVG and one self-contained HTML page, written by hand: the pictures of ``plan -o html`` and
``simulate -o html`` need no library, no script and no network to be viewed, and come out byte-identical
for the same input. Pure.
"""
from __future__ import annotations

from html import escape
from typing import Iterable

# The lane colours every picture uses. Tests find these exact pixels in a browser screenshot.
BASE_COLOR = "#1c7ed6"    # blue: the base (stable) version
GRAY_COLOR = "#f59f00"    # amber: the gray (canary) version
ERROR_COLOR = "#e03131"   # red: no pod served the request (404, 503, ...)
OTHER_COLOR = "#adb5bd"   # neutral: traffic to neither (another service)
INK = "#212529"           # text, lines
MUTED = "#868e96"         # secondary text
FRAME = "#ced4da"         # the 1-pixel frame of every picture (its top-left pixel marks the picture's origin)
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
LANE_COLORS = {"base": BASE_COLOR, "gray": GRAY_COLOR, "error": ERROR_COLOR, "other": OTHER_COLOR}


def attr(value: object) -> str:
    return escape(str(value), quote=True)


def number(value: float) -> str:
    """Coordinates without float noise, so the same picture is the same bytes."""
    rounded = round(float(value), 1)
    return str(int(rounded)) if rounded.is_integer() else str(rounded)


def rect(x: float, y: float, width: float, height: float, fill: str, stroke: str = "none", rx: float = 0,
         extra: str = "") -> str:
    return (f'<rect x="{number(x)}" y="{number(y)}" width="{number(width)}" height="{number(height)}" '
            f'rx="{number(rx)}" fill="{fill}" stroke="{stroke}"{extra}/>')


def text(x: float, y: float, content: str, size: int = 12, weight: str = "normal", fill: str = INK,
         anchor: str = "start") -> str:
    return (f'<text x="{number(x)}" y="{number(y)}" font-family="{FONT}" font-size="{size}" '
            f'font-weight="{weight}" fill="{fill}" text-anchor="{anchor}">{escape(content)}</text>')


def clip(content: str, width_px: float, size: int = 12) -> str:
    """Shorten ``content`` to about what fits in ``width_px`` (no font metrics: an average glyph width)."""
    fits = max(4, int(width_px / (size * 0.6)))
    return content if len(content) <= fits else content[:fits - 1] + "…"


def svg(width: float, height: float, body: Iterable[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{number(width)}" height="{number(height)}" '
            f'viewBox="0 0 {number(width)} {number(height)}" role="img" aria-label="{attr(title)}">\n'
            f'<rect x="0.5" y="0.5" width="{number(width - 1)}" height="{number(height - 1)}" fill="#ffffff" '
            f'stroke="{FRAME}"/>\n' + "\n".join(body) + "\n</svg>")


def legend(x: float, y: float, items: list[tuple[str, str]]) -> list[str]:
    parts = []
    for label, color in items:
        parts.append(rect(x, y - 10, 14, 14, color, rx=2))
        parts.append(text(x + 20, y + 1, label, 12))
        x += 30 + len(label) * 7.5
    return parts


def page(title: str, sections: Iterable[str]) -> str:
    """One HTML document; everything inline (no scripts, no external styles, fonts or images)."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{escape(title)}</title>\n"
            "<style>\n"
            f"body {{ margin: 0; padding: 16px; font-family: {FONT}; color: {INK}; background: #ffffff; }}\n"
            "h1 { font-size: 18px; margin: 0 0 8px 0; }\n"
            "h2 { font-size: 15px; margin: 16px 0 6px 0; }\n"
            "table { border-collapse: collapse; font-size: 13px; }\n"
            "td, th { border: 1px solid #dee2e6; padding: 3px 8px; text-align: left; vertical-align: top; }\n"
            "pre { font-size: 12px; background: #f8f9fa; padding: 8px; overflow-x: auto; }\n"
            ".ok { color: #2b8a3e; } .fail { color: " + ERROR_COLOR + "; font-weight: bold; }\n"
            "svg { display: block; }\n"
            "</style>\n</head>\n<body>\n" + "\n".join(sections) + "\n</body>\n</html>\n")


def table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
