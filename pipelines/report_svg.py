"""Small inline SVG charts for the offline run report (pipelines.report): histograms, bar charts,
line charts and a heat map, written as plain SVG text so the report needs no plotting library,
no script and no network.

Every function returns one `<svg>` element as a str (no XML declaration, no `xmlns`: the element
is meant to be inlined in an HTML5 document, where the SVG namespace is implied). Labels are
XML-escaped. Numbers are drawn as given; NaN and infinite values are left out of a chart.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple
from xml.sax.saxutils import escape

# A colour-blind-safe palette (Okabe & Ito, "Color Universal Design", 2008).
PALETTE = ('#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#000000')
_FONT = 'font-family="sans-serif" font-size="10"'


def _finite(value: Optional[float]) -> bool:
  return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def fmt(value: Optional[float], digits: int = 4) -> str:
  """A number for a table or a label: integers as they are (with thousands separators), others
  with `digits` significant digits; `n/a` for None, NaN or infinity."""
  if value is None:
    return 'n/a'
  if isinstance(value, bool):
    return str(value)
  if isinstance(value, int):
    return f'{value:,}'
  if not math.isfinite(value):
    return 'n/a'
  if value == int(value) and abs(value) < 1e15:
    return f'{int(value):,}'
  return f'{value:.{digits}g}'


def _ticks(low: float, high: float, count: int = 5) -> List[float]:
  """About `count` round tick values covering [low, high]."""
  if not (_finite(low) and _finite(high)) or high <= low:
    return [low]
  raw = (high - low) / max(count - 1, 1)
  magnitude = 10 ** math.floor(math.log10(raw))
  step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw),
             default=10 * magnitude)
  first = math.ceil(low / step - 1e-9) * step
  ticks = []
  value = first
  while value <= high + 1e-9 * step:
    ticks.append(round(value, 12))
    value += step
  return ticks


def histogram(buckets: Sequence[Tuple[float, float, float]], width: int = 200,
              height: int = 48, title: str = '') -> str:
  """Bars of (low, high, count) buckets, equal widths (TFDV's standard histogram has equal
  ranges; its quantiles one equal counts, so a bar per bucket is the honest picture of either).

  Returns an empty string when there is no bucket with a finite count.
  """
  counts = [c for _, _, c in buckets if _finite(c)]
  if not counts:
    return ''
  top = max(counts) or 1.0
  bar = width / len(buckets)
  parts = [f'<svg width="{width}" height="{height + 12}" viewBox="0 0 {width} {height + 12}" '
           f'role="img" aria-label="{escape(title or "histogram", {chr(34): "&quot;"})}">']
  if title:
    parts.append(f'<title>{escape(title)}</title>')
  for i, (low, high, count) in enumerate(buckets):
    if not _finite(count):
      continue
    h = height * count / top
    parts.append(f'<rect x="{i * bar + 0.5:.1f}" y="{height - h:.1f}" '
                 f'width="{max(bar - 1, 0.5):.1f}" height="{h:.1f}" fill="{PALETTE[0]}">'
                 f'<title>{escape(fmt(low))} to '
                 f'{escape(fmt(high))}: {escape(fmt(count))}</title></rect>')
  parts.append(f'<line x1="0" y1="{height}" x2="{width}" y2="{height}" stroke="#888"/>')
  low, high = buckets[0][0], buckets[-1][1]
  parts.append(f'<text x="0" y="{height + 10}" {_FONT}>{escape(fmt(low, 3))}</text>')
  parts.append(f'<text x="{width}" y="{height + 10}" text-anchor="end" {_FONT}>'
               f'{escape(fmt(high, 3))}</text>')
  parts.append('</svg>')
  return ''.join(parts)


def bars(items: Sequence[Tuple[str, float]], width: int = 260, bar_height: int = 12,
         reference: Optional[float] = None, reference_label: str = '', title: str = '',
         value_range: Optional[Tuple[float, float]] = None) -> str:
  """Horizontal bars, one per (label, value), the value written at the bar's end; `reference`
  draws a dashed vertical line (a threshold). Bars start at 0, or at `value_range[0]`.

  Returns an empty string when no value is finite.
  """
  values = [v for _, v in items if _finite(v)]
  if not values:
    return ''
  low, high = value_range or (min(0.0, min(values)), max(values + [reference or 0.0]))
  if high <= low:
    high = low + 1.0
  label_width, value_width = 110, 50
  plot = width - label_width - value_width
  height = bar_height * len(items) + 4 + (12 if reference is not None else 0)
  x = lambda v: label_width + plot * (min(max(v, low), high) - low) / (high - low)
  parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
  if title:
    parts.append(f'<title>{escape(title)}</title>')
  for i, (label, value) in enumerate(items):
    y = i * bar_height + 2
    short = label if len(label) <= 18 else label[:17] + '…'
    parts.append(f'<text x="{label_width - 4}" y="{y + bar_height - 3}" text-anchor="end" '
                 f'{_FONT}>{escape(short)}<title>{escape(label)}</title></text>')
    if _finite(value):
      parts.append(f'<rect x="{x(low):.1f}" y="{y + 1}" width="{max(x(value) - x(low), 0.5):.1f}" '
                   f'height="{bar_height - 2}" fill="{PALETTE[0]}"/>')
      parts.append(f'<text x="{x(value) + 3:.1f}" y="{y + bar_height - 3}" {_FONT}>'
                   f'{escape(fmt(value, 3))}</text>')
  if reference is not None and _finite(reference):
    bottom = bar_height * len(items) + 2
    parts.append(f'<line x1="{x(reference):.1f}" y1="0" x2="{x(reference):.1f}" y2="{bottom}" '
                 f'stroke="{PALETTE[5]}" stroke-dasharray="3,2"/>')
    label = escape(reference_label or fmt(reference, 3))
    parts.append(f'<text x="{x(reference):.1f}" y="{bottom + 10}" text-anchor="middle" '
                 f'fill="{PALETTE[5]}" {_FONT}>{label}</text>')
  parts.append('</svg>')
  return ''.join(parts)


def line_chart(series: Dict[str, Sequence[Tuple[float, float]]], width: int = 360,
               height: int = 200, x_label: str = '', y_label: str = '', title: str = '',
               diagonal: bool = False, unit_square: bool = False, markers: bool = True) -> str:
  """Lines of (x, y) points, one per named series, with axes, ticks and a legend.

  Args:
    series: name -> points, drawn in order of x as given (an ROC curve's order matters).
    diagonal: draw the y = x line (chance for ROC, perfect calibration).
    unit_square: fix both axes to [0, 1] (ROC, PR, calibration).
    markers: a dot on every point (for few points, e.g. one per epoch).

  Returns an empty string when no series has a finite point.
  """
  clean = {name: [(x, y) for x, y in points if _finite(x) and _finite(y)]
           for name, points in series.items()}
  clean = {name: points for name, points in clean.items() if points}
  if not clean:
    return ''
  xs = [x for points in clean.values() for x, _ in points]
  x_ticks: List[float] = []
  ys = [y for points in clean.values() for _, y in points]
  if unit_square:
    x_low, x_high, y_low, y_high = 0.0, 1.0, 0.0, 1.0
  else:
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = min(ys), max(ys)
    if x_high <= x_low:  # one epoch: the point in the middle of a unit range, one tick
      x_low, x_high = x_low - 0.5, x_high + 0.5
      x_ticks = [xs[0]]
    if y_high <= y_low:
      pad = abs(y_low) * 0.1 or 1.0
      y_low, y_high = y_low - pad, y_high + pad
    else:
      pad = (y_high - y_low) * 0.05
      y_low, y_high = y_low - pad, y_high + pad
  left, right, top, bottom = 48, 10, 18 if title else 8, 30
  legend_height = 12 * len(clean)
  plot_w, plot_h = width - left - right, height - top - bottom
  total_h = height + legend_height + 4
  sx = lambda v: left + plot_w * (v - x_low) / (x_high - x_low)
  sy = lambda v: top + plot_h * (1 - (v - y_low) / (y_high - y_low))
  parts = [f'<svg width="{width}" height="{total_h}" viewBox="0 0 {width} {total_h}" role="img">']
  if title:
    parts.append(f'<title>{escape(title)}</title>')
    parts.append(f'<text x="{left}" y="12" font-family="sans-serif" font-size="11" '
                 f'font-weight="bold">{escape(title)}</text>')
  parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
               'stroke="#888"/>')
  for tick in _ticks(y_low, y_high):
    y = sy(tick)
    parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
                 'stroke="#ddd"/>')
    parts.append(f'<text x="{left - 3}" y="{y + 3:.1f}" text-anchor="end" {_FONT}>'
                 f'{escape(fmt(tick, 3))}</text>')
  for tick in x_ticks or _ticks(x_low, x_high):
    x = sx(tick)
    parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 11}" text-anchor="middle" {_FONT}>'
                 f'{escape(fmt(tick, 3))}</text>')
  if x_label:
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 24}" '
                 f'text-anchor="middle" {_FONT}>{escape(x_label)}</text>')
  if y_label:
    parts.append(f'<text x="10" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 10 {top + plot_h / 2:.1f})" {_FONT}>'
                 f'{escape(y_label)}</text>')
  if diagonal:
    parts.append(f'<line x1="{sx(max(x_low, y_low)):.1f}" y1="{sy(max(x_low, y_low)):.1f}" '
                 f'x2="{sx(min(x_high, y_high)):.1f}" y2="{sy(min(x_high, y_high)):.1f}" '
                 'stroke="#999" stroke-dasharray="4,3"/>')
  for i, (name, points) in enumerate(clean.items()):
    colour = PALETTE[i % len(PALETTE)]
    path = ' '.join(f'{sx(x):.1f},{sy(y):.1f}' for x, y in points)
    parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
    if markers and len(points) <= 60:
      for x, y in points:
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.2" fill="{colour}">'
                     f'<title>{escape(name)}: {escape(fmt(x))}, {escape(fmt(y))}</title>'
                     '</circle>')
    y = height + 12 * i + 2
    parts.append(f'<rect x="{left}" y="{y}" width="10" height="3" fill="{colour}"/>')
    parts.append(f'<text x="{left + 14}" y="{y + 5}" {_FONT}>{escape(name)}</text>')
  parts.append('</svg>')
  return ''.join(parts)


def heatmap(matrix: Sequence[Sequence[float]], row_labels: Sequence[str],
            column_labels: Sequence[str], cell: int = 26, title: str = '',
            row_title: str = 'actual', column_title: str = 'predicted') -> str:
  """A matrix as shaded cells with their counts (a confusion matrix: rows actual, columns
  predicted), shaded per row so that a class's errors show whatever its size.

  Returns an empty string for an empty matrix.
  """
  if not matrix or not matrix[0]:
    return ''
  rows, columns = len(matrix), len(matrix[0])
  left, top = 70, 34
  width, height = left + cell * columns + 4, top + cell * rows + 4
  parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
  if title:
    parts.append(f'<title>{escape(title)}</title>')
  parts.append(f'<text x="{left + cell * columns / 2:.1f}" y="10" text-anchor="middle" '
               f'{_FONT}>{escape(column_title)}</text>')
  parts.append(f'<text x="4" y="{top - 4}" {_FONT}>{escape(row_title)}</text>')
  for j, label in enumerate(column_labels):
    parts.append(f'<text x="{left + cell * j + cell / 2:.1f}" y="{top - 6}" text-anchor="middle" '
                 f'{_FONT}>{escape(str(label))}</text>')
  for i, row in enumerate(matrix):
    parts.append(f'<text x="{left - 4}" y="{top + cell * i + cell / 2 + 3:.1f}" '
                 f'text-anchor="end" {_FONT}>{escape(str(row_labels[i]))}</text>')
    total = sum(v for v in row if _finite(v)) or 1.0
    for j, value in enumerate(row):
      share = (value / total) if _finite(value) else 0.0
      shade = int(255 - 200 * share)
      text_colour = '#fff' if share > 0.5 else '#000'
      parts.append(f'<rect x="{left + cell * j}" y="{top + cell * i}" width="{cell - 1}" '
                   f'height="{cell - 1}" fill="rgb({shade},{shade + (255 - shade) // 3},255)"/>')
      parts.append(f'<text x="{left + cell * j + cell / 2:.1f}" '
                   f'y="{top + cell * i + cell / 2 + 3:.1f}" '
                   f'text-anchor="middle" fill="{text_colour}" font-family="sans-serif" '
                   f'font-size="9">{escape(fmt(value, 3))}</text>')
  parts.append('</svg>')
  return ''.join(parts)
