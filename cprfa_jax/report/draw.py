"""Drawing helpers shared by the report figures (`report.figures`): text in OpenCV's Hershey
fonts, fixed-point dots, blending, tiling, legends and colour bars, all on uint8 RGB arrays.

Pixel coordinates follow `geometry.projection.to_pixels`: 0-based, x right, y down, pixel
centres on integers. Tiles are upscaled by an integer `scale` before drawing so that dots and
lines stay visible on 64 x 64 inputs; a point p of the original image lands at
(p + 0.5) * scale - 0.5 in the tile (`scale_points`), the centre of the block its pixel became.

OpenCV's Hershey fonts draw ASCII only, so labels pass through `ascii_text`, which spells the
Greek letters and signs of the paper's notation (Λ -> "Lam", − -> "-").
"""

from __future__ import annotations

import os

import cv2
import numpy as np

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GREY = (110, 110, 110)
GRID = (228, 228, 228)
FONT = cv2.FONT_HERSHEY_SIMPLEX
# cv2 draws at sub-pixel precision when coordinates are fixed point with SHIFT fractional bits.
SHIFT = 4

_SPELLED = {"Λ": "Lam", "λ": "lam", "α": "alpha", "β": "beta", "Δ": "d", "δ": "d", "φ": "phi",
            "κ": "kappa", "σ": "sigma", "τ": "tau", "−": "-", "–": "-", "—": "-", "×": "x",
            "·": ".", "±": "+-", "≤": "<=", "≥": ">="}


def ascii_text(s: str) -> str:
  """Hershey fonts draw ASCII only: spell the paper's symbols, '?' for anything else."""
  return "".join(_SPELLED.get(ch, ch if ord(ch) < 128 else "?") for ch in str(s))


def text_size(s: str, scale: float, thickness: int = 1) -> tuple[int, int, int]:
  """(width, height above the baseline, depth below it) of `s` in pixels."""
  (w, h), base = cv2.getTextSize(ascii_text(s), FONT, scale, thickness)
  return w, h, base


def put_text(img, s: str, org_xy, scale: float, colour=BLACK, thickness: int = 1,
             anchor: str = "left") -> None:
  """Draws `s` in place with its baseline at org_xy[1]; anchor 'left', 'centre' or 'right'."""
  w, _, _ = text_size(s, scale, thickness)
  x = org_xy[0] - {"left": 0, "centre": w // 2, "right": w}[anchor]
  cv2.putText(img, ascii_text(s), (int(np.round(x)), int(np.round(org_xy[1]))), FONT, scale, colour,
              thickness, cv2.LINE_AA)


def _paste_darker(img, patch, x0: int, y0: int) -> None:
  """Pastes dark-on-white `patch` at (x0, y0), clipped; the minimum keeps what lies below."""
  h, w = patch.shape[:2]
  ya, xa = max(y0, 0), max(x0, 0)
  yb, xb = min(y0 + h, img.shape[0]), min(x0 + w, img.shape[1])
  if ya < yb and xa < xb:
    region = img[ya:yb, xa:xb]
    np.minimum(region, patch[ya - y0:yb - y0, xa - x0:xb - x0], out=region)


def put_vertical_text(img, s: str, centre_xy, scale: float, colour=BLACK) -> None:
  """Text reading bottom to top, centred on centre_xy (a y-axis label)."""
  w, h, base = text_size(s, scale)
  patch = np.full((h + base + 2, w + 2, 3), 255, np.uint8)
  put_text(patch, s, (1, h + 1), scale, colour)
  patch = np.ascontiguousarray(np.rot90(patch))  # counter-clockwise: the text reads upwards
  ph, pw = patch.shape[:2]
  _paste_darker(img, patch, int(centre_xy[0] - pw // 2), int(centre_xy[1] - ph // 2))


def fixed_point(p_xy) -> np.ndarray:
  return np.round(np.asarray(p_xy, np.float64) * (1 << SHIFT)).astype(np.int32)


def scale_points(points_Kx2, scale: int) -> np.ndarray:
  """Pixel coordinates of the original image -> those of the image upscaled by `scale`."""
  return (np.asarray(points_Kx2, np.float64) + 0.5) * scale - 0.5


def draw_dots(img, points_Kx2, radius: float, colour, thickness: int = -1) -> None:
  """Dots (filled for thickness -1, rings otherwise) in place; non-finite points are skipped."""
  pts = np.asarray(points_Kx2, np.float64).reshape(-1, 2)
  r = max(1, int(np.round(radius * (1 << SHIFT))))
  for x, y in fixed_point(pts[np.all(np.isfinite(pts), -1)]):
    cv2.circle(img, (int(x), int(y)), r, colour, thickness, cv2.LINE_AA, SHIFT)


def blend(img, overlay, alpha) -> np.ndarray:
  """img * (1 - alpha) + overlay * alpha, alpha a scalar or an (H, W) map in [0, 1]."""
  a = np.asarray(alpha, np.float32)
  a = a[..., None] if a.ndim == 2 else a
  out = img.astype(np.float32) * (1 - a) + np.asarray(overlay, np.float32) * a
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def to_uint8_rgb(img) -> np.ndarray:
  """uint8 RGB from uint8 or [0, 1] float, grey (H, W) or RGB (H, W, 3)."""
  a = np.asarray(img)
  if a.dtype != np.uint8:
    a = (np.clip(np.nan_to_num(a.astype(np.float64)), 0, 1) * 255 + 0.5).astype(np.uint8)
  if a.ndim == 2:
    a = np.repeat(a[..., None], 3, -1)
  if a.ndim != 3 or a.shape[-1] != 3:
    raise ValueError(f"expected an image (H, W) or (H, W, 3); got shape {a.shape}")
  return a


def upscale(img_HxWx3, scale: int, nearest: bool = True) -> np.ndarray:
  """Integer upscaling. Nearest keeps codes (DAFIs) and pixels honest; linear looks smoother."""
  img = to_uint8_rgb(img_HxWx3)
  if scale == 1:
    return img.copy()
  h, w = img.shape[:2]
  return cv2.resize(img, (w * scale, h * scale),
                    interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def tile_rows(rows: list[np.ndarray], pad: int = 4, align: str = "left") -> np.ndarray:
  """Stacks images top to bottom, `pad` white pixels apart, padding narrower ones with white.

  align: 'left' or 'centre'. Grey or float [0, 1] images are converted (`to_uint8_rgb`).
  """
  if not rows:
    raise ValueError("tile_rows needs at least one image")
  rows = [to_uint8_rgb(r) for r in rows]
  width = max(r.shape[1] for r in rows)
  out = []
  for i, r in enumerate(rows):
    extra = width - r.shape[1]
    left = extra // 2 if align == "centre" else 0
    out.append(np.pad(r, ((0, pad if i < len(rows) - 1 else 0), (left, extra - left), (0, 0)),
                      constant_values=255))
  return np.concatenate(out, 0)


def tile_columns(cols: list[np.ndarray], pad: int = 4) -> np.ndarray:
  """Places images left to right, `pad` white pixels apart, top-aligned, padded with white."""
  return np.ascontiguousarray(np.rot90(
      tile_rows([np.rot90(to_uint8_rgb(c)) for c in cols][::-1], pad), -1))



def wrap_text(s: str, max_width: int, scale: float) -> list[str]:
  """Words of `s` in lines at most max_width pixels wide (a longer single word stays whole)."""
  lines, line = [], ""
  for word in str(s).split():
    trial = f"{line} {word}".strip()
    if line and text_size(trial, scale)[0] > max_width:
      lines.append(line)
      line = word
    else:
      line = trial
  return lines + ([line] if line else [])


def text_block(s: str, width: int, scale: float, align: str = "left") -> np.ndarray:
  """A white strip `width` wide holding `s`, wrapped to fit."""
  _, h, b = text_size("Ag", scale)
  row = h + b + max(2, h // 3)
  lines = wrap_text(s, width - 8, scale)
  strip = np.full((row * len(lines) + 4, width, 3), 255, np.uint8)
  x = {"left": 4, "centre": width / 2}[align]
  for k, line in enumerate(lines):
    put_text(strip, line, (x, 2 + k * row + h + 1), scale, anchor=align)
  return strip


def draw_marker(img, kind: str, colour, box, size: float | None = None) -> None:
  """A legend's sample, in place, inside box (x0, y0, x1, y1): 'line' (size: thickness), 'dot',
  'ring' (size: radius) or 'swatch' (a filled square with a grey edge)."""
  x0, y0, x1, y1 = box
  cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
  if kind == "line":
    cv2.line(img, (int(x0), int(round(cy))), (int(x1), int(round(cy))), colour,
             int(size or 2), cv2.LINE_AA)
  elif kind in ("dot", "ring"):
    draw_dots(img, [(cx, cy)], size or (y1 - y0) / 3, colour, -1 if kind == "dot" else 1)
  elif kind == "swatch":
    s = (y1 - y0) / 2
    p0, p1 = (int(cx - s), int(cy - s)), (int(cx + s), int(cy + s))
    cv2.rectangle(img, p0, p1, colour, -1)
    cv2.rectangle(img, p0, p1, GREY, 1)
  else:
    raise ValueError(f"unknown legend marker {kind!r}: use line, dot, ring or swatch")


def legend(entries, max_width: int, scale: float) -> np.ndarray:
  """A white strip of legend entries (label, colour, marker kind, marker size or None), in as
  many equal columns as fit in max_width, read down each column. Markers as `draw_marker`."""
  if not entries:
    raise ValueError("legend needs at least one entry")
  _, h, b = text_size("Ag", scale)
  gap, marker_w = max(4, h // 2), max(14, 2 * h)
  row_h = max(h + b, 2 * int(max((e[3] or 0) for e in entries)) + 2) + gap
  cell_w = marker_w + 3 * gap + max(text_size(e[0], scale)[0] for e in entries)
  cols = max(1, min(len(entries), max_width // cell_w))
  rows = -(-len(entries) // cols)
  img = np.full((rows * row_h + gap, cols * cell_w, 3), 255, np.uint8)
  for k, (label, colour, kind, size) in enumerate(entries):
    c, r = divmod(k, rows)
    x, yc = c * cell_w + gap, gap + r * row_h + row_h // 2 - gap // 2
    draw_marker(img, kind, colour, (x, yc - h / 2, x + marker_w, yc + h / 2), size)
    put_text(img, label, (x + marker_w + gap, yc + h / 2), scale)
  return img


def save_png(path, rgb_HxWx3) -> None:
  """Writes uint8 RGB as a PNG; OSError naming the path if OpenCV cannot."""
  bgr = cv2.cvtColor(to_uint8_rgb(rgb_HxWx3), cv2.COLOR_RGB2BGR)
  if not cv2.imwrite(os.fspath(path), bgr):
    raise OSError(f"{path}: cannot write the PNG; check the folder exists and is writable")
