"""Fig. 6: per test image, the estimated DAFI, the fitted landmarks and selected vertices over
the image, and the fitted mesh, drawn with OpenCV into uint8 RGB."""

from __future__ import annotations

import cv2
import numpy as np

from cprfa_jax.report.draw import (SHIFT, blend, draw_dots, fixed_point, put_text, scale_points,
                                   text_block, text_size, tile_columns, tile_rows, upscale)
from cprfa_jax.report.draw import legend as draw_legend

PRED_RGB = (255, 30, 30)       # fitted landmarks
GT_RGB = (0, 230, 0)           # ground-truth landmarks
SELECTED_RGB = (40, 110, 255)  # the C selected vertices (blue dots of Fig. 6)
MESH_RGB = (255, 255, 160)
WIRE_ALPHA = 0.3
OUTLINE_ALPHA = 0.9
SHADED_ALPHA = 0.75
UNDETECTED_ALPHA = 0.45


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
  pts = fixed_point(mesh_Vx2)
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
  pts = fixed_point(corners[..., :2])
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
             pad: int = 2, legend: str | None = None) -> np.ndarray:
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
    legend: optional caption (e.g. the method and set); when given, a strip under the grid
      starts with it, says what the rows show and gives each point colour (`legend_strip`).

  Layout (for locating things): each tile is (H * scale, W * scale); tiles are `pad` apart;
  titles add a strip on top, row labels a gutter on the left and a legend a strip at the
  bottom, none present by default.
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
  if row_labels is not None:
    grid = tile_columns([_row_gutter(row_labels, images.shape[1] * scale, pad, scale,
                                     grid.shape[0], titles is not None), grid], pad)
  if legend is None:
    return grid
  return tile_rows([grid, legend_strip(legend, grid.shape[1], scale, row_labels)], pad)


def legend_strip(caption: str, width: int, scale: int, row_labels=None) -> np.ndarray:
  """What `fit_grid` shows: the caption and the rows in words, then one sample per colour,
  drawn as in the tiles (the undetected ring as dim as over a face)."""
  fs = max(0.35, 0.13 * scale)
  names = row_labels or ("top", "middle", "bottom")
  rows = (f"{caption}. Column titles: landmark NME. {names[0]}: the estimated DAFI; {names[1]}: "
          f"points over the input image; {names[2]}: the fitted mesh (front-facing triangles).")
  ring = tuple(int(round(255 + UNDETECTED_ALPHA * (c - 255))) for c in SELECTED_RGB)
  # Dots at least 3 px across so each colour reads; their relative sizes are the tiles'.
  r = max(1.0, 3.0 / (0.4 * scale))
  entries = [("fitted landmarks", PRED_RGB, "dot", 0.75 * scale * r),
             ("ground-truth landmarks", GT_RGB, "dot", 0.4 * scale * r),
             ("selected vertex, found in the DAFI", SELECTED_RGB, "dot", 0.5 * scale * r),
             ("selected vertex, not found", ring, "ring", 0.55 * scale * r),
             ("fitted mesh", MESH_RGB, "swatch", None)]
  key = draw_legend(entries, width, fs)   # one column, wider than a grid of one or two images
  return tile_rows([text_block(rows, max(width, key.shape[1]), fs), key], 0)


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
