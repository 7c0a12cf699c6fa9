"""Small HTML building blocks for the report: every text goes through ``html.escape``."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0 auto;
max-width:1200px;padding:1rem 2rem;color:#1d2330;line-height:1.45}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #d8dee9;padding-bottom:.2rem;margin-top:2rem}
nav a{margin-right:1rem}table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #d8dee9;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#eef1f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#6b4e00;background:#fff6d6;padding:.4rem .7rem;border-left:4px solid #e0b000}
.muted{color:#667}figure{display:inline-block;margin:.5rem;vertical-align:top}
figure img,img.plot{max-width:100%;height:auto;border:1px solid #e3e7ee}
figcaption{font-size:.85rem;color:#445}pre{background:#f6f8fa;padding:.6rem;overflow-x:auto;font-size:.85rem}
.scroll{max-height:32rem;overflow:auto}
dl.meta{display:grid;grid-template-columns:max-content auto;gap:.1rem 1rem}
dl.meta dt{font-weight:600}dl.meta dd{margin:0}
"""


def fmt(value: Any) -> str:
    """A value as short display text: floats to 4 significant digits, NaN/None as 'n/a'."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple, dict)):
        text = json.dumps(value, default=str)
        return text if len(text) <= 300 else text[:297] + "..."
    return str(value)


def is_number_text(text: str) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: bool = True) -> str:
    """An HTML table; cells are formatted with :func:`fmt` and escaped."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for v in row:
            is_num = isinstance(v, (int, float)) and not isinstance(v, bool)
            cls = ' class="num"' if numeric and is_num else ""
            cells.append(f"<td{cls}>{escape(fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def key_value_table(items: Mapping[str, Any], header: Sequence[str] = ("key", "value")) -> str:
    return table(header, ([k, v] for k, v in items.items()))


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level with dotted keys."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def png_img(png: bytes, alt: str, cls: str = "plot") -> str:
    """An ``<img>`` with the PNG inlined as a base64 data URI."""
    data = base64.b64encode(png).decode("ascii")
    cls_attr = f' class="{escape(cls)}"' if cls else ""
    return f'<img{cls_attr} alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{escape(anchor)}"><h2>{escape(title)}</h2>\n{body}\n</section>'


def page(title: str, header: str, sections: Sequence[tuple[str, str, str]], footer: str) -> str:
    """The whole document: ``sections`` are ``(anchor, title, body_html)``."""
    nav = "".join(f'<a href="#{escape(a)}">{escape(t)}</a>' for a, t, _ in sections)
    body = "\n".join(section(a, t, b) for a, t, b in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<header>{header}</header>\n<nav>{nav}</nav>\n{body}\n"
        f'<footer><p class="muted">{escape(footer)}</p></footer>\n</body>\n</html>\n'
    )
