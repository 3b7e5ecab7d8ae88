"""Server-rendered SVG charts for the manager dashboard (no chart library, nothing from a CDN).

Every number is formatted by us and every text is escaped, so the markup is safe to mark safe.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 40


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values between low and high (steps of 1, 2, 2.5 or 5 times a power of ten)."""
    span = high - low
    if span <= 0:
        return [low]
    base = 10 ** math.floor(math.log10(span / count))
    step = next(m * base for m in (1, 2, 2.5, 5, 10) if m * base >= span / count)
    first = math.ceil(low / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step + 1e-9) + 1)]


def _frame(
    x_max: float, y_low: float, y_high: float, *, title_id: str, title: str, x_label: str
) -> tuple[list[str], Callable[[float], float], Callable[[float], float]]:
    """The opening of a chart: svg element with an escaped title, axes, ticks and the x-axis label. Returns the
    parts and the x and y pixel mappings."""

    def px(x: float) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * x / x_max

    def py(y: float) -> float:
        return TOP + (HEIGHT - TOP - BOTTOM) * (1 - (y - y_low) / (y_high - y_low))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" class="chart" role="img" '
        f'aria-labelledby="{title_id}"><title id="{title_id}">{escape(title)}</title>',
        f'<g class="axis"><line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}"/>'
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}"/></g>',
    ]
    for tick in _ticks(y_low, y_high):
        y = py(tick)
        parts.append(
            f'<g class="tick"><line x1="{LEFT - 4}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{tick:.2f}</text></g>'
        )
    for tick in _ticks(0, x_max):
        x = px(tick)
        parts.append(
            f'<g class="tick"><line x1="{x:.1f}" y1="{HEIGHT - BOTTOM}" x2="{x:.1f}" y2="{HEIGHT - BOTTOM + 4}"/>'
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle">{int(tick)}</text></g>'
        )
    parts.append(
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2:.0f}" y="{HEIGHT - 4}" text-anchor="middle" class="label">'
        f"{escape(x_label)}</text>"
    )
    return parts, px, py


def _y_range(ys: list[float]) -> tuple[float, float]:
    y_low, y_high = max(0.0, min(ys) - 0.02), min(1.0, max(ys) + 0.02)
    if y_high - y_low < 0.05:
        y_high = min(1.0, y_low + 0.05)
    return y_low, y_high


def learning_curve_svg(curve: dict[str, Any]) -> SafeString:
    """Metric (y) against training labels (x): measured points with their 95 % intervals, the fitted curve and its
    forecast band. Empty string when there is nothing to draw."""
    points = curve.get("points") or []
    fit = curve.get("fit")
    if not points:
        return mark_safe("")
    band = fit["curve"] if fit else []
    xs = [p["labels"] for p in points] + [b["labels"] for b in band]
    ys = [p["low"] for p in points] + [p["high"] for p in points] + [b["low"] for b in band] + [b["high"] for b in band]
    x_max = max(xs) * 1.05
    y_low, y_high = _y_range(ys)
    parts, px, py = _frame(
        x_max,
        y_low,
        y_high,
        title_id="curve-title",
        title=f"{curve.get('metric', '')} on the evaluation set against training labels",
        x_label="training labels",
    )
    if band:
        upper = " ".join(f"{px(b['labels']):.1f},{py(b['high']):.1f}" for b in band)
        lower = " ".join(f"{px(b['labels']):.1f},{py(b['low']):.1f}" for b in reversed(band))
        line = " ".join(f"{px(b['labels']):.1f},{py(b['value']):.1f}" for b in band)
        parts.append(f'<polygon class="band" points="{upper} {lower}"><title>forecast, 95% interval</title></polygon>')
        parts.append(f'<polyline class="fit" points="{line}"/>')
        now = px(fit["last_labels"])
        parts.append(f'<line class="now" x1="{now:.1f}" y1="{TOP}" x2="{now:.1f}" y2="{HEIGHT - BOTTOM}"/>')
    for p in points:
        x, y = px(p["labels"]), py(p["value"])
        parts.append(
            f'<g class="point"><line x1="{x:.1f}" y1="{py(p["low"]):.1f}" x2="{x:.1f}" y2="{py(p["high"]):.1f}"/>'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4"><title>v{int(p["version"])}: {p["value"]:.3f} '
            f"({p['low']:.3f} to {p['high']:.3f}) on {int(p['evaluated_on'])} evaluation documents, trained on "
            f"{int(p['labels'])} labels</title></circle></g>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - numbers formatted here and escaped text only


SAVINGS_ARMS = (("random", "random picks"), ("picks", "this project's picks"))


def savings_svg(result: dict[str, Any]) -> SafeString:
    """Micro-F1 on the held-out evaluation documents against training labels for both arms of a savings estimate
    (learner.replay): each arm's curve with its 95 % band, the target (random at its last size) and where the picks
    reach it; the page names the arms' colours. Empty string when the estimate has no curves (not enough data)."""
    curves = result.get("curves") or {}
    random_curve, picks_curve = curves.get("random") or [], curves.get("picks") or []
    if not random_curve or not picks_curve:
        return mark_safe("")
    n_random = float(result.get("n_random") or random_curve[-1]["n"])
    reached = result.get("labels_picks")
    # Far enough to show the picks' curve crossing the target: up to their first size at or past the crossing.
    beyond = [p["n"] for p in picks_curve if reached is not None and p["n"] >= float(reached)]
    picks_end = float(beyond[0]) if beyond else float(picks_curve[-1]["n"])
    x_max = max(n_random, picks_end) * 1.05
    shown = {
        "random": random_curve,
        "picks": [p for p in picks_curve if p["n"] <= x_max] or picks_curve[:1],
    }
    ys = [v for arm in shown.values() for p in arm for v in (p["low"], p["high"])]
    y_low, y_high = _y_range(ys)
    parts, px, py = _frame(
        x_max,
        y_low,
        y_high,
        title_id="savings-title",
        title="micro-F1 on held-out evaluation documents against training labels: this project's picks and random "
        "picks",
        x_label="training labels",
    )
    for arm, name in SAVINGS_ARMS:
        points = shown[arm]
        upper = " ".join(f"{px(p['n']):.1f},{py(p['high']):.1f}" for p in points)
        lower = " ".join(f"{px(p['n']):.1f},{py(p['low']):.1f}" for p in reversed(points))
        line = " ".join(f"{px(p['n']):.1f},{py(p['value']):.1f}" for p in points)
        parts.append(
            f'<g class="arm arm-{arm}"><polygon class="band" points="{upper} {lower}"><title>{escape(name)}, 95% '
            f'interval</title></polygon><polyline class="fit" points="{line}"/>'
        )
        for p in points:
            parts.append(
                f'<circle cx="{px(p["n"]):.1f}" cy="{py(p["value"]):.1f}" r="3"><title>{escape(name)}: '
                f"{p['value']:.3f} ({p['low']:.3f} to {p['high']:.3f}) with {int(p['n'])} labels</title></circle>"
            )
        parts.append("</g>")
    target = result.get("target")
    if isinstance(target, int | float) and y_low <= target <= y_high:
        y = py(float(target))
        parts.append(
            f'<line class="target" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"><title>target: what '
            f"{int(n_random)} random picks reach, {float(target):.3f}</title></line>"
        )
    if isinstance(reached, int | float):
        x = px(float(reached))
        parts.append(
            f'<line class="now" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{HEIGHT - BOTTOM}"><title>the picks reach '
            f"it with {float(reached):.0f} labels</title></line>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - numbers formatted here and escaped text only
