"""Consistency-aware updating (§2.4): reprojection errors sampled along a predicted update.

For a predicted update Δφ of a parameter group, Eq. 6 samples 2M points on the path
{Δφ/M, 2Δφ/M, ..., 2Δφ}; each gives a projection Y_i^G and an error e_i = ||Y_i^G - Y^O|| over
κ of all the vertices the DAFI detected (not only the C of the CPR: "the wisdom of the crowd").
A small network maps [e_1 ... e_2M] to the step weight β in (0, 2) (Eq. 7, `models`).

κ's sample has a data-dependent size, round(κ · #detected), so it lives in a fixed-size array
for jit. `sample_bound` sizes that array from the model: #detected <= V, so ceil(κ · V) slots
always hold the whole sample (the paper's ~1.4k of the BFM's 53k vertices at ~26% detected,
§3.2's κ = 0.1). A smaller explicit cap is allowed (small configs, for speed) and reported.

Pure functions of arrays for one example; the 2M path points are evaluated with `jax.vmap`.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from cprfa_jax.numerics import safe_norm


def path_steps(m: int = 5) -> jnp.ndarray:
  """Eq. 6's multipliers of Δφ: k / M for k = 1 .. 2M. Returns (2M,)."""
  return jnp.arange(1, 2 * m + 1, dtype=jnp.float32) / m


class SampleBound(NamedTuple):
  """The static size of κ's sample. k_max: the array size `sample_vertices` gets; needed:
  ceil(κ · V), the most it can ever be asked for; capped: k_max < needed, i.e. an explicit
  max_sampled cuts κ · #detected short on images with more than k_max / κ detected vertices."""
  k_max: int
  needed: int
  capped: bool


def sample_bound(kappa: float, num_vertices: int,
                 max_sampled: Optional[int] = None) -> SampleBound:
  """The bound on κ's sample for a model of `num_vertices` vertices.

  max_sampled None or 0: derived, k_max = ceil(κ · V), so the sample is always κ · #detected.
  A positive max_sampled is a cap: k_max = min(max_sampled, ceil(κ · V)), `capped` when it
  is below ceil(κ · V).
  """
  if not 0 < kappa <= 1:
    raise ValueError(f"kappa={kappa} must be in (0, 1]")
  if num_vertices < 1:
    raise ValueError(f"num_vertices={num_vertices} must be >= 1")
  if max_sampled is not None and max_sampled < 0:
    raise ValueError(f"max_sampled={max_sampled} must be >= 0 (0 or None: ceil(kappa * V))")
  needed = max(1, math.ceil(kappa * num_vertices))
  if not max_sampled:
    return SampleBound(needed, needed, False)
  return SampleBound(min(max_sampled, needed), needed, max_sampled < needed)


def sample_vertices(key, detected_V, kappa: float, k_max: int):
  """κ of the detected vertices, chosen at random without replacement, in a fixed-size array.

  Returns (indices (k_max,), valid (k_max,) bool): the first round(κ · #detected) entries
  (at least 1 when anything is detected) are valid, the rest padding. k_max is static
  (`sample_bound`); with k_max >= ceil(κ · V) the count is never cut, below it it is clipped.
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
