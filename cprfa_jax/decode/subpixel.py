"""Sub-pixel DAFI decoding: an option beside the paper's §2.1 decoding (issue 12).

The paper matches each *pixel* to its nearest vertex code and places a vertex at the mean of
its matched pixels. At low resolution that wastes the DAFI: a 64 px face has ~1000 pixels for
6083 vertices, so most vertices win no pixel and go undetected even on a perfect DAFI, and a
detected one is quantised to its pixels' centres (one pixel is ~3% of the face).

Here the match runs the other way, and the PNCC field is read between pixel centres:

1. for every vertex v, the face pixel x0 whose code is nearest to v's code c_v (a KD-tree over
   the image's pixel codes);
2. a local affine model of the field around x0, c(x0 + o) ≈ c0 + J o, fitted by least squares
   to the face pixels of the (2r+1)^2 neighbourhood (o in pixels; J is 3 x 2);
3. v's position x0 + Δ with Δ = argmin ||c0 + J Δ - c_v|| (the point of the fitted plane
   nearest to c_v, a 2 x 2 solve); then steps 2-3 once more around the face pixel nearest to
   x0 + Δ (a Gauss-Newton step: where the field stretches more one way than the other, the
   nearest code is not always at the nearest pixel);
4. v is detected if that residual is below `max_dist` (the paper's 0.01 test, on the
   interpolated code rather than a pixel's) and Δ stays inside the fitted neighbourhood
   (|Δ| <= r + 1/2 per axis: no extrapolation past the pixels the model rests on).

Singular points are guarded where they arise: a neighbourhood with fewer than three
non-collinear face pixels (the normal equations' determinant ~ 0) or a flat field (JᵀJ ~ 0)
leaves the vertex undetected rather than dividing by zero.

Host NumPy + scipy, same contract as `decode.pixel.decode_dafi_kdtree`: positions (V', 2) in 0-based
pixels (x = column, y = row), detected (V',), undetected at (0, 0).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from cprfa_jax.decode.pixel import MATCH_DIST, check_inputs

# Determinant floors of the two solves, relative to their scale (float64 throughout).
_DET_FLOOR = 1e-9


def _offsets(radius: int) -> np.ndarray:
  r = np.arange(-radius, radius + 1)
  oy, ox = np.meshgrid(r, r, indexing="ij")
  return np.stack([ox.ravel(), oy.ravel()], -1)          # (K, 2) as (dx, dy)


def _inv3(m):
  """Batched 3 x 3 inverse where it exists: (inv (N, 3, 3), invertible (N,)). The normal
  matrix of [1, dx, dy] has an integer determinant >= 1 when three face pixels are not
  collinear, and 0 when they are: a singular one is swapped for the identity before inverting
  and flagged."""
  good = np.abs(np.linalg.det(m)) > _DET_FLOOR
  return np.linalg.inv(np.where(good[:, None, None], m, np.eye(3))), good


def _pixel_fits(dafi, mask, rows, cols, radius):
  """Step 2 at every face pixel (P of them; a fit depends on the pixel, not on the vertex, and
  ~6 vertices share each pixel at 64 px): (c0 (P, 3), Jᵀ (P, 2, 3), fitted (P,))."""
  off = _offsets(radius)                                # (K, 2)
  h, w = mask.shape
  xs, ys = cols[:, None] + off[None, :, 0], rows[:, None] + off[None, :, 1]   # (P, K)
  inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
  xs_c, ys_c = np.clip(xs, 0, w - 1), np.clip(ys, 0, h - 1)
  wgt = (inside & mask[ys_c, xs_c]).astype(np.float64)  # (P, K)
  a = np.concatenate([np.ones(off.shape[:1] + (1,)), off.astype(np.float64)], -1)  # (K, 3)
  ata = np.einsum("pk,ki,kj->pij", wgt, a, a)           # (P, 3, 3)
  atc = np.matmul(a.T, wgt[..., None] * dafi[ys_c, xs_c])   # (P, 3, 3): rows 1, dx, dy
  inv, fitted = _inv3(ata)
  coef = inv @ atc
  return coef[:, 0], coef[:, 1:], fitted


def solve_offsets(c0, jac_t, fitted, codes_v, xp=np, floor=_DET_FLOOR, tiny=1e-30):
  """Step 3 for each vertex from its pixel's fit: (Δ (n, 2), residual (n,), solvable (n,)).
  xp: numpy here, jax.numpy in `decode.subpixel_device` (with float32 floors)."""
  # (JᵀJ) Δ = Jᵀ (c_v - c0) by Cramer's rule where the 2 x 2 determinant is clear of zero
  # relative to its diagonal (a flat or one-directional field leaves the vertex unsolvable,
  # not at a division by ~0).
  g = jac_t @ xp.swapaxes(jac_t, 1, 2)                  # (n, 2, 2)
  det2 = g[:, 0, 0] * g[:, 1, 1] - g[:, 0, 1] * g[:, 1, 0]
  scale2 = g[:, 0, 0] * g[:, 1, 1]
  ok = fitted & (scale2 > tiny) & (det2 > floor * xp.maximum(scale2, tiny))
  rhs = xp.einsum("nij,nj->ni", jac_t, codes_v - c0)    # (n, 2)
  safe_det = xp.where(ok, det2, 1.0)
  delta = xp.stack([g[:, 1, 1] * rhs[:, 0] - g[:, 0, 1] * rhs[:, 1],
                    g[:, 0, 0] * rhs[:, 1] - g[:, 1, 0] * rhs[:, 0]], -1) / safe_det[:, None]
  delta = xp.where(ok[:, None], delta, 0.0)
  resid = xp.linalg.norm(c0 + xp.einsum("nij,ni->nj", jac_t, delta) - codes_v, axis=-1)
  return delta, xp.where(ok, resid, xp.inf), ok


def decode_dafi_subpixel(dafi_HxWx3, mask_HxW, pncc_Vx3, subset_C=None,
                         max_dist: float = MATCH_DIST, radius: int = 1):
  """Sub-pixel positions (C, 2) float32 and detected (C,) of the subset's vertices (all V when
  `subset_C` is None). See the module docstring for the method."""
  dafi = np.asarray(dafi_HxWx3, np.float64)
  mask = np.asarray(mask_HxW, bool)
  check_inputs(dafi, mask)
  if radius < 1:
    raise ValueError(f"radius={radius}: the local fit needs a neighbourhood, use radius >= 1")
  pncc = np.asarray(pncc_Vx3, np.float64)
  codes_v = pncc if subset_C is None else pncc[np.asarray(subset_C)]
  n = len(codes_v)
  pos, det = np.zeros((n, 2)), np.zeros(n, bool)
  rows, cols = np.nonzero(mask)
  if rows.size < 3:
    return pos.astype(np.float32), det
  # 1. the nearest face pixel to each vertex code (an index into the P face pixels).
  _, p = cKDTree(dafi[rows, cols]).query(codes_v)
  # 2. the local fit at every face pixel; 3. the solve from the vertex's pixel.
  c0, jac_t, fitted = _pixel_fits(dafi, mask, rows, cols, radius)
  delta, resid, ok = solve_offsets(c0[p], jac_t[p], fitted[p], codes_v)
  # ... once more from the face pixel nearest to x0 + Δ, where that is another one.
  h, w = mask.shape
  index = np.full((h, w), -1)
  index[rows, cols] = np.arange(rows.size)
  x0 = np.stack([cols[p], rows[p]], -1)                 # (n, 2) integer pixel
  moved = np.clip(np.rint(x0 + delta).astype(int), 0, [w - 1, h - 1])
  q = np.where(ok, index[moved[:, 1], moved[:, 0]], -1)
  again = (q >= 0) & (q != p)
  if again.any():
    d2, r2, ok2 = solve_offsets(c0[q[again]], jac_t[q[again]], fitted[q[again]], codes_v[again])
    take = np.flatnonzero(again)[ok2]
    delta[take], resid[take], x0[take] = d2[ok2], r2[ok2], moved[take]
  # 4. the paper's threshold on the interpolated code, inside the fitted neighbourhood only.
  det = ok & (resid < max_dist) & (np.abs(delta).max(-1) <= radius + 0.5)
  pos[det] = x0[det] + delta[det]
  return pos.astype(np.float32), det
