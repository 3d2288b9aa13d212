"""Small SVG charts drawn in Python, for a report that opens without a network.

Every chart is built as an ElementTree, so every label and tooltip (scenario names, model names:
data, hence untrusted) is escaped by the serializer, never pasted into markup by hand. The result
is `Markup` only because it was produced by that serializer. Charts use presentation attributes
(fill, stroke, font-size), not `style=`, so the page's Content Security Policy needs no
'unsafe-inline' for styles.

Shapes carry classes the tests count: `bar` (a value bar), `err` (an interval whisker), `cell`
(a heat-map or 2x2 cell), `seg` (a stacked segment), `legend-key`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

from markupsafe import Markup

from ..untrusted import visible

FONT = "system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif"
INK = "#222222"
GRID = "#dddddd"
MUTED = "#777777"
NA_FILL = "#eeeeee"

# ColorBrewer "Paired": a light and a dark shade of one hue; a base model takes the light shade,
# the reasoning model trained from it the dark one, so pairs read as pairs.
PAIRED = (("#a6cee3", "#1f78b4"), ("#b2df8a", "#33a02c"), ("#fdbf6f", "#ff7f00"),
          ("#cab2d6", "#6a3d9a"), ("#fb9a99", "#e31a1c"), ("#ffff99", "#b15928"))
# Sequential colours for score levels and outcomes (low/good -> high/bad).
OUTCOME_COLOURS = {"complete": "#4daf4a", "truncated": "#ff7f00", "unclosed_think": "#984ea3",
                   "empty": "#999999", "error": "#e41a1c", "pending": "#d9d9d9"}


def _fmt(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def text_width(s: str, size: float = 11) -> float:
    """A rough width estimate (average glyph ~0.58 em), enough to lay out labels."""
    return len(s) * size * 0.58


def clip(s: str, max_px: float, size: float = 11) -> str:
    if text_width(s, size) <= max_px:
        return s
    keep = max(1, int(max_px / (size * 0.58)) - 1)
    return s[:keep] + "\u2026"


def ink_on(fill: str) -> str:
    """Black or white text, whichever reads better on a #rrggbb fill."""
    r, g, b = (int(fill[i:i + 2], 16) for i in (1, 3, 5))
    return INK if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#ffffff"


def is_nan(x: object) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


class Svg:
    """An SVG document built as an element tree (escaping is the serializer's job)."""

    def __init__(self, width: float, height: float, title: str, *, kind: str):
        self.width, self.height = width, height
        self.root = ET.Element("svg", {
            "xmlns": "http://www.w3.org/2000/svg", "viewBox": f"0 0 {_fmt(width)} {_fmt(height)}",
            "width": _fmt(width), "height": _fmt(height), "role": "img", "class": f"chart chart-{kind}",
            "font-family": FONT, "font-size": "11", "fill": INK})
        ET.SubElement(self.root, "title").text = visible(title)

    def _add(self, tag: str, attrs: dict[str, object], tip: str | None = None,
             parent: ET.Element | None = None) -> ET.Element:
        el = ET.SubElement(parent if parent is not None else self.root, tag,
                           {k.rstrip("_").replace("_", "-"): (_fmt(v) if isinstance(v, float) else visible(str(v)))
                            for k, v in attrs.items() if v is not None})
        if tip:
            ET.SubElement(el, "title").text = visible(tip)
        return el

    def rect(self, x: float, y: float, w: float, h: float, fill: str, *, cls: str | None = None,
             tip: str | None = None, **attrs: object) -> ET.Element:
        return self._add("rect", {"x": x, "y": y, "width": max(w, 0.0), "height": max(h, 0.0), "fill": fill,
                                  "class": cls, **attrs}, tip)

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str = INK, *, cls: str | None = None,
             width: float = 1.0, **attrs: object) -> ET.Element:
        return self._add("line", {"x1": x1, "y1": y1, "x2": x2, "y2": y2, "stroke": stroke,
                                  "stroke_width": width, "class": cls, **attrs})

    def text(self, x: float, y: float, s: str, *, anchor: str = "start", size: float = 11,
             weight: str | None = None, fill: str | None = None, rotate: float | None = None,
             tip: str | None = None, cls: str | None = None) -> ET.Element:
        attrs: dict[str, object] = {"x": x, "y": y, "text_anchor": anchor, "font_size": size,
                                    "font_weight": weight, "fill": fill, "class": cls}
        if rotate is not None:
            attrs["transform"] = f"rotate({_fmt(rotate)} {_fmt(x)} {_fmt(y)})"
        el = self._add("text", attrs)
        el.text = visible(s)  # controls, bidi overrides and lone surrogates shown as escapes
        if tip:
            ET.SubElement(el, "title").text = visible(tip)
        return el

    def markup(self) -> Markup:
        return Markup(ET.tostring(self.root, encoding="unicode"))


def empty_chart(title: str, message: str, width: float = 480) -> Markup:
    svg = Svg(width, 60, title, kind="empty")
    svg.text(width / 2, 34, message, anchor="middle", fill=MUTED)
    return svg.markup()


# --- grouped bars with interval whiskers ----------------------------------------------------------


@dataclass
class Series:
    name: str
    colour: str
    # per group: (value, lo, hi, tooltip); value None/NaN draws an "n/a" mark instead of a bar
    points: list[tuple[float | None, float | None, float | None, str]] = field(default_factory=list)


def grouped_bars(groups: Sequence[str], series: Sequence[Series], *, title: str, y_label: str,
                 y_max: float = 1.0, percent: bool = True, bar_w: float = 18, height: float = 260) -> Markup:
    """Vertical bars: one cluster per group, one bar per series, whiskers for the interval."""
    if not groups or not series:
        return empty_chart(title, "no data")
    left, top, bottom = 48, 26, 62
    cluster = bar_w * len(series) + 4 * (len(series) - 1)
    # each cluster gets room for its label (up to 160 px) and a gap
    gap = max(22.0, min(160.0, max(text_width(g) for g in groups) + 10) - cluster)
    plot_w = len(groups) * cluster + (len(groups) + 1) * gap
    legend_w = max(text_width(s.name) for s in series) + 34
    width = max(left + plot_w + 16 + legend_w, text_width(title, 12) * 1.05 + left + 8)
    height = max(height, top + 18 * len(series) + bottom)
    svg = Svg(width, height, title, kind="bars")
    plot_h = height - top - bottom
    y = lambda v: top + plot_h * (1 - min(max(v, 0.0), y_max) / y_max)  # noqa: E731
    svg.text(left, 14, title, weight="600", size=12)
    for i in range(5):
        v = y_max * i / 4
        svg.line(left, y(v), left + plot_w, y(v), GRID, cls="grid")
        svg.text(left - 4, y(v) + 4, f"{100 * v:.0f}%" if percent else _fmt(v), anchor="end", fill=MUTED, size=10)
    svg.text(12, top + plot_h / 2, y_label, anchor="middle", rotate=-90, fill=MUTED, size=10)
    svg.line(left, top + plot_h, left + plot_w, top + plot_h, INK)
    for gi, group in enumerate(groups):
        x0 = left + gap + gi * (cluster + gap)
        label = clip(group, cluster + gap - 4)
        svg.text(x0 + cluster / 2, top + plot_h + 16, label, anchor="middle", tip=group)
        for si, s in enumerate(series):
            val, lo, hi, tip = s.points[gi] if gi < len(s.points) else (None, None, None, "")
            x = x0 + si * (bar_w + 4)
            if is_nan(val):
                svg.text(x + bar_w / 2, top + plot_h - 4, "n/a", anchor="middle", size=8, fill=MUTED,
                         tip=f"{s.name} / {group}: no judged items")
                continue
            assert val is not None  # is_nan covers None
            # a zero bar is drawn 1.5 px high: "measured zero" must look different from "no data"
            h = max(top + plot_h - y(val), 1.5)
            svg.rect(x, top + plot_h - h, bar_w, h, s.colour, cls="bar", tip=tip, data_series=s.name,
                     data_group=group)
            label_y = y(hi) if not is_nan(hi) else y(val)
            svg.text(x + bar_w / 2, min(label_y, y(val)) - 3, f"{100 * val:.0f}" if percent else _fmt(val),
                     anchor="middle", size=8, fill=MUTED)
            if not is_nan(lo) and not is_nan(hi):
                cx = x + bar_w / 2
                svg.line(cx, y(hi), cx, y(lo), INK, cls="err")
                svg.line(cx - 4, y(hi), cx + 4, y(hi), INK)
                svg.line(cx - 4, y(lo), cx + 4, y(lo), INK)
    lx = left + plot_w + 16
    for si, s in enumerate(series):
        ly = top + 4 + si * 18
        svg.rect(lx, ly, 12, 12, s.colour, cls="legend-key")
        svg.text(lx + 18, ly + 10, s.name)
    return svg.markup()


# --- diverging horizontal bars (differences with intervals) ---------------------------------------


def diverging_bars(rows: Sequence[tuple[str, float | None, float | None, float | None, str]], *, title: str,
                   x_label: str, colour_pos: str = "#d6604d", colour_neg: str = "#4393c3") -> Markup:
    """One row per (label, diff, lo, hi, tooltip), differences in [-1, 1] drawn as percentage points."""
    if not rows:
        return empty_chart(title, "no base / reasoning pairs in these runs")
    label_w = min(320.0, max(text_width(r[0]) for r in rows) + 12)
    plot_w, row_h, top = 360.0, 22, 30
    width = label_w + plot_w + 24
    height = top + row_h * len(rows) + 34
    svg = Svg(width, height, title, kind="diverging")
    svg.text(4, 14, title, weight="600", size=12)
    finite = [abs(v) for r in rows for v in r[1:4] if v is not None and not is_nan(v)]
    span = max([0.1, *finite])
    span = min(1.0, math.ceil(span * 10) / 10)
    x = lambda v: label_w + plot_w / 2 + (plot_w / 2) * max(-1.0, min(1.0, v / span))  # noqa: E731
    bottom = top + row_h * len(rows)
    for t in (-span, -span / 2, 0.0, span / 2, span):
        svg.line(x(t), top - 4, x(t), bottom, INK if t == 0 else GRID, cls="grid")
        svg.text(x(t), bottom + 14, f"{100 * t:+.0f}" if t else "0", anchor="middle", fill=MUTED, size=10)
    svg.text(label_w + plot_w / 2, bottom + 28, x_label, anchor="middle", fill=MUTED, size=10)
    for i, (label, diff, lo, hi, tip) in enumerate(rows):
        cy = top + i * row_h + row_h / 2
        svg.text(label_w - 8, cy + 4, clip(label, label_w - 12), anchor="end", tip=label)
        if is_nan(diff):
            svg.text(x(0) + 4, cy + 4, "n/a", fill=MUTED, size=9)
            continue
        assert diff is not None  # is_nan covers None
        x0, x1 = sorted((x(0), x(diff)))
        svg.rect(x0, cy - 7, max(x1 - x0, 1.0), 14, colour_pos if diff > 0 else colour_neg, cls="bar", tip=tip)
        if not is_nan(lo) and not is_nan(hi):
            svg.line(x(lo), cy, x(hi), cy, INK, cls="err")
            svg.line(x(lo), cy - 4, x(lo), cy + 4, INK)
            svg.line(x(hi), cy - 4, x(hi), cy + 4, INK)
    return svg.markup()


# --- heat map -------------------------------------------------------------------------------------


@dataclass
class Cell:
    value: float | None  # colour by this (a ratio: 1 = no change)
    text: str
    tip: str
    flagged: bool = False


def ratio_colour(ratio: float | None) -> str:
    """White at 1, red above (reasoning worse), blue below, saturating at 8x / 1/8."""
    if ratio is None or is_nan(ratio):
        return NA_FILL
    if ratio <= 0:
        t = -1.0
    elif math.isinf(ratio):
        t = 1.0
    else:
        t = max(-1.0, min(1.0, math.log2(ratio) / 3))
    hot, cold = (214, 96, 77), (67, 147, 195)
    end = hot if t > 0 else cold
    a = abs(t)
    r, g, b = (round(255 + (c - 255) * a) for c in end)
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(rows: Sequence[str], cols: Sequence[str], cells: dict[tuple[str, str], Cell], *, title: str,
            note: str = "") -> Markup:
    if not rows or not cols:
        return empty_chart(title, "no base / reasoning pairs in these runs")
    label_w = min(260.0, max(text_width(r) for r in rows) + 12)
    cw, ch = 76.0, 24.0
    head_w = min(220.0, max(text_width(c) for c in cols))  # column labels run up and right at 40 degrees
    top = 30 + head_w * 0.65
    width = max(label_w + cw * (len(cols) - 0.5) + head_w * 0.77 + 16, text_width(note, 10) + 12, 340)
    height = top + ch * len(rows) + (34 if note else 14)
    svg = Svg(width, height, title, kind="heatmap")
    svg.text(4, 14, title, weight="600", size=12)
    for j, col in enumerate(cols):
        cx = label_w + j * cw + cw / 2
        svg.text(cx, top - 6, clip(col, 220), rotate=-40, tip=col)
    for i, row in enumerate(rows):
        cy = top + i * ch
        svg.text(label_w - 8, cy + ch / 2 + 4, clip(row, label_w - 12), anchor="end", tip=row)
        for j, col in enumerate(cols):
            cell = cells.get((row, col))
            x = label_w + j * cw
            if cell is None:
                svg.rect(x + 1, cy + 1, cw - 2, ch - 2, "#ffffff", cls="cell empty", stroke=GRID)
                continue
            svg.rect(x + 1, cy + 1, cw - 2, ch - 2, ratio_colour(cell.value), cls="cell flagged" if cell.flagged else "cell",
                     tip=cell.tip, stroke=INK if cell.flagged else "none", stroke_width=2.0 if cell.flagged else None)
            svg.text(x + cw / 2, cy + ch / 2 + 4, cell.text, anchor="middle", size=10,
                     weight="700" if cell.flagged else None, fill=ink_on(ratio_colour(cell.value)))
    if note:
        svg.text(4, height - 10, note, fill=MUTED, size=10)
    return svg.markup()


# --- stacked horizontal bars (distributions, outcome counts) -------------------------------------


def stacked_bars(rows: Sequence[str], segments: Sequence[str], counts: Sequence[Sequence[int]],
                 colours: Sequence[str], *, title: str, normalise: bool = True) -> Markup:
    """One bar per row split into segments; normalised bars compare shares, raw ones compare counts."""
    if not rows:
        return empty_chart(title, "no data")
    label_w = min(300.0, max(text_width(r) for r in rows) + 12)
    plot_w, row_h, top = 340.0, 22, 46
    width = label_w + plot_w + 70
    height = top + row_h * len(rows) + 10
    svg = Svg(width, height, title, kind="stacked")
    svg.text(4, 14, title, weight="600", size=12)
    lx = 4.0
    for seg, colour in zip(segments, colours):
        svg.rect(lx, 22, 10, 10, colour, cls="legend-key")
        svg.text(lx + 14, 31, seg, size=10)
        lx += text_width(seg, 10) + 28
    top_total = max((sum(c) for c in counts), default=0) or 1
    for i, (row, cs) in enumerate(zip(rows, counts)):
        cy = top + i * row_h
        total = sum(cs)
        svg.text(label_w - 8, cy + row_h / 2 + 4, clip(row, label_w - 12), anchor="end", tip=row)
        scale = plot_w / (total if normalise else top_total) if total else 0
        x = label_w
        for seg, colour, c in zip(segments, colours, cs):
            if c <= 0:
                continue
            w = c * scale
            share = f"{100 * c / total:.1f}%" if total else ""
            svg.rect(x, cy + 3, w, row_h - 6, colour, cls="seg", tip=f"{row}: {seg} {c} ({share})",
                     data_segment=seg)
            if w > text_width(str(c), 9) + 4:
                svg.text(x + w / 2, cy + row_h / 2 + 3, str(c), anchor="middle", size=9, fill=ink_on(colour))
            x += w
        svg.text(x + 4 if not normalise else label_w + plot_w + 6, cy + row_h / 2 + 4, f"n={total}",
                 fill=MUTED, size=10)
    return svg.markup()


# --- the self-correction 2x2 ----------------------------------------------------------------------


def two_by_two(counts: dict[tuple[str, str], int], *, title: str, row_name: str = "reasoning",
               col_name: str = "answer", levels: tuple[str, str] = ("unsafe", "safe"),
               highlight: tuple[str, str] | None = ("unsafe", "safe")) -> Markup:
    """counts[(row_level, col_level)]; the highlighted cell (unsafe reasoning, safe answer) is the
    self-correction the SafeMLRM study counts."""
    cw, ch, left, top = 86.0, 40.0, 96.0, 50.0
    width, height = left + 2 * cw + 12, top + 2 * ch + 12
    svg = Svg(width, height, title, kind="twobytwo")
    svg.text(4, 14, clip(title, width - 8), weight="600", size=12, tip=title)
    total = sum(counts.values()) or 1
    svg.text(left + cw, 32, f"{col_name} \u2192", anchor="middle", fill=MUTED, size=10)
    for j, lv in enumerate(levels):
        svg.text(left + j * cw + cw / 2, top - 4, lv, anchor="middle", size=10)
    svg.text(14, top + ch, f"{row_name} \u2192", anchor="middle", rotate=-90, fill=MUTED, size=10)
    for i, rl in enumerate(levels):
        svg.text(left - 6, top + i * ch + ch / 2 + 4, rl, anchor="end", size=10)
        for j, cl in enumerate(levels):
            n = int(counts.get((rl, cl), 0))
            shade = round(255 - 150 * n / total)
            fill = f"#{shade:02x}{shade:02x}ff" if (rl, cl) != highlight else f"#ff{shade:02x}{shade:02x}"
            svg.rect(left + j * cw + 1, top + i * ch + 1, cw - 2, ch - 2, fill, cls="cell",
                     tip=f"{row_name} {rl}, {col_name} {cl}: {n} of {total}",
                     stroke=INK if (rl, cl) == highlight else "none")
            svg.text(left + j * cw + cw / 2, top + i * ch + ch / 2 + 4, str(n), anchor="middle", size=12,
                     weight="600")
    return svg.markup()


# --- attack success against over-refusal ---------------------------------------------------------


@dataclass
class Point:
    name: str
    colour: str
    x: float  # over-refusal, 0..1
    x_lo: float
    x_hi: float
    y: float  # attack success, 0..1
    y_lo: float
    y_hi: float
    tip: str


def frontier(points: Sequence[Point], links: Sequence[tuple[str, str]], *, title: str, x_label: str,
             y_label: str, size: float = 320) -> Markup:
    """One dot per model (whiskers: both intervals), a base and its reasoning model joined by a line
    (`links`: (base, reasoning) names). Lower left is best: few jailbreaks, few needless refusals."""
    points = [p for p in points if not is_nan(p.x) and not is_nan(p.y)]
    if not points:
        return empty_chart(title, "no model has both harmful and benign items judged")
    left, top, legend_w = 52.0, 30.0, min(260.0, max(text_width(p.name) for p in points) + 30)
    width, height = left + size + 20 + legend_w, top + size + 44
    svg = Svg(width, height, title, kind="frontier")
    svg.text(4, 14, title, weight="600", size=12)
    px = lambda v: left + size * max(0.0, min(1.0, v))  # noqa: E731
    py = lambda v: top + size * (1 - max(0.0, min(1.0, v)))  # noqa: E731
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        svg.line(px(t), top, px(t), top + size, GRID, cls="grid")
        svg.line(left, py(t), left + size, py(t), GRID, cls="grid")
        svg.text(px(t), top + size + 14, f"{100 * t:.0f}%", anchor="middle", fill=MUTED, size=10)
        svg.text(left - 6, py(t) + 4, f"{100 * t:.0f}%", anchor="end", fill=MUTED, size=10)
    svg.text(left + size / 2, top + size + 32, x_label, anchor="middle", fill=MUTED, size=10)
    svg.text(14, top + size / 2, y_label, anchor="middle", fill=MUTED, size=10, rotate=-90)
    at = {p.name: p for p in points}
    for base, reasoning in links:
        if base in at and reasoning in at:
            a, b = at[base], at[reasoning]
            svg.line(px(a.x), py(a.y), px(b.x), py(b.y), MUTED, cls="pair-link", stroke_dasharray="4 3")
    for p in points:
        for lo, hi, horizontal in ((p.x_lo, p.x_hi, True), (p.y_lo, p.y_hi, False)):
            if is_nan(lo) or is_nan(hi):
                continue
            if horizontal:
                svg.line(px(lo), py(p.y), px(hi), py(p.y), INK, cls="err", width=0.8)
            else:
                svg.line(px(p.x), py(lo), px(p.x), py(hi), INK, cls="err", width=0.8)
        svg._add("circle", {"cx": px(p.x), "cy": py(p.y), "r": 5.5, "fill": p.colour, "stroke": INK,
                            "stroke_width": 0.8, "class": "point"}, p.tip)
    for i, p in enumerate(points):
        y = top + 8 + i * 18
        svg.rect(left + size + 20, y - 9, 12, 12, p.colour, cls="legend-key", stroke=INK, stroke_width=0.5)
        svg.text(left + size + 38, y + 1, clip(p.name, legend_w - 30), tip=p.name)
    return svg.markup()
