"""The paper's figures drawn with OpenCV and NumPy: CED curves (Fig. 5), fit grids (Fig. 6) and
CPR matrices (Fig. 3).

Every figure is returned as a uint8 RGB array (H, W, 3); callers write PNGs with
`cv2.imwrite(path, cv2.cvtColor(fig, cv2.COLOR_RGB2BGR))`, as `data.contact_sheet` does.

Pixel coordinates follow `geometry.projection.to_pixels`: 0-based, x right, y down, pixel
centres on integers. Tiles are upscaled by an integer `scale` before drawing so that dots and
lines stay visible on 64 x 64 inputs; a point p of the original image lands at
(p + 0.5) * scale - 0.5 in the tile (`scale_points`), the centre of the block its pixel became.

OpenCV's Hershey fonts draw ASCII only, so labels pass through `ascii_text`, which spells the
Greek letters and signs of the paper's notation (Λ -> "Lam", − -> "-").
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from cprfa_jax import metrics

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GREY = (110, 110, 110)
GRID = (228, 228, 228)
FONT = cv2.FONT_HERSHEY_SIMPLEX
# cv2 draws at sub-pixel precision when coordinates are fixed point with SHIFT fractional bits.
SHIFT = 4

# Matplotlib's tab10: ten well separated hues that stay distinct for most colour-blind readers.
PALETTE_RGB = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
               (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))

PRED_RGB = (255, 30, 30)       # fitted landmarks
GT_RGB = (0, 230, 0)           # ground-truth landmarks
SELECTED_RGB = (40, 110, 255)  # the C selected vertices (blue dots of Fig. 6)
MESH_RGB = (255, 255, 160)
WIRE_ALPHA = 0.3
OUTLINE_ALPHA = 0.9
SHADED_ALPHA = 0.75
UNDETECTED_ALPHA = 0.45

# ColorBrewer RdBu end points: darker than pure red/blue so the ends read as "saturated".
NEG_RGB = (33, 102, 172)
POS_RGB = (178, 24, 43)
NAN_RGB = (160, 160, 160)
FRAME_GREY = 150

_SPELLED = {"Λ": "Lam", "λ": "lam", "α": "alpha", "β": "beta", "Δ": "d", "δ": "d", "φ": "phi",
            "κ": "kappa", "σ": "sigma", "τ": "tau", "−": "-", "–": "-", "—": "-", "×": "x",
            "·": ".", "±": "+-", "≤": "<=", "≥": ">="}


# ---------------------------------------------------------------------------------------------
# Text and drawing helpers
# ---------------------------------------------------------------------------------------------


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


def _fixed(p_xy) -> np.ndarray:
  return np.round(np.asarray(p_xy, np.float64) * (1 << SHIFT)).astype(np.int32)


def scale_points(points_Kx2, scale: int) -> np.ndarray:
  """Pixel coordinates of the original image -> those of the image upscaled by `scale`."""
  return (np.asarray(points_Kx2, np.float64) + 0.5) * scale - 0.5


def draw_dots(img, points_Kx2, radius: float, colour, thickness: int = -1) -> None:
  """Dots (filled for thickness -1, rings otherwise) in place; non-finite points are skipped."""
  pts = np.asarray(points_Kx2, np.float64).reshape(-1, 2)
  r = max(1, int(np.round(radius * (1 << SHIFT))))
  for x, y in _fixed(pts[np.all(np.isfinite(pts), -1)]):
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


# ---------------------------------------------------------------------------------------------
# Fig. 5: cumulative error distribution
# ---------------------------------------------------------------------------------------------


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
  put_text(img, "NME (%)", ((x0 + x1) / 2, img.shape[0] - round(10 * u)), 0.5 * u,
           anchor="centre")
  put_vertical_text(img, "Fraction of images", (round(13 * u), (y0 + y1) / 2), 0.5 * u)


def _ced_legend(img, box, entries, u: float) -> None:
  """Bottom right of the plot, where CED curves rarely go: (label, colour) per method."""
  _, _, x1, y1 = box
  fs, line_len, gap = 0.42 * u, round(26 * u), round(8 * u)
  sizes = [text_size(label, fs) for label, _ in entries]
  row_h = max(h + b for _, h, b in sizes) + round(6 * u)
  w = line_len + 3 * gap + max(s[0] for s in sizes)
  h = row_h * len(entries) + gap
  lx, ly = x1 - gap - w, y1 - gap - h
  cv2.rectangle(img, (lx, ly), (lx + w, ly + h), WHITE, -1)
  cv2.rectangle(img, (lx, ly), (lx + w, ly + h), (170, 170, 170), 1)
  for k, (label, colour) in enumerate(entries):
    yc = ly + gap // 2 + row_h * k + row_h // 2
    cv2.line(img, (lx + gap, yc), (lx + gap + line_len, yc), colour, max(1, round(2 * u)),
             cv2.LINE_AA)
    put_text(img, label, (lx + 2 * gap + line_len, yc + sizes[k][1] // 2), fs)


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
  divided by max_nme) and sits in the bottom right of the plot.
  """
  if not nme_by_method:
    raise ValueError("ced_plot needs at least one method")
  if not (np.isfinite(max_nme) and max_nme > 0):
    raise ValueError(f"max_nme must be a positive finite number; got {max_nme!r}")
  w, h = int(size[0]), int(size[1])
  u = min(w / 640, h / 480)
  img = np.full((h, w, 3), 255, np.uint8)
  box = (round(66 * u), round(40 * u), w - round(20 * u), h - round(54 * u))
  x0, y0, x1, y1 = box
  _ced_axes(img, box, max_nme, u)
  entries = []
  for k, (name, nme) in enumerate(nme_by_method.items()):
    errors = ced_errors(nme)
    # One threshold per pixel column, so every step of the CED lands on its own column.
    thresholds, fraction = metrics.ced_curve(errors, max_nme, num=max(2, x1 - x0 + 1))
    pts = np.stack([x0 + thresholds / max_nme * (x1 - x0), y1 - fraction * (y1 - y0)], -1)
    colour = method_colour(k)
    cv2.polylines(img, [_fixed(pts)[:, None, :]], False, colour, max(1, round(2 * u)),
                  cv2.LINE_AA, SHIFT)
    entries.append((f"{name} (AUC {metrics.auc(errors, max_nme):.3f})", colour))
  _ced_legend(img, box, entries, u)
  put_text(img, title, (w / 2, y0 - round(13 * u)), 0.58 * u, anchor="centre")
  return img


# ---------------------------------------------------------------------------------------------
# Fig. 6: DAFI, landmarks and selected vertices, fitted mesh
# ---------------------------------------------------------------------------------------------


def triangles_facing(front_facing_V, triangles_Tx3) -> np.ndarray:
  """Per-triangle front-facing flags (T,) from per-vertex ones (`projection.front_facing`):
  a triangle counts when all three of its vertices face the camera."""
  return np.asarray(front_facing_V, bool)[np.asarray(triangles_Tx3)].all(-1)


def dafi_tile(dafi_HxWx3, scale: int) -> np.ndarray:
  """(T) of Fig. 6: the estimated DAFI, nearest-neighbour upscaled (its pixels are codes)."""
  return upscale(dafi_HxWx3, scale, nearest=True)


def landmark_tile(image_HxWx3, landmarks_pred_68x2, landmarks_gt_68x2, selected_px_Cx2,
                  selected_detected_C, scale: int) -> np.ndarray:
  """(M) of Fig. 6: selected vertices (blue; dim rings when not detected), fitted landmarks
  (red) and, drawn last and smaller so both stay visible where they agree, the ground truth
  (green)."""
  tile = upscale(image_HxWx3, scale, nearest=False)
  sel = scale_points(selected_px_Cx2, scale)
  det = np.asarray(selected_detected_C, bool)
  rings = tile.copy()
  draw_dots(rings, sel[~det], 0.55 * scale, SELECTED_RGB, thickness=1)
  tile = blend(tile, rings, UNDETECTED_ALPHA)
  draw_dots(tile, sel[det], 0.5 * scale, SELECTED_RGB)
  draw_dots(tile, scale_points(landmarks_pred_68x2, scale), 0.75 * scale, PRED_RGB)
  draw_dots(tile, scale_points(landmarks_gt_68x2, scale), 0.4 * scale, GT_RGB)
  return tile


def boundary_edges(triangles_Tx3) -> np.ndarray:
  """Edges (E, 2) used by exactly one of the triangles: the outline of the drawn surface."""
  tri = np.asarray(triangles_Tx3)
  edges = np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), axis=1)
  unique, count = np.unique(edges, axis=0, return_counts=True)
  return unique[count == 1]


def _wireframe(tile, mesh_Vx2, tri_Tx3) -> np.ndarray:
  """Thin translucent wireframe with an opaque outline.

  Lines go into coverage maps first so each pixel is blended once: the edges of a dense mesh
  (2-3 px apart at 64 px inputs) merge into an even tint through which the face stays visible,
  and the outline, which is what shows whether the fit covers the face, stays sharp.
  """
  keep = np.all(np.isfinite(mesh_Vx2[tri_Tx3]), (1, 2))
  tri_Tx3 = tri_Tx3[keep]
  if tri_Tx3.shape[0] == 0:
    return tile
  pts = _fixed(mesh_Vx2)
  wire = np.zeros(tile.shape[:2], np.uint8)
  cv2.polylines(wire, list(pts[tri_Tx3][:, :, None, :]), True, 255, 1, cv2.LINE_AA, SHIFT)
  outline = np.zeros_like(wire)
  cv2.polylines(outline, list(pts[boundary_edges(tri_Tx3)][:, :, None, :]), False, 255, 1,
                cv2.LINE_AA, SHIFT)
  alpha = np.maximum(WIRE_ALPHA * wire, OUTLINE_ALPHA * outline).astype(np.float32) / 255
  return blend(tile, np.broadcast_to(np.array(MESH_RGB, np.float32), tile.shape), alpha)


def _shaded(tile, mesh_Vx3, tri_Tx3) -> np.ndarray:
  """Flat-shaded surface (light from the camera), painted far to near, blended over the tile.

  Painter's order by mean depth is enough here: only front-facing triangles are drawn, so the
  only overlaps are self-occlusions (the nose over a cheek at large yaw), which it resolves.
  """
  tri_Tx3 = tri_Tx3[np.all(np.isfinite(mesh_Vx3[tri_Tx3]), (1, 2))]
  if tri_Tx3.shape[0] == 0:
    return tile
  corners = mesh_Vx3[tri_Tx3]                                   # (T, 3, 3)
  normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
  lambert = np.abs(normal[:, 2]) / np.maximum(np.linalg.norm(normal, axis=-1), 1e-12)
  shade = 0.3 + 0.7 * lambert
  render = np.zeros_like(tile)
  cover = np.zeros(tile.shape[:2], np.uint8)
  pts = _fixed(corners[..., :2])
  for t in np.argsort(corners[:, :, 2].mean(-1)):
    colour = tuple(int(c * shade[t]) for c in MESH_RGB)
    cv2.fillConvexPoly(render, pts[t], colour, cv2.LINE_8, SHIFT)
    cv2.fillConvexPoly(cover, pts[t], 255, cv2.LINE_8, SHIFT)
  return blend(tile, render, SHADED_ALPHA * cover.astype(np.float32) / 255)


def mesh_tile(image_HxWx3, mesh_px_Vx2, triangles_Tx3, front_facing_T, scale: int) -> np.ndarray:
  """(B) of Fig. 6: the fitted mesh's front-facing triangles over the image.

  mesh_px_Vx2: (V, 2) pixels -> a translucent wireframe with an opaque outline; (V, 3) pixels
  and depth toward the camera in pixel units (`projection.camera_points` times
  min(H, W) / 2, x and y through `to_pixels`) -> a flat-shaded surface.
  """
  tile = upscale(image_HxWx3, scale, nearest=False)
  mesh = np.asarray(mesh_px_Vx2, np.float64)
  if mesh.ndim != 2 or mesh.shape[1] not in (2, 3):
    raise ValueError(f"mesh_px_Vx2 must have shape (V, 2) or (V, 3); got {mesh.shape}")
  # Depth scales like x and y so that normals, hence the shading, keep their angles.
  mesh = np.concatenate([scale_points(mesh[:, :2], scale), mesh[:, 2:] * scale], 1)
  tri = np.asarray(triangles_Tx3)[np.asarray(front_facing_T, bool)]
  return _shaded(tile, mesh, tri) if mesh.shape[1] == 3 else _wireframe(tile, mesh, tri)


def _check_batch(n: int, **arrays) -> None:
  for name, a in arrays.items():
    if np.shape(a)[0] != n:
      raise ValueError(f"{name} has {np.shape(a)[0]} entries along axis 0; images_NxHxWx3 has "
                       f"{n}: every per-image input needs one entry per column.")


def _header(text: str, width: int, scale: int) -> np.ndarray:
  fs = 0.13 * scale
  _, h, b = text_size("Ag", fs)
  strip = np.full((h + b + 4, width, 3), 255, np.uint8)
  put_text(strip, text, (width / 2, h + 2), fs, anchor="centre")
  return strip


def fit_grid(images_NxHxWx3, dafis_NxHxWx3, mesh_px_NxVx2, triangles_Tx3, front_facing_NxT,
             landmarks_pred_Nx68x2, landmarks_gt_Nx68x2, selected_px_NxCx2,
             selected_detected_NxC, scale: int = 3, titles=None, row_labels=None,
             pad: int = 2) -> np.ndarray:
  """Fig. 6: one column per test image, three rows, as uint8 RGB.

  (T) the estimated DAFI; (M) the image with the selected vertices (blue: filled where
  detected, dim rings where not), the fitted 68 landmarks (red) and the ground truth (green,
  small); (B) the fitted mesh's front-facing triangles over the image.

  Args:
    images_NxHxWx3: uint8 RGB images.
    dafis_NxHxWx3: estimated DAFIs, float in [0, 1] (uint8 accepted).
    mesh_px_NxVx2: fitted vertices in pixels of the original image (x right, y down, 0-based),
      e.g. `to_pixels(project(shape(...), pose), (H, W))`: drawn as a wireframe. With a third
      column, depth toward the camera in pixels (`camera_points(...)[:, 2] * min(H, W) / 2`),
      the mesh is drawn flat-shaded instead (`mesh_tile`).
    triangles_Tx3: the model's triangles.
    front_facing_NxT: bool per triangle; `triangles_facing` makes it from the per-vertex
      `projection.front_facing`.
    landmarks_pred_Nx68x2, landmarks_gt_Nx68x2: pixels. selected_px_NxCx2: the projected
      positions of the C selected vertices, pixels; selected_detected_NxC: bool. Non-finite
      points are not drawn.
    scale: integer upscaling of every tile before drawing.
    titles: optional list of N strings (e.g. "NME 3.2%"), drawn small above each column.
    row_labels: optional three strings (e.g. ("T", "M", "B")) drawn left of the rows.
    pad: white pixels between tiles.

  Layout (for locating things): each tile is (H * scale, W * scale); tiles are `pad` apart;
  titles add a strip on top and row labels a gutter on the left, neither present by default.
  """
  images = np.asarray(images_NxHxWx3)
  if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
    raise ValueError(f"images_NxHxWx3 must have shape (N, H, W, 3), N >= 1; got {images.shape}")
  n = images.shape[0]
  _check_batch(n, dafis_NxHxWx3=dafis_NxHxWx3, mesh_px_NxVx2=mesh_px_NxVx2,
               front_facing_NxT=front_facing_NxT, landmarks_pred_Nx68x2=landmarks_pred_Nx68x2,
               landmarks_gt_Nx68x2=landmarks_gt_Nx68x2, selected_px_NxCx2=selected_px_NxCx2,
               selected_detected_NxC=selected_detected_NxC)
  if titles is not None and len(titles) != n:
    raise ValueError(f"titles has {len(titles)} entries for {n} images")
  if np.shape(front_facing_NxT)[1] != np.shape(triangles_Tx3)[0]:
    raise ValueError(f"front_facing_NxT has {np.shape(front_facing_NxT)[1]} flags per image for "
                     f"{np.shape(triangles_Tx3)[0]} triangles; per-vertex flags "
                     "(projection.front_facing) go through triangles_facing first.")
  columns = []
  for i in range(n):
    tiles = [dafi_tile(dafis_NxHxWx3[i], scale),
             landmark_tile(images[i], landmarks_pred_Nx68x2[i], landmarks_gt_Nx68x2[i],
                           selected_px_NxCx2[i], selected_detected_NxC[i], scale),
             mesh_tile(images[i], mesh_px_NxVx2[i], triangles_Tx3, front_facing_NxT[i], scale)]
    if titles is not None:
      tiles.insert(0, _header(titles[i], tiles[0].shape[1], scale))
    columns.append(tile_rows(tiles, pad))
  grid = tile_columns(columns, pad)
  if row_labels is None:
    return grid
  return tile_columns([_row_gutter(row_labels, images.shape[1] * scale, pad, scale,
                                   grid.shape[0], titles is not None), grid], pad)


def _row_gutter(labels, tile_h: int, pad: int, scale: int, height: int, has_titles: bool):
  """A white column with each row's label centred on its tile."""
  fs = 0.15 * scale
  width = max(text_size(s, fs)[0] for s in labels) + 4
  gutter = np.full((height, width, 3), 255, np.uint8)
  top = height - 3 * tile_h - 2 * pad if has_titles else 0
  for k, label in enumerate(labels):
    _, h, _ = text_size(label, fs)
    put_text(gutter, label, (width / 2, top + k * (tile_h + pad) + tile_h / 2 + h / 2), fs,
             anchor="centre")
  return gutter


# ---------------------------------------------------------------------------------------------
# Fig. 3: CPR matrices
# ---------------------------------------------------------------------------------------------


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
