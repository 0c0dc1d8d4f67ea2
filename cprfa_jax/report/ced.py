"""Fig. 5: cumulative error distribution curves, drawn with OpenCV into uint8 RGB."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from cprfa_jax import metrics
from cprfa_jax.report.draw import (BLACK, GRID, SHIFT, fixed_point, legend, put_text,
                                   put_vertical_text)

# Matplotlib's tab10: ten well separated hues that stay distinct for most colour-blind readers.
PALETTE_RGB = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
               (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


def method_colour(i: int) -> tuple[int, int, int]:
  """The i-th curve colour: tab10, then golden-ratio hues for more than ten methods."""
  if i < len(PALETTE_RGB):
    return PALETTE_RGB[i]
  r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.8, 0.85)
  return int(r * 255), int(g * 255), int(b * 255)


def nice_step(span: float, max_ticks: int) -> float:
  """The smallest 1, 2, 2.5 or 5 x 10^k step that gives at most `max_ticks` intervals."""
  raw = span / max(int(max_ticks), 1)
  mag = 10.0 ** np.floor(np.log10(raw))
  return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))


def _ticks(span: float, step: float) -> np.ndarray:
  return np.arange(int(np.floor(span / step + 1e-9)) + 1) * step


def ced_errors(nme) -> np.ndarray:
  """Flat float64 NMEs with NaN (no value) turned into inf: a failure at every threshold."""
  e = np.asarray(nme, np.float64).ravel()
  return np.where(np.isnan(e), np.inf, e)


def _ced_axes(img, box, max_nme: float, u: float) -> None:
  x0, y0, x1, y1 = box
  fs, tick = 0.42 * u, max(2, round(4 * u))
  span_pct = max_nme * 100
  xs = _ticks(span_pct, nice_step(span_pct, max(2, (x1 - x0) // round(48 * u))))
  ys = np.linspace(0, 1, 11)
  px = lambda t: int(np.round(x0 + t / span_pct * (x1 - x0)))
  py = lambda f: int(np.round(y1 - f * (y1 - y0)))
  for t in xs:
    cv2.line(img, (px(t), y0), (px(t), y1), GRID, 1)
    cv2.line(img, (px(t), y1), (px(t), y1 + tick), BLACK, 1)
    put_text(img, f"{t:g}", (px(t), y1 + tick + round(15 * u)), fs, anchor="centre")
  for f in ys:
    cv2.line(img, (x0, py(f)), (x1, py(f)), GRID, 1)
    cv2.line(img, (x0 - tick, py(f)), (x0, py(f)), BLACK, 1)
    put_text(img, f"{f:.1f}", (x0 - tick - round(4 * u), py(f) + round(5 * u)), fs,
             anchor="right")
  cv2.rectangle(img, (x0, y0), (x1, y1), BLACK, 1)
  put_text(img, "NME (%)", ((x0 + x1) / 2, y1 + round(44 * u)), 0.5 * u, anchor="centre")
  put_vertical_text(img, "Fraction of images", (round(13 * u), (y0 + y1) / 2), 0.5 * u)


def ced_plot(nme_by_method: dict[str, np.ndarray], title: str, max_nme: float = 0.10,
             size=(640, 480)) -> np.ndarray:
  """Fig. 5: cumulative error distribution curves, one per method, as uint8 RGB (H, W, 3).

  Args:
    nme_by_method: method name -> per-image NMEs (any shape, fractions as `metrics.nme`
      returns). NaN counts as a failure (NME = inf). Curves keep the dict's order and colours
      follow `method_colour`.
    title: drawn above the plot.
    max_nme: right end of the x axis (0.10 = 10%, the paper's range); the axis is labelled in %.
    size: (width, height) of the figure in pixels; text scales with it.

  The legend gives each method's AUC (`metrics.auc`: area under its CED on [0, max_nme]
  divided by max_nme) and sits under the plot, outside the axes, so it hides no curve.
  """
  if not nme_by_method:
    raise ValueError("ced_plot needs at least one method")
  if not (np.isfinite(max_nme) and max_nme > 0):
    raise ValueError(f"max_nme must be a positive finite number; got {max_nme!r}")
  w, h = int(size[0]), int(size[1])
  u = min(w / 640, h / 480)
  img = np.full((h, w, 3), 255, np.uint8)
  errors = {name: ced_errors(nme) for name, nme in nme_by_method.items()}
  thick = max(1, round(2 * u))
  key = legend([(f"{name} (AUC {metrics.auc(e, max_nme):.3f})", method_colour(k), "line", thick)
                for k, (name, e) in enumerate(errors.items())], w - round(40 * u), 0.42 * u)
  box = (round(66 * u), round(40 * u), w - round(20 * u), h - round(58 * u) - key.shape[0])
  x0, y0, x1, y1 = box
  if y1 - y0 < round(60 * u):
    raise ValueError(f"{len(errors)} methods leave no room for the plot in a {w} x {h} figure; "
                     "make `size` larger")
  _ced_axes(img, box, max_nme, u)
  for k, e in enumerate(errors.values()):
    # One threshold per pixel column, so every step of the CED lands on its own column.
    thresholds, fraction = metrics.ced_curve(e, max_nme, num=max(2, x1 - x0 + 1))
    pts = np.stack([x0 + thresholds / max_nme * (x1 - x0), y1 - fraction * (y1 - y0)], -1)
    cv2.polylines(img, [fixed_point(pts)[:, None, :]], False, method_colour(k), thick,
                  cv2.LINE_AA, SHIFT)
  ky, kx = y1 + round(54 * u), max(0, (w - key.shape[1]) // 2)
  img[ky:ky + key.shape[0], kx:kx + key.shape[1]] = key[:h - ky, :w - kx]
  put_text(img, title, (w / 2, y0 - round(13 * u)), 0.58 * u, anchor="centre")
  return img
