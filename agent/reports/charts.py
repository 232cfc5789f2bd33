"""Bar charts of the report as plain geometry, drawn as inline SVG by the template.

A dozen to fifty rectangles need no charting library (and a dependency the size of
matplotlib for them would be out of proportion); inline SVG opens anywhere, offline,
years later. Pure functions: values in, rectangles and labels out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

WIDTH, HEIGHT = 720, 150  # the plotting area, in SVG user units
LEFT, BOTTOM, TOP = 56, 22, 8  # room for the value axis, the labels below and the top label


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str  # "ok", "fail", "gap"
    title: str  # shown on hover, and to screen readers


@dataclass(frozen=True)
class Label:
    x: float
    text: str


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    labels: list[Label]
    maximum: str  # the value axis's top, worded
    width: int = WIDTH + LEFT
    height: int = HEIGHT + BOTTOM + TOP
    left: int = LEFT
    top: int = TOP
    base: int = HEIGHT + TOP


def _scale(value: float, maximum: float) -> float:
    return HEIGHT * value / maximum if maximum > 0 else 0.0


def bars(entries: list[dict[str, Any]], *, value: Callable[[dict[str, Any]], float],
         css: Callable[[dict[str, Any]], str], title: Callable[[dict[str, Any]], str],
         label: Callable[[dict[str, Any]], str | None], max_text: Callable[[float], str]) -> Chart:
    """A chart of `entries` (oldest first): value(e) -> number, css(e), title(e) and
    label(e) -> text or None (None: no label under that bar)."""
    values = [float(value(e)) for e in entries]
    maximum = max(values, default=0.0)
    slot = WIDTH / max(len(entries), 1)
    width = max(slot * 0.7, 1.0)
    drawn: list[Bar] = []
    labels: list[Label] = []
    for number, (entry, amount) in enumerate(zip(entries, values, strict=True)):
        x = LEFT + number * slot + (slot - width) / 2
        kind = css(entry)
        # A gap is a low grey tick; a real bar stays visible however small its value.
        height = max(_scale(amount, maximum), 2.0) if kind != "gap" else 3.0
        drawn.append(Bar(round(x, 1), round(TOP + HEIGHT - height, 1), round(width, 1), round(height, 1), kind,
                         title(entry)))
        text = label(entry)
        if text:
            labels.append(Label(round(x + width / 2, 1), text))
    return Chart(drawn, labels, max_text(maximum))


def backup_history_chart(weeks: list[dict[str, Any]], month_names: list[str]) -> Chart:
    """Weekly bars: the size of the snapshot kept for each week; a grey tick where none is."""
    def label(week: dict[str, Any]) -> str | None:  # under the week in which a month begins
        day = int(week["start"][8:10])
        return month_names[int(week["start"][5:7]) - 1] if day <= 7 else None

    return bars(weeks, value=lambda w: w["bytes_total"], css=lambda w: "ok" if w["snapshot"] else "gap",
                title=lambda w: f"{w['week']}: {w['snapshot'][:8]} {_gib(w['bytes_total'])}" if w["snapshot"]
                else f"{w['week']}: -",
                label=label, max_text=_gib)


def restore_tests_chart(tests: list[dict[str, Any]]) -> Chart:
    return bars(tests, value=lambda t: t["throughput_mib_s"], css=lambda t: "ok" if t["ok"] else "fail",
                title=lambda t: f"{t['time'][:10]}: {t['files']} / {t['throughput_mib_s']} MiB/s",
                label=lambda t: t["time"][:10], max_text=lambda m: f"{m:.0f} MiB/s")


def _gib(count: float) -> str:
    if count >= 2**30:
        return f"{count / 2**30:.1f} GiB"
    return f"{count / 2**20:.0f} MiB"
