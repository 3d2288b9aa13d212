"""The dose-response figure: ASR against a swept value (metrics_control.dose_response), one line per
(model, attack) with Wilson whiskers, and the base model's ASR as a dashed flat reference line."""
from __future__ import annotations

from typing import Any

import pandas as pd
from markupsafe import Markup

from .charts import GRID, INK, MUTED, PAIRED, Svg, empty_chart, is_nan


def _order(values: list[Any]) -> list[Any]:
    """Numbers in order, then names (presets, prefixes): `none`, the unswept reference point, first."""
    nums = sorted(v for v in set(values) if isinstance(v, (int, float)))
    names = sorted({str(v) for v in values if not isinstance(v, (int, float))}, key=lambda n: (n != "none", n))
    return nums + names


def _label(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def dose_line(df: pd.DataFrame, *, title: str) -> Markup:
    """One chart per swept axis (a run may sweep a budget for one model and prefixes for another)."""
    swept = df[df["kind"] == "swept"] if not df.empty else df
    if swept.empty:
        return empty_chart(title, "no swept models in these runs")
    axes = list(dict.fromkeys(swept["axis"]))
    return Markup("").join(_axis_chart(df, swept[swept["axis"] == a], title if len(axes) == 1 else f"{title}: {a}")
                           for a in axes)


def _axis_chart(df: pd.DataFrame, swept: pd.DataFrame, title: str) -> Markup:
    xs = _order(list(swept["value"]))
    left, top, plot_w, plot_h = 48.0, 30.0, max(240.0, 80.0 * len(xs)), 200.0
    series = list(dict.fromkeys(zip(swept["model"], swept["attack"])))
    width, height = left + plot_w + 220, top + plot_h + 46
    svg = Svg(width, height, title, kind="dose")
    svg.text(4, 14, title, weight="600", size=12)
    x = lambda v: left + plot_w * (xs.index(v) + 0.5) / len(xs)  # noqa: E731
    y = lambda p: top + plot_h * (1 - max(0.0, min(1.0, p)))  # noqa: E731
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        svg.line(left, y(t), left + plot_w, y(t), GRID, cls="grid")
        svg.text(left - 6, y(t) + 4, f"{100 * t:.0f}%", anchor="end", fill=MUTED, size=10)
    for v in xs:
        svg.text(x(v), top + plot_h + 14, _label(v), anchor="middle", fill=MUTED, size=10)
    svg.text(left + plot_w / 2, top + plot_h + 30, str(swept["axis"].iloc[0]), anchor="middle", fill=MUTED, size=10)
    for i, (model, attack) in enumerate(series):
        colour = PAIRED[i % len(PAIRED)][1]
        name = f"{model} \u00b7 {attack}"
        svg.text(left + plot_w + 12, top + 12 + 16 * i, name, fill=colour, size=10)
        s = swept[(swept["model"] == model) & (swept["attack"] == attack)]
        pts = sorted(((x(r["value"] if isinstance(r["value"], (int, float)) else str(r["value"])), r)
                      for r in s.to_dict("records") if not is_nan(r["asr"])), key=lambda p: p[0])
        for (x0, a), (x1, b) in zip(pts, pts[1:]):
            svg.line(x0, y(a["asr"]), x1, y(b["asr"]), colour, cls="dose-line", width=1.5)
        for px, r in pts:
            if not is_nan(r["asr_lo"]) and not is_nan(r["asr_hi"]):
                svg.line(px, y(r["asr_lo"]), px, y(r["asr_hi"]), INK, cls="err")
            svg._add("circle", {"cx": px, "cy": y(r["asr"]), "r": 4.0, "fill": colour, "class": "dose-point",
                                "data_series": name, "data_value": _label(r["value"])},
                     tip=f"{name}, {r['axis']} = {_label(r['value'])}: ASR {100 * r['asr']:.1f}% "
                         f"[{100 * r['asr_lo']:.1f}, {100 * r['asr_hi']:.1f}], {r['judged']} judged")
        ref = df[(df["kind"] == "reference") & (df["model"] == model) & (df["attack"] == attack)]
        for r in ref.to_dict("records"):
            if not is_nan(r["asr"]):
                svg._add("line", {"x1": left, "y1": y(r["asr"]), "x2": left + plot_w, "y2": y(r["asr"]),
                                  "stroke": colour, "stroke_dasharray": "5 4", "class": "dose-reference"},
                         tip=f"base {r['reference']} \u00b7 {attack}: ASR {100 * r['asr']:.1f}%")
    return svg.markup()
