"""DAFI decoding (§2.1): from a densely annotated image to observed vertex positions.

A DAFI pixel carries the PNCC colour of the surface point it shows (the mean shape's x, y, z
normalised to [0, 1], `mm.model.pncc_code`). Each foreground pixel is matched to the vertex
with the nearest PNCC code; it counts for that vertex only if the distance is below 0.01 (the
paper's threshold, §3.3), and the observed position of a vertex is the mean of its pixels.

Two equivalent implementations:
* `decode_dafi_kdtree`: host side, `scipy.spatial.cKDTree` as the paper does; fastest for big
  models on a CPU.
* `decode_dafi`: pure JAX (jit / vmap-able), exact brute-force nearest neighbour in chunks of
  pixels, so it runs inside a compiled pipeline on an accelerator.

Positions are 0-based pixel coordinates (x = column, y = row); `geometry.from_pixels` turns them
into the normalised coordinates of Eq. 2.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial import cKDTree

MATCH_DIST = 0.01  # §3.3: "matched ... with an Euclidean distance smaller than 0.01"


def _check(dafi_HxWx3, mask_HxW):
  if dafi_HxWx3.ndim != 3 or dafi_HxWx3.shape[-1] != 3:
    raise ValueError(f"DAFI must be (H, W, 3) PNCC colours in [0, 1], got {dafi_HxWx3.shape}")
  if tuple(mask_HxW.shape) != tuple(dafi_HxWx3.shape[:2]):
    raise ValueError(f"mask {mask_HxW.shape} does not match DAFI {dafi_HxWx3.shape[:2]}")


def _average_per_vertex(vertex_P, matched_P, xy_Px2, num_vertices, subset_C):
  """Mean pixel position and detected flag of each subset vertex from per-pixel matches."""
  seg = jnp.where(matched_P, vertex_P, num_vertices)   # unmatched pixels go to a dump segment
  count = jax.ops.segment_sum(matched_P.astype(jnp.float32), seg, num_vertices + 1)
  total = jax.ops.segment_sum(jnp.where(matched_P[:, None], xy_Px2, 0.0), seg, num_vertices + 1)
  count_c, total_c = count[subset_C], total[subset_C]
  detected = count_c > 0
  pos = total_c / jnp.maximum(count_c, 1.0)[:, None]
  return jnp.where(detected[:, None], pos, 0.0), detected


def _pixel_grid(h, w):
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing="ij")
  return jnp.stack([xs, ys], -1).reshape(-1, 2)


@functools.partial(jax.jit, static_argnames=("chunk",))
def nearest_vertex(codes_Px3, pncc_Vx3, chunk: int = 0):
  """Exact nearest PNCC vertex of each code: (index (P,), distance (P,)).

  Brute force in chunks of `chunk` pixels so memory stays at chunk x V floats (default: about
  16M elements); the distance is recomputed exactly for the winner, so float32 cancellation in
  |a|^2 + |b|^2 - 2ab only matters for near-ties.
  """
  p, v = codes_Px3.shape[0], pncc_Vx3.shape[0]
  chunk = chunk or max(1, min(p, (1 << 24) // v))
  pad = (-p) % chunk
  codes = jnp.pad(codes_Px3, ((0, pad), (0, 0))).reshape(-1, chunk, 3)
  v_sq = jnp.sum(pncc_Vx3 * pncc_Vx3, -1)

  def one_chunk(c_Kx3):
    d2 = v_sq[None, :] - 2.0 * c_Kx3 @ pncc_Vx3.T     # |c|^2 is constant per row: dropped
    return jnp.argmin(d2, axis=-1)

  idx = jax.lax.map(one_chunk, codes).reshape(-1)[:p]
  dist = jnp.linalg.norm(codes_Px3 - pncc_Vx3[idx], axis=-1)
  return idx, dist


def decode_dafi(dafi_HxWx3, mask_HxW, pncc_Vx3, subset_C, max_dist: float = MATCH_DIST):
  """JAX DAFI decoding for one image. Returns (positions (C, 2) in pixels, detected (C,)).

  Undetected vertices get position (0, 0) and detected False. jit- and vmap-able (the subset
  and the PNCC table are ordinary array arguments).
  """
  dafi_HxWx3, mask_HxW = jnp.asarray(dafi_HxWx3, jnp.float32), jnp.asarray(mask_HxW, bool)
  _check(dafi_HxWx3, mask_HxW)
  h, w, _ = dafi_HxWx3.shape
  idx, dist = nearest_vertex(dafi_HxWx3.reshape(-1, 3), jnp.asarray(pncc_Vx3, jnp.float32))
  matched = mask_HxW.reshape(-1) & (dist < max_dist)
  return _average_per_vertex(idx, matched, _pixel_grid(h, w), pncc_Vx3.shape[0],
                             jnp.asarray(subset_C))


def build_pncc_tree(pncc_Vx3) -> cKDTree:
  """The KD-tree over the generic model's PNCC codes (§2.1); build once, reuse per image."""
  return cKDTree(np.asarray(pncc_Vx3, np.float64))


def decode_dafi_kdtree(dafi_HxWx3, mask_HxW, tree: cKDTree, subset_C,
                       max_dist: float = MATCH_DIST):
  """Host DAFI decoding with a KD-tree (`build_pncc_tree`). Same outputs as `decode_dafi`,
  as NumPy arrays."""
  dafi = np.asarray(dafi_HxWx3, np.float64)
  mask = np.asarray(mask_HxW, bool)
  _check(dafi, mask)
  rows, cols = np.nonzero(mask)
  subset = np.asarray(subset_C)
  pos = np.zeros((subset.size, 2))
  detected = np.zeros(subset.size, bool)
  if rows.size == 0:
    return pos.astype(np.float32), detected
  # Misses come back as dist = inf, idx = tree.n; the strict `<` is the paper's test.
  dist, idx = tree.query(dafi[rows, cols], distance_upper_bound=max_dist)
  ok = dist < max_dist
  v = tree.n
  count = np.bincount(idx[ok], minlength=v)
  sx = np.bincount(idx[ok], weights=cols[ok], minlength=v)
  sy = np.bincount(idx[ok], weights=rows[ok], minlength=v)
  c = count[subset]
  detected = c > 0
  pos[detected, 0] = sx[subset][detected] / c[detected]
  pos[detected, 1] = sy[subset][detected] / c[detected]
  return pos.astype(np.float32), detected
