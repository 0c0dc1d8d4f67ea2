"""A simple reference renderer on the host: the painter's algorithm with OpenCV.

Everything is NumPy except the fill: Eq. 2 and vertex normals are recomputed here, front-facing
triangles are drawn far to near (by mean depth) with `cv2.fillConvexPoly` into a triangle-index
image, and barycentrics, DAFI and RGB follow per pixel. It shares nothing with `raster` but the
conventions, so tests and `benchmarks/render_throughput.py` compare the two. Known differences:
OpenCV rounds vertices to the nearest pixel and fills inclusive of the boundary, so silhouettes
and occluding edges come out about half a pixel fatter and thin edge-on slivers are painted
where no pixel centre is inside them; and mean-depth order can be wrong for triangles that
overlap in depth. Both only touch silhouettes and occlusion boundaries.
"""

from __future__ import annotations

import cv2
import numpy as np

SHIFT = 4  # fractional bits of the fixed-point vertices handed to OpenCV


def reference_camera_points(verts_Vx3, pose_6) -> np.ndarray:
  """NumPy Eq. 2 in the camera frame (x, y normalised, z toward the camera): (V, 3)."""
  rx, ry, rz, s, tx, ty = (float(p) for p in np.asarray(pose_6))
  c, n = np.cos, np.sin
  r_x = np.array([[1, 0, 0], [0, c(rx), -n(rx)], [0, n(rx), c(rx)]])
  r_y = np.array([[c(ry), 0, n(ry)], [0, 1, 0], [-n(ry), 0, c(ry)]])
  r_z = np.array([[c(rz), -n(rz), 0], [n(rz), c(rz), 0], [0, 0, 1]])
  return s * np.asarray(verts_Vx3, np.float64) @ (r_z @ r_y @ r_x).T + [tx, ty, 0.0]


def reference_pixels(cam_Vx3, hw) -> np.ndarray:
  """Camera points -> pixel x, y (y down, centres on integers) and depth z: (V, 3)."""
  h, w = hw
  f = min(h, w) / 2.0
  return np.stack([(w - 1) / 2.0 + f * cam_Vx3[:, 0], (h - 1) / 2.0 - f * cam_Vx3[:, 1],
                   cam_Vx3[:, 2]], -1)


def reference_normals(cam_Vx3, triangles_Tx3) -> np.ndarray:
  """Area-weighted unit vertex normals (V, 3) with np.add.at."""
  tri = np.asarray(triangles_Tx3, np.int64)
  a, b, c = (cam_Vx3[tri[:, i]] for i in range(3))
  face = np.cross(b - a, c - a)
  n = np.zeros_like(cam_Vx3)
  for i in range(3):
    np.add.at(n, tri[:, i], face)
  return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)


def reference_tri_id(pix_Vx3, triangles_Tx3, hw, cull_back: bool = True) -> np.ndarray:
  """(H, W) int32 index of the triangle drawn last at each pixel, -1 for background.

  pix_Vx3: pixel x, y (x right, y down, centres on integers) and depth z toward the camera.
  """
  pix = np.asarray(pix_Vx3, np.float64)
  tri = np.asarray(triangles_Tx3, np.int64)
  p = pix[tri, :2]                                          # (T, 3, 2)
  e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
  area2 = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
  # Outward normals toward the camera wind clockwise in pixel coordinates (y down).
  keep = area2 < 0 if cull_back else area2 != 0
  order = np.flatnonzero(keep)[np.argsort(pix[tri[keep], 2].mean(1), kind="stable")]
  side = max(hw)
  pts = np.round(np.clip(p, -side, 2 * side) * (1 << SHIFT)).astype(np.int32)
  out = np.full(hw, -1, np.int32)
  for t in order:  # far to near: nearer triangles overwrite
    cv2.fillConvexPoly(out, pts[t], int(t), lineType=cv2.LINE_8, shift=SHIFT)
  return out


def reference_barycentrics(pix_Vx3, triangles_Tx3, tri_id_HxW) -> np.ndarray:
  """(H, W, 3) barycentrics of each pixel centre in its triangle, clipped to the triangle."""
  h, w = tri_id_HxW.shape
  pix = np.asarray(pix_Vx3, np.float64)
  tri = np.asarray(triangles_Tx3, np.int64)
  ys, xs = np.mgrid[0:h, 0:w]
  fg = tri_id_HxW >= 0
  v = pix[tri[tri_id_HxW[fg]], :2]                          # (F, 3, 2)
  q = np.stack([xs[fg], ys[fg]], -1)[:, None, :]
  a, b, c = v[:, 0], v[:, 1], v[:, 2]
  cross = lambda u, t: u[..., 0] * t[..., 1] - u[..., 1] * t[..., 0]
  area = cross(b - a, c - a)
  area = np.where(area == 0, 1.0, area)
  lam = np.stack([cross(b - q[:, 0], c - q[:, 0]), cross(c - q[:, 0], a - q[:, 0]),
                  cross(a - q[:, 0], b - q[:, 0])], -1) / area[:, None]
  lam = np.clip(lam, 0.0, 1.0)
  lam /= np.maximum(lam.sum(-1, keepdims=True), 1e-12)
  out = np.zeros((h, w, 3))
  out[fg] = lam
  return out


def reference_render(pix_Vx3, triangles_Tx3, pncc_Vx3, hw, cull_back: bool = True,
                     albedo_Vx3=None, normals_Vx3=None, light=None):
  """DAFI (H, W, 3), mask (H, W), triangle ids (H, W) by the painter's algorithm, and if
  albedo, camera-frame vertex normals and a `shading.Light` are given, the RGB (H, W, 3) with
  Lambertian + ambient light per vertex, interpolated as in `renderer` (otherwise None)."""
  tri_id = reference_tri_id(pix_Vx3, triangles_Tx3, hw, cull_back)
  bary = reference_barycentrics(pix_Vx3, triangles_Tx3, tri_id)[..., None]
  tri = np.asarray(triangles_Tx3, np.int64)[np.maximum(tri_id, 0)]      # (H, W, 3)
  mask = tri_id >= 0
  lerp = lambda attr: np.where(mask[..., None],
                               (bary * np.asarray(attr, np.float64)[tri]).sum(-2), 0.0)
  dafi = lerp(pncc_Vx3).astype(np.float32)
  rgb = None
  if albedo_Vx3 is not None:
    n = np.asarray(normals_Vx3, np.float64)
    n = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    ndotl = np.maximum(n @ np.asarray(light.direction_3, np.float64), 0.0)[:, None]
    shade = np.asarray(light.ambient_3) + np.asarray(light.colour_3) * ndotl
    rgb = lerp(np.clip(np.asarray(albedo_Vx3) * shade, 0, 1)).astype(np.float32)
  return dafi, mask, tri_id, rgb
