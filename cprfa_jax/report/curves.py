"""Error-against-level curves (the robustness study's figure), drawn with OpenCV into uint8 RGB
in the style of `report.ced`."""

from __future__ import annotations

import cv2
import numpy as np

from cprfa_jax.report.ced import method_colour, nice_step
from cprfa_jax.report.draw import (BLACK, GRID, SHIFT, fixed_point, legend, put_text,
                                   put_vertical_text)


def level_plot(nme_by_method: dict[str, list], levels, title: str, xlabel: str,
               size=(560, 440), max_nme: float | None = None) -> np.ndarray:
  """One line per method of its NME (fractions; drawn in %) at each level, as uint8 RGB.

  Levels are placed evenly (they are rarely evenly spaced) and labelled with their values; a
  NaN NME (not run) leaves a gap. The y axis runs from 0 to `max_nme` (default: the largest
  finite value, rounded up to a tick).
  """
  if not nme_by_method:
    raise ValueError("level_plot needs at least one method")
  levels = list(levels)
  vals = {m: np.asarray(v, np.float64) * 100 for m, v in nme_by_method.items()}
  for m, v in vals.items():
    if v.shape != (len(levels),):
      raise ValueError(f"{m}: {v.shape[0] if v.ndim else 0} values for {len(levels)} levels")
  finite = np.concatenate([v[np.isfinite(v)] for v in vals.values()] + [np.zeros(1)])
  top = 100 * max_nme if max_nme else max(float(finite.max()), 1e-3)
  step = nice_step(top, 6)
  top = step * np.ceil(top / step - 1e-9)
  w, h = int(size[0]), int(size[1])
  u = min(w / 560, h / 440)
  img = np.full((h, w, 3), 255, np.uint8)
  thick = max(1, round(2 * u))
  key = legend([(m, method_colour(k), "line", thick) for k, m in enumerate(vals)],
               w - round(40 * u), 0.42 * u)
  x0, y0 = round(62 * u), round(40 * u)
  x1, y1 = w - round(24 * u), h - round(58 * u) - key.shape[0]
  if y1 - y0 < round(60 * u):
    raise ValueError(f"{len(vals)} methods leave no room for the plot in a {w} x {h} figure")
  fs, tick = 0.42 * u, max(2, round(4 * u))
  n = len(levels)
  px = lambda i: x0 + (i + 0.5) / n * (x1 - x0)
  py = lambda v: y1 - min(v, top) / top * (y1 - y0)
  for t in np.arange(0, top + step / 2, step):
    y = int(round(py(t)))
    cv2.line(img, (x0, y), (x1, y), GRID, 1)
    cv2.line(img, (x0 - tick, y), (x0, y), BLACK, 1)
    put_text(img, f"{t:g}", (x0 - tick - round(4 * u), y + round(5 * u)), fs, anchor="right")
  for i, lv in enumerate(levels):
    x = int(round(px(i)))
    cv2.line(img, (x, y1), (x, y1 + tick), BLACK, 1)
    put_text(img, f"{lv:g}", (x, y1 + tick + round(15 * u)), fs, anchor="centre")
  cv2.rectangle(img, (x0, y0), (x1, y1), BLACK, 1)
  for k, v in enumerate(vals.values()):
    colour = method_colour(k)
    for i in range(n):
      if not np.isfinite(v[i]):
        continue
      p = np.array([[px(i), py(v[i])]])
      cv2.circle(img, tuple(fixed_point(p)[0]), round(3 * u) << SHIFT, colour, -1, cv2.LINE_AA,
                 SHIFT)
      if i + 1 < n and np.isfinite(v[i + 1]):
        seg = np.array([[px(i), py(v[i])], [px(i + 1), py(v[i + 1])]])
        cv2.polylines(img, [fixed_point(seg)[:, None, :]], False, colour, thick, cv2.LINE_AA,
                      SHIFT)
  put_text(img, xlabel, ((x0 + x1) / 2, y1 + round(40 * u)), 0.5 * u, anchor="centre")
  put_vertical_text(img, "NME (%)", (round(13 * u), (y0 + y1) / 2), 0.5 * u)
  ky, kx = y1 + round(50 * u), max(0, (w - key.shape[1]) // 2)
  img[ky:ky + key.shape[0], kx:kx + key.shape[1]] = key[:h - ky, :w - kx]
  put_text(img, title, (w / 2, y0 - round(13 * u)), 0.58 * u, anchor="centre")
  return img
