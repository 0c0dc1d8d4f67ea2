"""The online LM baseline (`fitting.online_fit`) as one jitted, vmapped JAX function: a batch of
faces fitted at once on the device, instead of scipy's `least_squares` one face at a time on the
host (benchmarks/study_cost.py: the host fit is ~80% of the robustness study's fitting time).

The problem is the host fit's: pose_6 and the first num_id / num_exp coefficients, fitted to at
most `max_points` detected vertices (the same even subsample) with a soft-L1 loss and a Gaussian
prior on α, from the same closed-form start (`fitting.affine_pose`, on the host: it is cheap).
The solver differs: a fixed number of Levenberg-Marquardt steps with iteratively reweighted
Gauss-Newton for the robust loss (soft-L1's ρ'(z) = (1 + z)^-1/2 > 0 as weights), Marquardt's
diagonal scaling (scipy's x_scale="jac"), a step taken only if it lowers the robust cost, and
an exact Jacobian (autodiff) in float32 where scipy differentiates float64 by finite differences.

Faces are padded to `max_points` with zero-weight points, so one compilation serves any number
of detections per face.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from cprfa_jax.baselines import fitting
from cprfa_jax.geometry import projection
from cprfa_jax.mm.model import linear_shape

DAMP_FLOOR = 1e-6      # relative floor of Marquardt's diagonal: a parameter no point moves
                       # (a zero Jacobian column) still gets a positive pivot


def _soft_l1(z):
  """scipy's soft_l1 ρ(z) = 2 (sqrt(1 + z) - 1) and its derivative, z = (r / f_scale)^2 >= 0."""
  root = jnp.sqrt(1.0 + z)
  return 2.0 * (root - 1.0), 1.0 / root


def _residuals(z_Z, y_Px2, w_P, mean_Px3, id_KxPx3, ex_ExPx3, prior, f_scale):
  k = id_KxPx3.shape[0]
  a = z_Z[6:]
  verts = linear_shape(mean_Px3, id_KxPx3, ex_ExPx3, a[:k], a[k:])   # Eq. 1 on the P points
  proj = projection.project(verts, z_Z[:6])                    # Eq. 2, weak perspective
  # Padding points have w = 0: no residual, no weight in the normal equations.
  r = ((proj - y_Px2) * jnp.sqrt(w_P)[:, None]).reshape(-1)
  return jnp.concatenate([r, jnp.sqrt(prior) * f_scale * a])


def _lm_one(z0_Z, y_Px2, w_P, mean_Px3, id_KxPx3, ex_ExPx3, prior, f_scale, num_iter):
  res = functools.partial(_residuals, y_Px2=y_Px2, w_P=w_P, mean_Px3=mean_Px3,
                          id_KxPx3=id_KxPx3, ex_ExPx3=ex_ExPx3, prior=prior, f_scale=f_scale)

  def cost(z):
    rho, _ = _soft_l1((res(z) / f_scale) ** 2)
    return 0.5 * f_scale ** 2 * jnp.sum(rho)

  def step(carry, _):
    z, lam, c = carry
    r = res(z)
    jac = jax.jacfwd(res)(z)                                     # (R, Z)
    _, wts = _soft_l1((r / f_scale) ** 2)                        # IRLS weights of soft-L1
    jtj = jac.T @ (wts[:, None] * jac)
    g = jac.T @ (wts * r)
    d = jnp.diag(jtj)
    d = jnp.maximum(d, DAMP_FLOOR * jnp.max(d) + 1e-30)          # never a zero pivot
    delta = -jnp.linalg.solve(jtj + lam * jnp.diag(d), g)
    z_new = z + delta
    c_new = cost(z_new)
    better = jnp.isfinite(c_new) & (c_new < c)
    return (jnp.where(better, z_new, z), jnp.where(better, lam / 3.0, lam * 2.0),
            jnp.where(better, c_new, c)), None

  (z, _, c), _ = jax.lax.scan(step, (z0_Z, jnp.float32(1e-3), cost(z0_Z)), None, length=num_iter)
  return z, c


@functools.partial(jax.jit, static_argnames=("num_iter",))
def lm_batch(z0_BxZ, y_BxPx2, w_BxP, mean_BxPx3, id_BxKxPx3, ex_BxExPx3, prior=1.0, f_scale=0.02,
             num_iter=30):
  """The LM fits of B faces at once: (z_BxZ, robust cost_B), z = [pose_6, α_id[:K], α_exp[:E]]."""
  return jax.vmap(_lm_one, in_axes=(0, 0, 0, 0, 0, 0, None, None, None))(
      z0_BxZ, y_BxPx2, w_BxP, mean_BxPx3, id_BxKxPx3, ex_BxExPx3, prior, f_scale, num_iter)


def online_fit_batch(model3d, y_obs_BxVx2, detected_BxV, num_id=10, num_exp=5, prior=1.0,
                     f_scale=0.02, max_points=500, num_iter=30):
  """`fitting.online_fit` for a batch: lists of pose_6 and α (K + E,), None for a face with
  fewer than 6 detected vertices or degenerate positions (as the host fit)."""
  if max_points <= 0:
    raise ValueError(f"max_points={max_points}: the batched fit pads to a fixed size; give one")
  k, e = min(num_id, model3d.num_id), min(num_exp, model3d.num_exp)
  mean = np.asarray(model3d.mean_Vx3, np.float32)
  id_b = np.asarray(model3d.id_basis_KxVx3, np.float32)[:k]
  ex_b = np.asarray(model3d.exp_basis_ExVx3, np.float32)[:e]
  rows, ok = [], []
  for y, detected in zip(np.asarray(y_obs_BxVx2, np.float32), np.asarray(detected_BxV, bool)):
    det = np.flatnonzero(detected)
    if det.size > max_points:                      # the host fit's even subsample
      det = det[np.linspace(0, det.size - 1, max_points).round().astype(int)]
    pose0 = fitting.affine_pose(mean[det], y[det]) if det.size >= 6 else None
    ok.append(pose0 is not None)
    idx = np.zeros(max_points, int)
    idx[:det.size] = det
    w = (np.arange(max_points) < det.size).astype(np.float32)
    z0 = np.concatenate([pose0 if pose0 is not None else [0, 0, 0, 1, 0, 0], np.zeros(k + e)])
    rows.append((z0, y[idx], w, mean[idx], id_b[:, idx], ex_b[:, idx]))
  z, _ = lm_batch(*(jnp.asarray(np.stack(col), jnp.float32) for col in zip(*rows)),
                  prior=prior, f_scale=f_scale, num_iter=num_iter)
  z = np.asarray(z, np.float64)
  poses, alphas = [], []
  for zi, good in zip(z, ok):
    if not good:
      poses.append(None)
      alphas.append(None)
      continue
    alpha = np.zeros(model3d.num_id + model3d.num_exp)
    alpha[:k] = zi[6:6 + k]
    alpha[model3d.num_id:model3d.num_id + e] = zi[6 + k:]
    poses.append(zi[:6])
    alphas.append(alpha)
  return poses, alphas
