"""The page: one self-contained HTML document, and the small builders sections use.

Self-contained means a reader can mail the file: styles are inline, plots are
inline SVG, images are ``data:`` URIs, and there is no script, font or link
fetched at view time (a Content-Security-Policy that forbids every fetch
makes the browser enforce it). Every value shown is escaped here.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

# Nothing may load from anywhere: images come inline (data:), styles inline.
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
       "base-uri 'none'; form-action 'none'")

CSS = """
:root { color-scheme: light; --fg:#1b1f24; --muted:#57606a; --line:#d0d7de; --bg:#fff;
        --soft:#f6f8fa; --warn:#9a6700; --warnbg:#fff8c5; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--fg); background: var(--bg); margin: 0 auto; max-width: 1100px;
       padding: 1.5rem 1.25rem 4rem; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; } h2 { font-size: 1.2rem; margin: 2rem 0 .5rem;
  border-bottom: 1px solid var(--line); padding-bottom: .25rem; }
h3 { font-size: 1rem; margin: 1.25rem 0 .4rem; }
.sub { color: var(--muted); margin: 0 0 1rem; }
nav a { margin-right: .8rem; } a { color: #0969da; }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: .25rem .5rem; text-align: left;
         vertical-align: top; }
td { overflow-wrap: break-word; max-width: 32rem; }
.scroll { overflow-x: auto; }
th { background: var(--soft); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.chosen td { background: #dafbe1; font-weight: 600; }
pre { background: var(--soft); border: 1px solid var(--line); padding: .6rem; overflow: auto;
      font-size: 12px; max-height: 28rem; }
.notes { background: var(--warnbg); border: 1px solid #d4a72c; color: var(--warn);
         padding: .5rem .8rem; margin: .6rem 0; }
.notes li { margin: .15rem 0; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr));
         gap: .75rem; }
figure.plot { margin: 0; border: 1px solid var(--line); padding: .3rem; }
figure.plot svg { width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 12px; padding: .2rem .3rem; }
.thumbs { display: flex; flex-wrap: wrap; gap: .5rem; }
.thumbs figure { margin: 0; font-size: 11px; color: var(--muted); max-width: 10rem; }
.thumbs img { image-rendering: pixelated; width: 64px; height: 64px; border: 1px solid
              var(--line); }
img.wide { max-width: 100%; border: 1px solid var(--line); }
.kv { display: grid; grid-template-columns: repeat(auto-fill, minmax(11rem, 1fr)); gap: .4rem;
      margin: .5rem 0 1rem; }
.kv div { background: var(--soft); border: 1px solid var(--line); padding: .35rem .5rem; }
.kv b { display: block; font-size: 1.05rem; } .kv span { color: var(--muted); font-size: 12px; }
footer { color: var(--muted); font-size: 12px; margin-top: 3rem; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """A readable cell: thousands separators, 4 significant decimals, '—' for nothing."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:,.1f}"
        if abs(value) >= 1:
            return f"{value:,.3f}".rstrip("0").rstrip(".")
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {fmt(v)}" for k, v in value.items())
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *,
          row_classes: Sequence[str] | None = None, cls: str = "") -> str:
    """An HTML table; numbers right-aligned, every cell escaped."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(
            f'<td class="num">{esc(fmt(v))}</td>' if isinstance(v, (int, float))
            and not isinstance(v, bool) else f"<td>{esc(fmt(v))}</td>" for v in row)
        rc = row_classes[i] if row_classes and i < len(row_classes) and row_classes[i] else ""
        body.append(f'<tr class="{rc}">{cells}</tr>' if rc else f"<tr>{cells}</tr>")
    c = f' class="{esc(cls)}"' if cls else ""
    return (f'<div class="scroll"><table{c}><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def key_values(items: Sequence[tuple[str, Any]]) -> str:
    """Headline figures as a grid of small cards."""
    cells = "".join(f"<div><b>{esc(fmt(v))}</b><span>{esc(k)}</span></div>" for k, v in items)
    return f'<div class="kv">{cells}</div>'


def figure(svg: str, caption: str, name: str) -> str:
    """A plot: inline SVG (already safe: we drew it) and its caption."""
    return (f'<figure class="plot" data-plot="{esc(name)}">{svg}'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def plots(figures: Sequence[str]) -> str:
    return f'<div class="plots">{"".join(figures)}</div>' if figures else ""


def notes(lines: Sequence[str]) -> str:
    if not lines:
        return ""
    return '<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in lines) + "</ul>"


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def png_img(data: bytes, alt: str, cls: str = "") -> str:
    """An image inline as a data: URI (the page must fetch nothing)."""
    b64 = base64.b64encode(data).decode("ascii")
    c = f' class="{esc(cls)}"' if cls else ""
    return f'<img{c} alt="{esc(alt)}" src="data:image/png;base64,{b64}">'


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]],
         footer: str, *, csp: str = CSP, links: Sequence[tuple[str, str]] = ()) -> str:
    """The whole document; ``sections`` are (anchor, title, html), ``links`` (href, text)
    lead to other pages (the dashboard's)."""
    nav = " ".join([f'<a href="{esc(u)}">{esc(t)}</a>' for u, t in links] +
                   [f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _ in sections])
    body = "".join(section(a, t, h) for a, t, h in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            '<link rel="icon" href="data:,">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{esc(title)}</h1><p class=\"sub\">{esc(subtitle)}</p>"
            f"<nav>{nav}</nav></header>{body}<footer>{esc(footer)}</footer></body></html>\n")
