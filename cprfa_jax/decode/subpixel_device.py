"""`decode.subpixel`'s sub-pixel decoding in pure JAX (jit / vmap-able), for the device: the same
four steps on every vertex, in float32.

1. the nearest face pixel to each vertex code: brute force over the pixels, in chunks of
   vertices (`chunk` x H·W distances at a time; V x H·W work, fine on an accelerator and at
   64 px on a CPU);
2. the local affine fit of the PNCC field at every pixel, from shifted copies of the image
   (the (2r+1)^2 neighbourhood sums of the normal equations), inverted by the adjugate;
3. the 2 x 2 solve for each vertex at its pixel, and once more at the pixel it points to
   (`decode.subpixel.solve_offsets`, the host version's, on jax.numpy);
4. the threshold on the interpolated code, inside the fitted neighbourhood.

Guards as in the host version: a singular neighbourhood or a flat field leaves the vertex
undetected; every division has a denominator kept away from zero in both `where` branches, so
no NaN is formed even where it would not be taken.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from cprfa_jax.decode.pixel import MATCH_DIST, check_inputs
from cprfa_jax.decode.subpixel import solve_offsets

_DET_FLOOR = 1e-6        # float32: relative floors of the 3 x 3 and 2 x 2 determinants


def _nearest_pixel(codes_Px3, face_P, pncc_Vx3, chunk):
  """Index (V,) of the nearest face pixel's code to each vertex code."""
  v = pncc_Vx3.shape[0]
  n_chunks = -(-v // chunk)
  padded = jnp.pad(pncc_Vx3, ((0, n_chunks * chunk - v), (0, 0)))
  sq_p = jnp.sum(codes_Px3 ** 2, -1)

  def one(c_Kx3):
    # |c - p|^2 = |c|^2 - 2 c.p + |p|^2; |c|^2 is constant per row and dropped for the argmin.
    d = sq_p[None, :] - 2.0 * c_Kx3 @ codes_Px3.T
    return jnp.argmin(jnp.where(face_P[None, :], d, jnp.inf), axis=1)

  return jax.lax.map(one, padded.reshape(n_chunks, chunk, 3)).reshape(-1)[:v]


def _pixel_fits(dafi_HxWx3, mask_HxW, radius):
  """Per pixel: c0 (P, 3), Jᵀ (P, 2, 3) and whether the fit exists (P,)."""
  h, w = mask_HxW.shape
  m = jnp.pad(mask_HxW.astype(jnp.float32), radius)
  c = jnp.pad(dafi_HxWx3, ((radius, radius), (radius, radius), (0, 0)))
  s = {k: jnp.zeros((h, w)) for k in ("1", "x", "y", "xx", "xy", "yy")}
  t = {k: jnp.zeros((h, w, 3)) for k in ("1", "x", "y")}
  for dy in range(-radius, radius + 1):
    for dx in range(-radius, radius + 1):
      wk = m[radius + dy:radius + dy + h, radius + dx:radius + dx + w]
      ck = c[radius + dy:radius + dy + h, radius + dx:radius + dx + w] * wk[..., None]
      for k, f in (("1", 1), ("x", dx), ("y", dy), ("xx", dx * dx), ("xy", dx * dy),
                   ("yy", dy * dy)):
        s[k] = s[k] + f * wk
      for k, f in (("1", 1), ("x", dx), ("y", dy)):
        t[k] = t[k] + f * ck
  # The symmetric normal matrix [[n, sx, sy], [sx, sxx, sxy], [sy, sxy, syy]] by its adjugate.
  n, sx, sy, sxx, sxy, syy = (s[k].reshape(-1) for k in ("1", "x", "y", "xx", "xy", "yy"))
  a00, a01, a02 = sxx * syy - sxy ** 2, sy * sxy - sx * syy, sx * sxy - sy * sxx
  a11, a12, a22 = n * syy - sy ** 2, sx * sy - n * sxy, n * sxx - sx ** 2
  det = n * a00 + sx * a01 + sy * a02
  fitted = (mask_HxW.reshape(-1)) & (jnp.abs(det) > 0.5)   # an integer >= 1, or 0 if collinear
  inv = jnp.stack([jnp.stack([a00, a01, a02], -1), jnp.stack([a01, a11, a12], -1),
                   jnp.stack([a02, a12, a22], -1)], -2) / jnp.where(fitted, det, 1.0)[:, None, None]
  rhs = jnp.stack([t[k].reshape(-1, 3) for k in ("1", "x", "y")], 1)   # (P, 3, 3)
  coef = inv @ rhs
  return coef[:, 0], coef[:, 1:], fitted


def _solve(c0, jac_t, fitted, codes_v):
  return solve_offsets(c0, jac_t, fitted, codes_v, jnp, _DET_FLOOR, 1e-20)


@functools.partial(jax.jit, static_argnames=("radius", "chunk"))
def decode_all_subpixel(dafi_HxWx3, mask_HxW, pncc_Vx3, max_dist: float = MATCH_DIST,
                        radius: int = 1, chunk: int = 0):
  """Every vertex's sub-pixel position (V, 2) float32 pixels and detected (V,) — the contract
  of `decode.subpixel.decode_dafi_subpixel` with subset None. chunk: vertices per distance
  block (0: about 2^22 distances per block)."""
  check_inputs(dafi_HxWx3, mask_HxW)
  if radius < 1:
    raise ValueError(f"radius={radius}: the local fit needs a neighbourhood, use radius >= 1")
  h, w = mask_HxW.shape
  dafi = jnp.asarray(dafi_HxWx3, jnp.float32)
  mask = jnp.asarray(mask_HxW, bool)
  pncc = jnp.asarray(pncc_Vx3, jnp.float32)
  chunk = chunk or max(1, min(pncc.shape[0], (1 << 22) // (h * w)))
  face = mask.reshape(-1)
  p = _nearest_pixel(dafi.reshape(-1, 3), face, pncc, chunk)
  c0, jac_t, fitted = _pixel_fits(dafi, mask, radius)
  delta, resid, ok = _solve(c0[p], jac_t[p], fitted[p], pncc)
  x0 = jnp.stack([p % w, p // w], -1)
  moved = jnp.clip(jnp.round(x0 + delta).astype(jnp.int32), 0, jnp.array([w - 1, h - 1]))
  q = moved[:, 1] * w + moved[:, 0]
  again = ok & face[q] & (q != p)
  d2, r2, ok2 = _solve(c0[q], jac_t[q], fitted[q], pncc)
  take = again & ok2
  x0 = jnp.where(take[:, None], moved, x0)
  delta = jnp.where(take[:, None], d2, delta)
  resid = jnp.where(take, r2, resid)
  det = ok & jnp.any(face) & (resid < max_dist) & (jnp.max(jnp.abs(delta), -1) <= radius + 0.5)
  pos = jnp.where(det[:, None], x0.astype(jnp.float32) + delta, 0.0)
  return pos, det
