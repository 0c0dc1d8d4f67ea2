"""Numerical guards shared by the differentiable code (the kernels, Eq. 6's path errors, the fit
loss): functions that are exact where they are smooth and have a finite (sub)gradient at their
singular points, because a parameter update can always reach those points.

A zero-length vector under a Euclidean norm is the one that bites here: ||v|| has the derivative
v / ||v||, which is 0/0 at v = 0, and a NaN gradient anywhere in a batch reaches every weight
(even from an entry a later `where` discards: 0 * NaN = NaN). Issue 9's CAPU NaN was exactly
this, at a generated point that landed on its observed pixel.
"""

from __future__ import annotations

import jax.numpy as jnp

# Below this a distance counts as zero (normalised image units: a face is ~1 wide).
EPS = 1e-6


def safe_norm(v, axis=-1, eps: float = EPS):
  """||v|| along `axis`, with 0 (value and gradient) where ||v|| <= eps. The inner `where` keeps
  the untaken branch's sqrt away from 0, so its gradient is never 0 * inf."""
  sq = jnp.sum(v * v, axis=axis)
  ok = sq > eps * eps
  return jnp.where(ok, jnp.sqrt(jnp.where(ok, sq, 1.0)), 0.0)
