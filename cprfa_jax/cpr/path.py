"""Consistency-aware updating (§2.4): reprojection errors sampled along a predicted update.

For a predicted update Δφ of a parameter group, Eq. 6 samples 2M points on the path
{Δφ/M, 2Δφ/M, ..., 2Δφ}; each gives a projection Y_i^G and an error e_i = ||Y_i^G - Y^O|| over
κ of all the vertices the DAFI detected (not only the C of the CPR: "the wisdom of the crowd").
A small network maps [e_1 ... e_2M] to the step weight β in (0, 2) (Eq. 7, `models`).

Pure functions of arrays for one example; the 2M path points are evaluated with `jax.vmap`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cprfa_jax.numerics import safe_norm


def path_steps(m: int = 5) -> jnp.ndarray:
  """Eq. 6's multipliers of Δφ: k / M for k = 1 .. 2M. Returns (2M,)."""
  return jnp.arange(1, 2 * m + 1, dtype=jnp.float32) / m


def sample_vertices(key, detected_V, kappa: float, k_max: int):
  """κ of the detected vertices, chosen at random, in a fixed-size array for jit.

  Returns (indices (k_max,), valid (k_max,) bool): the first round(κ · #detected) entries
  (at least 1 when anything is detected, at most k_max) are valid, the rest padding.
  """
  det = jnp.asarray(detected_V, bool)
  scores = jnp.where(det, jax.random.uniform(key, det.shape), -1.0)
  _, idx = jax.lax.top_k(scores, k_max)
  n_det = jnp.sum(det)
  n = jnp.clip(jnp.round(kappa * n_det), jnp.minimum(n_det, 1), k_max)
  return idx, jnp.arange(k_max) < n


def reprojection_error(y_gen_Kx2, y_obs_Kx2, valid_K) -> jnp.ndarray:
  """Mean Euclidean distance over the valid points (0 if none). A generated point can land
  exactly on its observation (decoded positions sit on the pixel grid, and Λ_t's translation
  step aligns them), so the norm is `safe_norm`: zero gradient there, not NaN."""
  d = safe_norm(y_gen_Kx2 - y_obs_Kx2)
  return jnp.sum(jnp.where(valid_K, d, 0.0)) / jnp.maximum(jnp.sum(valid_K), 1)


def path_errors(project_fn, phi_P, delta_P, y_obs_Kx2, valid_K, m: int = 5) -> jnp.ndarray:
  """Eq. 6: errors e_1 .. e_2M along φ + (k/M) Δφ.

  project_fn: φ (P,) -> generated points (K, 2) of the sampled vertices, with every other
  parameter held at its current value. Returns (2M,).
  """
  def error_at(step):
    return reprojection_error(project_fn(phi_P + step * delta_P), y_obs_Kx2, valid_K)

  return jax.vmap(error_at)(path_steps(m))
