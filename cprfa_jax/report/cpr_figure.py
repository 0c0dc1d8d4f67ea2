"""Fig. 3: CPR matrices in a diverging colour map, drawn with OpenCV into uint8 RGB."""

from __future__ import annotations

import cv2
import numpy as np

from cprfa_jax.report.draw import (GREY, put_text, text_block, text_size, tile_columns,
                                   tile_rows)

# ColorBrewer RdBu end points: darker than pure red/blue so the ends read as "saturated".
NEG_RGB = (33, 102, 172)
POS_RGB = (178, 24, 43)
NAN_RGB = (160, 160, 160)
FRAME_GREY = 150


def robust_limit(values) -> float:
  """Symmetric colour range: the 99th percentile of |value| over the finite non-zero entries.

  Zeros are left out because a CPR is zero wherever a vertex is missing (§2.2): at large poses
  most entries are, and a percentile over them would collapse the range to 0. 1.0 when there
  is nothing non-zero, so an all-zero panel draws white.
  """
  a = np.abs(np.asarray(values, np.float64))
  a = a[np.isfinite(a) & (a > 0)]
  return float(np.percentile(a, 99)) if a.size else 1.0


def diverging_rgb(values, limit: float) -> np.ndarray:
  """uint8 RGB (..., 3): -limit blue, 0 white, +limit red, clipped beyond; NaN grey."""
  v = np.asarray(values, np.float64)
  t = np.clip(np.nan_to_num(v / limit, nan=0.0), -1.0, 1.0)[..., None]
  white = np.full(3, 255.0)
  end = np.where(t >= 0, np.array(POS_RGB, np.float64), np.array(NEG_RGB, np.float64))
  rgb = white + np.abs(t) * (end - white)
  rgb = np.where(np.isnan(v)[..., None], np.array(NAN_RGB, np.float64), rgb)
  return np.round(rgb).astype(np.uint8)


def _check_panel(label, a) -> np.ndarray:
  a = np.asarray(a, np.float64)
  if a.ndim == 3 and a.shape[-1] != 3 and a.shape[0] == 3:
    raise ValueError(f"panel {label!r} has shape {a.shape}: channels go last (N, N, 3); "
                     "`cpr.CprInputs` fields are channel-first, pass np.moveaxis(x, 0, -1).")
  if a.ndim != 3 or a.shape[-1] != 3:
    raise ValueError(f"panel {label!r} must have shape (N, N, 3); got {a.shape}")
  return a


def cpr_channels(panels: list[tuple[str, np.ndarray]], cell: int = 128,
                 channel_names=("channel 1", "channel 2", "channel 3"), pad: int = 4) -> np.ndarray:
  """Fig. 3: one row per CPR input, one tile per channel, in a diverging colour map.

  Args:
    panels: (label, array (N, N, 3)) per row, e.g. ("LamG_rxy - LamO_rxy, round 1", x). Each
      row gets its own symmetric range (`robust_limit`), written under its label. Centre
      ratio inputs first (Λ_s^G / Λ_s^O - 1) so that "no error" is white.
    cell: side of each tile; matrices are resized with nearest neighbour (one block per entry),
      and each tile gets a 1-pixel grey frame (so it is cell + 2 wide).
    channel_names: column headers, or None for none.
    pad: white pixels between tiles.

  Returns uint8 RGB: blue negative, white zero, red positive.
  """
  if not panels:
    raise ValueError("cpr_channels needs at least one panel")
  arrays = [_check_panel(label, a) for label, a in panels]
  fs = 0.4 * cell / 128
  labels = [(str(label), f"+-{robust_limit(a):.3g}") for (label, _), a in zip(panels, arrays)]
  gutter_w = max(text_size(s, fs)[0] for pair in labels for s in pair) + 2 * pad
  rows = []
  if channel_names is not None:
    header = np.full((text_size("Ag", fs)[1] + text_size("Ag", fs)[2] + 6, gutter_w, 3), 255,
                     np.uint8)
    heads = [_header_text(name, cell + 2, fs) for name in channel_names]
    rows.append(tile_columns([header, *heads], pad))
  for (label, limit_text), a in zip(labels, arrays):
    lim = robust_limit(a)
    # A grey frame: zero is white, like the page, so without it a sparse tile has no extent.
    tiles = [np.pad(cv2.resize(diverging_rgb(a[..., c], lim), (cell, cell),
                               interpolation=cv2.INTER_NEAREST),
                    ((1, 1), (1, 1), (0, 0)), constant_values=FRAME_GREY) for c in range(3)]
    rows.append(tile_columns([_label_gutter(label, limit_text, gutter_w, cell + 2, fs), *tiles],
                             pad))
  return tile_rows(rows, pad)


def _header_text(text: str, width: int, fs: float) -> np.ndarray:
  _, h, b = text_size("Ag", fs)
  strip = np.full((h + b + 6, width, 3), 255, np.uint8)
  put_text(strip, text, (width / 2, h + 3), fs, anchor="centre")
  return strip


def _label_gutter(label: str, limit_text: str, width: int, height: int, fs: float) -> np.ndarray:
  """The row label, right-aligned next to its tiles, with the colour range below it in grey."""
  gutter = np.full((height, width, 3), 255, np.uint8)
  _, h, b = text_size("Ag", fs)
  put_text(gutter, label, (width - 4, height / 2 - 2), fs, anchor="right")
  put_text(gutter, limit_text, (width - 4, height / 2 + h + b), fs, GREY, anchor="right")
  return gutter


# ---------------------------------------------------------------------------------------------
# Every input of every stage, for one image
# ---------------------------------------------------------------------------------------------

# `cpr.cpr_layout`: the selected vertices of the subject's left half, the right half, and every
# other vertex of each.
CHANNELS = ("ch 1: left half", "ch 2: right half", "ch 3: both")


def colour_bar(limit: float, width: int, fs: float, empty: bool = False) -> np.ndarray:
  """A horizontal bar from -limit (blue) through 0 (white) to +limit (red), framed in grey,
  with tick marks and the three values under it; `empty`: the input has no non-zero entry,
  which the bar says instead of a range."""
  _, h, b = text_size("Ag", fs)
  bar_h = max(8, h + 2)
  ramp = diverging_rgb(np.linspace(-limit, limit, width - 2)[None].repeat(bar_h, 0), limit)
  bar = np.pad(ramp, ((1, 1), (1, 1), (0, 0)), constant_values=FRAME_GREY)
  below = np.full((h + b + 6, width, 3), 255, np.uint8)
  for x, text, anchor in ((0, f"{-limit:.3g}", "left"), ((width - 1) / 2, "0", "centre"),
                          (width - 1, f"+{limit:.3g}", "right")):
    cv2.line(below, (int(round(x)), 0), (int(round(x)), 3), (0, 0, 0), 1)
    put_text(below, text, (x, h + 4), fs, anchor=anchor)
  if empty:
    below[:] = 255
    put_text(below, "every entry is 0 (no vertex detected?)", ((width - 1) / 2, h + 4), fs,
             anchor="centre")
  return tile_rows([bar, below], 0)


def _strip(text: str, width: int, height: int, fs: float, anchor="centre") -> np.ndarray:
  strip = np.full((height, width, 3), 255, np.uint8)
  _, h, _ = text_size("Ag", fs)
  x = {"centre": width / 2, "right": width - 4, "left": 4}[anchor]
  put_text(strip, text, (x, (height + h) / 2), fs, anchor=anchor)
  return strip


def _tile(a_NxN, limit: float, cell: int) -> np.ndarray:
  """One channel: nearest-neighbour up (one block per entry) or area-averaged down, framed."""
  n = a_NxN.shape[0]
  rgb = diverging_rgb(a_NxN, limit)
  rgb = cv2.resize(rgb, (cell, cell), interpolation=cv2.INTER_NEAREST if cell >= n
                   else cv2.INTER_AREA)
  return np.pad(rgb, ((1, 1), (1, 1), (0, 0)), constant_values=FRAME_GREY)


def cpr_stages(rows, title: str | None = None, cell: int | None = None, pad: int = 4,
               channel_names=CHANNELS) -> np.ndarray:
  """Fig. 3 for one image: the CPR inputs the recurrent networks read, one row per stage.

  Args:
    rows: [(row label, {input name: array (N, N, 3)})], e.g. ("round 1, q = 1",
      {"Λ_rxy^G − Λ_rxy^O": x, "Λ_rz^G − Λ_rz^O": y, "Λ_s^G / Λ_s^O − 1": z}); an input a
      row lacks is left blank.
    title: wrapped over the figure.
    cell: side of each channel's tile (default: a multiple of N near 96 px, at most 128).
    channel_names: headers of the three tiles under each input, or None.

  Each input has one symmetric colour range over all rows (`robust_limit` of all its entries),
  shown by the colour bar under its column, so a difference shrinking from stage to stage (the
  fit converging) shows as fading colour. Blue negative, white zero (no difference, or a pair
  with a missing vertex), red positive. Returns uint8 RGB.
  """
  if not rows:
    raise ValueError("cpr_stages needs at least one row")
  names = list(dict.fromkeys(k for _, inputs in rows for k in inputs))
  data = [(label, {k: _check_panel(f"{label}: {k}", a) for k, a in inputs.items()})
          for label, inputs in rows]
  n = next(iter(data[0][1].values())).shape[0]
  cell = cell or (min(128, n * max(1, 96 // n)) if n <= 128 else 128)
  fs = max(0.35, 0.4 * cell / 128)
  _, h, b = text_size("Ag", fs)
  head_h = h + b + 8
  group_w = 3 * (cell + 2) + 2 * pad
  blank = lambda hh, ww: np.full((hh, ww, 3), 255, np.uint8)
  gutter_w = max(text_size(label, fs)[0] for label, _ in rows) + 2 * pad
  column = [blank(head_h, gutter_w)] + ([blank(head_h, gutter_w)] if channel_names else [])
  column += [_strip(label, gutter_w, cell + 2, fs, "right") for label, _ in rows]
  columns = [tile_rows(column, pad)]
  for name in names:
    values = np.concatenate([inputs[name].ravel() for _, inputs in data if name in inputs])
    limit = robust_limit(values)
    parts = [_strip(name, group_w, head_h, fs)]
    if channel_names:
      parts.append(tile_columns([_strip(c, cell + 2, head_h, 0.85 * fs)
                                 for c in channel_names], pad))
    for _, inputs in data:
      if name in inputs:
        parts.append(tile_columns([_tile(inputs[name][..., c], limit, cell) for c in range(3)],
                                  pad))
      else:
        parts.append(blank(cell + 2, group_w))
    parts.append(colour_bar(limit, group_w, 0.85 * fs,
                            empty=not np.any(np.isfinite(values) & (values != 0))))
    columns.append(tile_rows(parts, pad))
  fig = tile_columns(columns, 3 * pad)
  note = ("Blue < 0 < red, white: no difference or a pair with a missing vertex; each input's "
          "colour bar holds for all its rows.")
  top = [text_block(title, fig.shape[1], 1.1 * fs, "centre")] if title else []
  return tile_rows(top + [fig, text_block(note, fig.shape[1], 0.85 * fs)], pad)
