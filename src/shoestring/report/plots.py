"""Static SVG plots, drawn server-side by matplotlib's SVG backend.

No pyplot (its global figure registry is state shared across calls): each
plot is a :class:`matplotlib.figure.Figure` rendered by ``FigureCanvasSVG``.
Text stays text (``svg.fonttype = none``: smaller files, selectable labels,
the reader's own sans-serif font), no date is embedded, and every figure gets
its ids prefixed with a hash of its content (:func:`_scope_ids`), so the ids
of clip paths and markers of several figures inlined in one page never
collide, and the same runs give the same page.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

from shoestring.report.downsample import min_max_buckets

# Matplotlib's tab10, colour-blind tolerable and the default people recognise.
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")
STYLES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class Series:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str | None = None
    style: str = "-"


def _rc() -> dict:
    return {"svg.fonttype": "none", "svg.hashsalt": "shoestring",
            "font.family": "sans-serif", "font.size": 9, "axes.titlesize": 10,
            "axes.spines.top": False, "axes.spines.right": False}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _svg(fig) -> str:
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    buf = io.StringIO()
    FigureCanvasSVG(fig).print_svg(buf, metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    # Inline SVG needs neither the XML declaration nor the DOCTYPE; both are invalid in HTML.
    start = text.find("<svg")
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text[start:], count=1, flags=re.DOTALL)
    text = _scope_ids(text)
    # Fixed pixel sizes in pt make the figure overflow narrow screens; scale with the page.
    return re.sub(r'<svg([^>]*?) width="[^"]+" height="[^"]+"', r'<svg\1', text, count=1)


def _scope_ids(svg: str) -> str:
    """Prefix every id (and each reference to one) with a hash of the figure, so figures
    inlined in one page keep unique ids (matplotlib numbers them ``axes_1``… per figure)."""
    prefix = "s" + hashlib.sha1(svg.encode()).hexdigest()[:8] + "-"
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', svg)
    svg = re.sub(r'url\(#([^)]+)\)', lambda m: f"url(#{prefix}{m.group(1)})", svg)
    return re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"', svg)


def line_plot(series: Sequence[Series], *, xlabel: str, ylabel: str, title: str,
              logy: bool = False, width: float = 6.4, height: float = 3.2) -> str:
    """Lines (each thinned by :func:`min_max_buckets`) with axis labels and a legend."""
    import matplotlib

    with matplotlib.rc_context(_rc()):
        fig = _figure(width, height)
        ax = fig.add_subplot()
        for i, s in enumerate(series):
            xs, ys = min_max_buckets(list(s.xs), list(s.ys))
            marker = "o" if len(xs) <= 30 else None
            ax.plot(xs, ys, label=s.label, color=s.color or COLORS[i % len(COLORS)],
                    linestyle=s.style, linewidth=1.3, marker=marker, markersize=3)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, loc="left")
        lows = [min(s.ys) for s in series if len(s.ys)]
        highs = [max(s.ys) for s in series if len(s.ys)]
        # A log axis only where the values span more than a decade (a falling loss).
        if logy and lows and min(lows) > 0 and max(highs) / min(lows) > 20:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3, linewidth=0.5)
        if len(series) > 1:
            ax.legend(frameon=False, fontsize=8)
        return _svg(fig)


def bar_plot(labels: Sequence[str], values: Sequence[float], *, xlabel: str, title: str,
             width: float = 6.4, annotate: str = "{:,.2f}") -> str:
    """Horizontal bars, one per label, each annotated with its value."""
    import matplotlib

    with matplotlib.rc_context(_rc()):
        fig = _figure(width, 0.6 + 0.32 * max(len(labels), 1))
        ax = fig.add_subplot()
        ys = list(range(len(labels)))[::-1]
        ax.barh(ys, values, color=[COLORS[i % len(COLORS)] for i in range(len(labels))])
        ax.set_yticks(ys, labels)
        ax.set_xlabel(xlabel)
        ax.set_title(title, loc="left")
        for y, v in zip(ys, values):
            ax.annotate(annotate.format(v), (v, y), xytext=(3, 0), textcoords="offset points",
                        va="center", fontsize=8)
        ax.margins(x=0.15)
        return _svg(fig)


@dataclass(frozen=True)
class Point:
    label: str
    x: float
    y: float
    highlight: bool = False
    on_front: bool = False


def scatter_plot(points: Sequence[Point], *, xlabel: str, ylabel: str, title: str,
                 logx: bool = False, width: float = 6.4, height: float = 3.6) -> str:
    """Labelled points; ``on_front`` ones joined by a line (a Pareto front), ``highlight``
    ones circled (the chosen candidate)."""
    import matplotlib

    with matplotlib.rc_context(_rc()):
        fig = _figure(width, height)
        ax = fig.add_subplot()
        ax.scatter([p.x for p in points], [p.y for p in points], s=18, color=COLORS[0],
                   zorder=3)
        front = sorted((p for p in points if p.on_front), key=lambda p: p.x)
        if len(front) > 1:
            ax.plot([p.x for p in front], [p.y for p in front], color=COLORS[1],
                    linewidth=1, linestyle="--", label="Pareto front", zorder=2)
            ax.legend(frameon=False, fontsize=8)
        for p in points:
            if p.highlight:
                ax.scatter([p.x], [p.y], s=120, facecolors="none", edgecolors=COLORS[3],
                           linewidths=1.5, zorder=4)
            ax.annotate(p.label, (p.x, p.y), xytext=(4, 4), textcoords="offset points",
                        fontsize=7)
        if logx and all(p.x > 0 for p in points):
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, loc="left")
        ax.grid(True, alpha=0.3, linewidth=0.5)
        return _svg(fig)
