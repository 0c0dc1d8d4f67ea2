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

Host NumPy + scipy, same contract as `dafi.decode_dafi_kdtree`: positions (V', 2) in 0-based
pixels (x = column, y = row), detected (V',), undetected at (0, 0).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from cprfa_jax.dafi import MATCH_DIST, _check

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


def _local_solve(dafi, mask, x0, codes_v, radius):
  """Steps 2-3 around pixels x0 (n, 2): (Δ (n, 2), residual (n,), solvable (n,))."""
  off = _offsets(radius)                                # (K, 2)
  h, w = mask.shape
  xs, ys = x0[:, None, 0] + off[None, :, 0], x0[:, None, 1] + off[None, :, 1]   # (n, K)
  inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
  xs_c, ys_c = np.clip(xs, 0, w - 1), np.clip(ys, 0, h - 1)
  wgt = (inside & mask[ys_c, xs_c]).astype(np.float64)  # (n, K)
  c_nb = dafi[ys_c, xs_c]                               # (n, K, 3)
  a = np.concatenate([np.ones(off.shape[:1] + (1,)), off.astype(np.float64)], -1)  # (K, 3)
  ata = np.einsum("nk,ki,kj->nij", wgt, a, a)           # (n, 3, 3)
  atc = np.einsum("nk,ki,nkc->nic", wgt, a, c_nb)       # (n, 3, 3): rows 1, dx, dy
  inv, invertible = _inv3(ata)
  coef = inv @ atc                                      # (n, 3, 3)
  c0, jac_t = coef[:, 0], coef[:, 1:]                   # (n, 3), Jᵀ (n, 2, 3)
  # The plane point nearest to c_v: (JᵀJ) Δ = Jᵀ (c_v - c0), by Cramer's rule where the 2 x 2
  # determinant is clear of zero relative to its diagonal (a flat or one-directional field
  # leaves the vertex unsolvable, not at a division by ~0).
  g = jac_t @ np.swapaxes(jac_t, 1, 2)                  # (n, 2, 2)
  det2 = g[:, 0, 0] * g[:, 1, 1] - g[:, 0, 1] * g[:, 1, 0]
  scale2 = g[:, 0, 0] * g[:, 1, 1]
  ok = invertible & (scale2 > 1e-30) & (det2 > _DET_FLOOR * np.maximum(scale2, 1e-30))
  rhs = np.einsum("nij,nj->ni", jac_t, codes_v - c0)    # (n, 2)
  safe_det = np.where(ok, det2, 1.0)
  delta = np.stack([g[:, 1, 1] * rhs[:, 0] - g[:, 0, 1] * rhs[:, 1],
                    g[:, 0, 0] * rhs[:, 1] - g[:, 1, 0] * rhs[:, 0]], -1) / safe_det[:, None]
  delta = np.where(ok[:, None], delta, 0.0)
  resid = np.linalg.norm(c0 + np.einsum("nij,ni->nj", jac_t, delta) - codes_v, axis=-1)
  return delta, np.where(ok, resid, np.inf), ok


def decode_dafi_subpixel(dafi_HxWx3, mask_HxW, pncc_Vx3, subset_C=None,
                         max_dist: float = MATCH_DIST, radius: int = 1):
  """Sub-pixel positions (C, 2) float32 and detected (C,) of the subset's vertices (all V when
  `subset_C` is None). See the module docstring for the method."""
  dafi = np.asarray(dafi_HxWx3, np.float64)
  mask = np.asarray(mask_HxW, bool)
  _check(dafi, mask)
  if radius < 1:
    raise ValueError(f"radius={radius}: the local fit needs a neighbourhood, use radius >= 1")
  pncc = np.asarray(pncc_Vx3, np.float64)
  codes_v = pncc if subset_C is None else pncc[np.asarray(subset_C)]
  n = len(codes_v)
  pos, det = np.zeros((n, 2)), np.zeros(n, bool)
  rows, cols = np.nonzero(mask)
  if rows.size < 3:
    return pos.astype(np.float32), det
  # 1. the nearest face pixel to each vertex code.
  _, p = cKDTree(dafi[rows, cols]).query(codes_v)
  x0 = np.stack([cols[p], rows[p]], -1)                 # (n, 2) integer pixel
  # 2.-3. the local fit; then once more around the pixel it points to, since the nearest code
  # is not always the nearest pixel where the field stretches one way more than the other.
  delta, resid, ok = _local_solve(dafi, mask, x0, codes_v, radius)
  h, w = mask.shape
  moved = np.clip(np.rint(x0 + delta).astype(int), 0, [w - 1, h - 1])
  moved = np.where((ok & mask[moved[:, 1], moved[:, 0]])[:, None], moved, x0)
  delta2, resid2, ok2 = _local_solve(dafi, mask, moved, codes_v, radius)
  better = ok2
  x0 = np.where(better[:, None], moved, x0)
  delta = np.where(better[:, None], delta2, delta)
  resid, ok = np.where(better, resid2, resid), ok | ok2
  # 4. the paper's threshold on the interpolated code, inside the fitted neighbourhood only.
  det = ok & (resid < max_dist) & (np.abs(delta).max(-1) <= radius + 0.5)
  pos[det] = x0[det] + delta[det]
  return pos.astype(np.float32), det
