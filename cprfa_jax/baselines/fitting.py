"""Baselines of §3.4 on the host: PnP (OpenCV) and online optimisation on the DAFI (Fig. 1a).

* `pnp_pose`: `cv2.solvePnP` on 2D-3D correspondences (the 68 landmarks of a detector, or the
  detected CPR vertices), with a camera far enough away that perspective is negligible, then
  converted to the weak-perspective pose of Eq. 2. Shape stays the mean (α = 0), as in the
  classical pipeline.
* `online_fit`: Levenberg-Marquardt over pose and the first identity/expression coefficients
  on all detected vertices, with a robust (soft-L1) loss and a Gaussian prior on α, started
  from the weak-perspective closed form. This is the approach of Fig. 1a made a good one.

Both return `pose_6` in normalised coordinates and α (K + E,).
"""

from __future__ import annotations

import cv2
import jax.numpy as jnp
import numpy as np
from scipy.optimize import least_squares

from cprfa_jax.geometry import projection
from cprfa_jax.mm.model import linear_shape, vertices

# Camera distance for PnP in units of the model (a face is ~1 wide): perspective effects are
# then below 1% and the pinhole camera behaves like Eq. 2's weak perspective.
PNP_DISTANCE = 100.0
_FLIP = np.diag([1.0, -1.0, -1.0])   # our camera (y up, z toward camera) <-> OpenCV's


def _rotation64(rx, ry, rz) -> np.ndarray:
  """`projection.rotation_matrix` in float64 NumPy: least_squares differentiates by finite
  differences, which float32 rotations would drown in rounding noise."""
  cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
  r_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
  r_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
  r_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
  return r_z @ r_y @ r_x


def affine_pose(points_3d_Nx3, points_2d_Nx2) -> np.ndarray | None:
  """Closed-form weak-perspective pose: least-squares affine camera, rows orthonormalised.
  Needs N >= 4 non-coplanar points. Returns pose_6, or None when the 2D points carry no scale
  (they coincide, e.g. a DAFI that matched several vertices to one pixel) or are not finite."""
  x = np.asarray(points_3d_Nx3, np.float64)
  y = np.asarray(points_2d_Nx2, np.float64)
  xc, yc = x - x.mean(0), y - y.mean(0)
  a, *_ = np.linalg.lstsq(xc, yc, rcond=None)          # (3, 2): y = x @ a
  p = a.T                                               # rows = s R[:2]
  s = np.sqrt(np.linalg.norm(p[0]) * np.linalg.norm(p[1]))
  if not np.isfinite(s) or s < 1e-9:    # p / s below would be NaN and the SVD would not converge
    return None
  u, _, vt = np.linalg.svd(p / s)
  r2 = u @ np.eye(2, 3) @ vt                            # nearest rows with orthonormal rows
  r = np.vstack([r2, np.cross(r2[0], r2[1])])
  angles = np.asarray(projection.euler_zyx(r))
  pose = np.concatenate([angles, [s], [0.0, 0.0]])
  t = y.mean(0) - np.asarray(projection.project(x.mean(0, keepdims=True), pose))[0]
  pose[4:] = t
  return pose


def pnp_pose(points_3d_Nx3, points_2d_Nx2) -> np.ndarray | None:
  """OpenCV PnP on normalised 2D points; None if it fails (< 4 points, degenerate points
  (`affine_pose`) or no solution)."""
  x = np.asarray(points_3d_Nx3, np.float64)
  y = np.asarray(points_2d_Nx2, np.float64)
  if len(x) < 4:
    return None
  init = affine_pose(x, y)
  if init is None:
    return None
  s = max(init[3], 1e-3)
  f = s * PNP_DISTANCE            # normalised image units: focal f at distance D gives scale s
  k = np.array([[f, 0, 0], [0, f, 0], [0, 0, 1.0]])
  # OpenCV's image y points down: flip ours.
  obs = np.stack([y[:, 0], -y[:, 1]], -1)
  rvec0, _ = cv2.Rodrigues(_FLIP @ _rotation64(*init[:3]))
  tvec0 = np.array([init[4] / s, -init[5] / s, PNP_DISTANCE])
  ok, rvec, tvec = cv2.solvePnP(x, obs, k, None, rvec0, tvec0, useExtrinsicGuess=True,
                                flags=cv2.SOLVEPNP_ITERATIVE)
  if not ok:
    return None
  tvec = np.reshape(tvec, 3)     # OpenCV 4 returns the guess's shape (3,), OpenCV 5 (3, 1)
  r = _FLIP @ cv2.Rodrigues(np.reshape(rvec, (3, 1)))[0]
  tz = float(tvec[2])
  scale = f / tz
  return np.concatenate([np.asarray(projection.euler_zyx(r)), [scale],
                         [scale * tvec[0], -scale * tvec[1]]])


def online_fit(model3d, y_obs_Vx2, detected_V, num_id=10, num_exp=5, prior=1.0,
               f_scale=0.02, max_nfev=60, max_points=500):
  """LM (trust-region reflective with a soft-L1 loss) over pose_6 and the first num_id / num_exp
  coefficients on the detected vertices, at most `max_points` of them (0: all). Returns
  (pose_6, alpha (K + E,)) or (None, None) when fewer than 6 vertices are detected or their
  positions are degenerate (`affine_pose`).

  The cap: sub-pixel decoding (`decode.subpixel`) detects thousands of vertices per face and the
  fit's cost grows with them while its accuracy does not (30 true synth-aflw DAFIs at 64 px,
  ~4200 detected per face: NME 1.46% with all, 1.46% with 1000, 1.47% with 500, at a tenth of
  the time); an even, deterministic subsample over the vertex order (which runs across the
  mesh) keeps the fit's spread of points."""
  det = np.flatnonzero(np.asarray(detected_V))
  if det.size < 6:
    return None, None
  if 0 < max_points < det.size:
    det = det[np.linspace(0, det.size - 1, max_points).round().astype(int)]
  y = np.asarray(y_obs_Vx2, np.float64)[det]
  mean = np.asarray(model3d.mean_Vx3, np.float64)[det]
  pose0 = affine_pose(mean, y)
  if pose0 is None:
    return None, None
  k, e = min(num_id, model3d.num_id), min(num_exp, model3d.num_exp)
  id_b = np.asarray(model3d.id_basis_KxVx3, np.float64)[:k, det]
  ex_b = np.asarray(model3d.exp_basis_ExVx3, np.float64)[:e, det]

  def residuals(z):
    pose, a = z[:6], z[6:]
    verts = linear_shape(mean, id_b, ex_b, a[:k], a[k:], xp=np)
    proj = pose[3] * verts @ _rotation64(*pose[:3]).T[:, :2] + pose[4:6]
    return np.concatenate([(proj - y).ravel(), np.sqrt(prior) * f_scale * a])

  sol = least_squares(residuals, np.concatenate([pose0, np.zeros(k + e)]), loss="soft_l1",
                      f_scale=f_scale, max_nfev=max_nfev, x_scale="jac", ftol=1e-10, xtol=1e-10,
                      gtol=1e-10)
  alpha = np.zeros(model3d.num_id + model3d.num_exp)
  alpha[:k] = sol.x[6:6 + k]
  alpha[model3d.num_id:model3d.num_id + e] = sol.x[6 + k:]
  return sol.x[:6], alpha


def landmarks_of(model3d, pose_6, alpha) -> np.ndarray:
  """The 68 landmarks (normalised coordinates) of a fitted model."""
  verts = vertices(model3d, alpha)
  return np.asarray(projection.project(verts[model3d.landmarks_68], jnp.asarray(pose_6, jnp.float32)))
