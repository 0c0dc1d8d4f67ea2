"""The CPR kernels of §2.2 and the network inputs of Eq. 4, for one example.

Each kernel maps one channel's point set (N, 2) (normalised image coordinates, see
`geometry.projection`) and its detection flags (N,) to an N x N matrix (Eq. 3). An undetected
vertex makes every entry that involves it exactly zero (§2.2: "If vertex i is not observable on
DAFI, the values of all the related kernels are set to zero"); the generated CPR Λ^G uses the
observed flags too, so that Λ^G - Λ^O is zero wherever the observation is missing.

Everything is written for one example; `cpr_inputs` handles the three channels and is batched
with `jax.vmap` by the caller (`batched_cpr_inputs`). Norms are "safe" (zero vector -> zero norm
with finite gradients) because coincident points are legal input and gradients flow through
Λ^G into the parameters being regressed.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from cprfa_jax.numerics import EPS, safe_norm as _safe_norm


def _unit(v):
  n = _safe_norm(v)
  return v / jnp.where(n > 0, n, 1.0)[..., None]


def pair_mask(detected_N) -> jnp.ndarray:
  """(N, N) True where both vertices i and j are detected."""
  d = jnp.asarray(detected_N, bool)
  return d[:, None] & d[None, :]


def kernel_t(y_obs_Nx2, y_gen_Nx2, detected_N) -> jnp.ndarray:
  """Λ_t: φ_ij = y_i^O - y_j^G, for x and y. Returns (2, N, N)."""
  phi = y_obs_Nx2[:, None, :] - y_gen_Nx2[None, :, :]
  return jnp.where(pair_mask(detected_N)[None], jnp.moveaxis(phi, -1, 0), 0.0)


def kernel_s(y_Nx2, detected_N) -> jnp.ndarray:
  """Λ_s: φ_ij = ||y_i - y_j||. Invariant to t. Returns (N, N)."""
  d = _safe_norm(y_Nx2[:, None, :] - y_Nx2[None, :, :])
  return jnp.where(pair_mask(detected_N), d, 0.0)


def kernel_rz(y_Nx2, detected_N) -> jnp.ndarray:
  """Λ_rz: the signed sine of the angle from the image x-axis to the vector y_j - y_i.

  Why this origin: the paper's φ = ||y_i x y_j|| / (||y_i|| ||y_j||) with y measured from the
  image origin changes with t, and with y measured from any point that moves with the face (the
  centroid, say) it becomes blind to r_z, since rotating both vectors keeps the angle between
  them. Taking each pair's own vector y_j - y_i (origin at vertex i) and the fixed image x-axis
  as the other vector makes φ invariant to t and s (s > 0) while an in-plane rotation by Δr_z
  turns every angle by Δr_z. The sine (not the cosine) keeps the sign: clockwise and
  counter-clockwise rotations differ, which is the paper's reason for it. Coincident points and
  the diagonal give 0. Returns (N, N), antisymmetric.
  """
  e = y_Nx2[None, :, :] - y_Nx2[:, None, :]              # e_ij = y_j - y_i
  n = _safe_norm(e)
  sin = e[..., 1] / jnp.where(n > 0, n, 1.0)
  return jnp.where(pair_mask(detected_N) & (n > 0), sin, 0.0)


def third_vertex(n: int) -> jnp.ndarray:
  """k(i, j) of Λ_rxy for each cell: k = (j + 1) mod N.

  Fixed by the index j alone, so column j always measures the turn at vertex j towards the
  same neighbour k; k != j for N > 1, and since channel orders are shuffled (§2.2) the
  neighbour is a random vertex of the channel rather than a spatial neighbour. Returns (N,).
  """
  return (jnp.arange(n) + 1) % n


def kernel_rxy(y_Nx2, detected_N) -> jnp.ndarray:
  """Λ_rxy: φ_ijk = unit(y_i - y_j) . unit(y_j - y_k), k = `third_vertex`. Invariant to t, s
  (s > 0) and r_z. An entry is zero if any of i, j, k is undetected. Returns (N, N)."""
  n = y_Nx2.shape[0]
  k = third_vertex(n)
  u_ij = _unit(y_Nx2[:, None, :] - y_Nx2[None, :, :])    # (N, N, 2)
  u_jk = _unit(y_Nx2 - y_Nx2[k])                          # (N, 2), one per column j
  phi = jnp.sum(u_ij * u_jk[None, :, :], axis=-1)
  det = jnp.asarray(detected_N, bool)
  return jnp.where(pair_mask(det) & det[k][None, :], phi, 0.0)


def scale_ratio(lam_s_gen_NxN, lam_s_obs_NxN, pair_mask_NxN) -> jnp.ndarray:
  """Eq. 4's Λ_s^G / Λ_s^O made safe: 0 where a vertex is missing, 1 where the observed
  distance vanishes (the diagonal, or coincident observed points: no scale information)."""
  ok = pair_mask_NxN & (lam_s_obs_NxN > EPS)
  ratio = lam_s_gen_NxN / jnp.where(ok, lam_s_obs_NxN, 1.0)
  return jnp.where(ok, ratio, jnp.where(pair_mask_NxN, 1.0, 0.0))


class CprInputs(NamedTuple):
  """The inputs of the regressors in Eq. 4, each with 3 channels of N x N (§2.2)."""
  rxy: jnp.ndarray   # (3, N, N)  Λ_rxy^G - Λ_rxy^O  (for α and [r_x, r_y])
  rz: jnp.ndarray    # (3, N, N)  Λ_rz^G - Λ_rz^O
  s: jnp.ndarray     # (3, N, N)  Λ_s^G / Λ_s^O
  t: jnp.ndarray     # (3, 2, N, N)  Λ_t (x and y)


def channel_cpr(y_obs_Nx2, y_gen_Nx2, detected_N) -> CprInputs:
  """All Eq. 4 inputs for one channel (no leading channel axis)."""
  pm = pair_mask(detected_N)
  return CprInputs(
      rxy=kernel_rxy(y_gen_Nx2, detected_N) - kernel_rxy(y_obs_Nx2, detected_N),
      rz=kernel_rz(y_gen_Nx2, detected_N) - kernel_rz(y_obs_Nx2, detected_N),
      s=scale_ratio(kernel_s(y_gen_Nx2, detected_N), kernel_s(y_obs_Nx2, detected_N), pm),
      t=kernel_t(y_obs_Nx2, y_gen_Nx2, detected_N))


def cpr_inputs(y_obs_Cx2, y_gen_Cx2, detected_C, layout_3xN) -> CprInputs:
  """Eq. 4 inputs for one example.

  y_obs_Cx2: observed positions of the C selected vertices (from the DAFI), y_gen_Cx2: their
  positions generated by the current parameters (Eq. 2), detected_C: observation flags,
  layout_3xN: for each channel the indices (into C) of its N vertices (`cpr.layout`).
  """
  take = lambda a: jnp.asarray(a)[layout_3xN]
  return jax.vmap(channel_cpr)(take(y_obs_Cx2), take(y_gen_Cx2), take(detected_C))


# One compiled function for a batch: (B, C, 2), (B, C, 2), (B, C), shared layout (3, N).
batched_cpr_inputs = jax.jit(jax.vmap(cpr_inputs, in_axes=(0, 0, 0, None)))


def translation_from_cpr(t_3x2xNxN) -> jnp.ndarray:
  """§3.2's translation estimate: the mean of the non-zero entries of Λ_tx and Λ_ty.

  With every other parameter right, Λ_t,ij = y_i^G + Δt - y_j^G and the mean over the detected
  pairs is Δt: the result is the correction to add to the current t. Returns (2,); zero when
  nothing is detected.
  """
  t = jnp.moveaxis(t_3x2xNxN, 1, 0).reshape(2, -1)
  nz = t != 0
  return jnp.sum(t, axis=1) / jnp.maximum(jnp.sum(nz, axis=1), 1)
