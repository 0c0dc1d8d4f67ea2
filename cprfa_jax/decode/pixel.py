"""DAFI decoding (§2.1): from a densely annotated image to observed vertex positions.

A DAFI pixel carries the PNCC colour of the surface point it shows (the mean shape's x, y, z
normalised to [0, 1], `mm.model.pncc_code`). Each foreground pixel is matched to the vertex
with the nearest PNCC code; it counts for that vertex only if the distance is below 0.01 (the
paper's threshold, §3.3), and the observed position of a vertex is the mean of its pixels.

Three implementations, one contract (undetected vertices: position (0, 0), detected False):
* `decode_all_grid` with `build_pncc_grid`: pure JAX (jit / vmap-able), exact nearest code
  among the vertices of the 27 uniform-grid cells around each pixel's code. The one to use on
  the device, e.g. inside a compiled image-to-face function; decodes every vertex.
* `decode_dafi_kdtree` with `build_pncc_tree`: host side, `scipy.spatial.cKDTree` as the paper
  does, queried at mask pixels only; fastest on a CPU outside jit, and the parity reference.
* `decode_dafi`: pure JAX brute force over all V codes per pixel (V x H x W work, and float32
  cancellation makes it pick a near-tied neighbour for ~2% of pixels). Kept as the simplest
  reference and for small models; not for the paper's sizes.
`benchmarks/decode_speed.py` measures all three.

Positions are 0-based pixel coordinates (x = column, y = row); `geometry.from_pixels` turns them
into the normalised coordinates of Eq. 2.
"""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial import cKDTree

MATCH_DIST = 0.01  # §3.3: "matched ... with an Euclidean distance smaller than 0.01"


def check_inputs(dafi_HxWx3, mask_HxW):
  if dafi_HxWx3.ndim != 3 or dafi_HxWx3.shape[-1] != 3:
    raise ValueError(f"DAFI must be (H, W, 3) PNCC colours in [0, 1], got {dafi_HxWx3.shape}")
  if tuple(mask_HxW.shape) != tuple(dafi_HxWx3.shape[:2]):
    raise ValueError(f"mask {mask_HxW.shape} does not match DAFI {dafi_HxWx3.shape[:2]}")


def _average_per_vertex(vertex_P, matched_P, xy_Px2, num_vertices, subset_C=None):
  """Mean pixel position and detected flag of each subset vertex (all V if `subset_C` is None)
  from per-pixel matches."""
  seg = jnp.where(matched_P, vertex_P, num_vertices)   # unmatched pixels go to a dump segment
  count = jax.ops.segment_sum(matched_P.astype(jnp.float32), seg, num_vertices + 1)
  total = jax.ops.segment_sum(jnp.where(matched_P[:, None], xy_Px2, 0.0), seg, num_vertices + 1)
  if subset_C is None:
    count_c, total_c = count[:num_vertices], total[:num_vertices]
  else:
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
  check_inputs(dafi_HxWx3, mask_HxW)
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
  check_inputs(dafi, mask)
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


# --- Uniform grid over the PNCC cube: exact nearest code among the 27 cells around a pixel ----

# Cells get a side of at least max_dist * (1 + _CELL_MARGIN), not just max_dist: the margin absorbs
# float32 rounding in code * G and in the device's distance, so the 27-cell argument in
# `build_pncc_grid` holds for the computed numbers too, not only for real ones.
_CELL_MARGIN = 1e-4
_MAX_CELLS_PER_AXIS = 128          # 2.1M cells, 8 MiB of offsets; coarser cells stay exact
_ROWS_9x2 = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 2, indexing="ij"), -1).reshape(9, 2)


@flax.struct.dataclass
class PnccGrid:
  """The model's PNCC codes bucketed in a G x G x G grid over [0, 1]^3 (`build_pncc_grid`).

  The vertices of cell (i, j, k), linear index c = (i * G + j) * G + k, are
  sorted_vertex[cell_start[c]:cell_start[c + 1]], at most `capacity` of them. Cells k - 1, k,
  k + 1 of one (i, j) row are consecutive in that order, so the 27 cells around a code are 9
  contiguous runs of slots, each of at most `row_capacity` vertices: the decoder reads those.
  """
  cell_start: jax.Array      # (G^3 + 1,) int32 CSR offsets into sorted_vertex
  sorted_vertex: jax.Array   # (V,) int32 vertex indices sorted by cell
  pncc_Vx3: jax.Array        # (V, 3) float32 codes, so decoding needs only the grid
  cells_per_axis: int = flax.struct.field(pytree_node=False)
  capacity: int = flax.struct.field(pytree_node=False)       # max vertices in one cell
  row_capacity: int = flax.struct.field(pytree_node=False)   # max in 3 consecutive cells of a row
  max_dist: float = flax.struct.field(pytree_node=False)


def _cells(codes_Nx3, g, xp):
  """Per-axis cell of each code: clip(floor(code * G), 0, G - 1), in float32 on host and device
  alike. Clipping in float first keeps huge or non-finite codes from overflowing the cast."""
  scaled = xp.floor(codes_Nx3 * xp.float32(g))
  return xp.clip(scaled, 0, g - 1).astype(xp.int32)


def build_pncc_grid(pncc_Vx3, max_dist: float = MATCH_DIST) -> PnccGrid:
  """The uniform grid over the generic model's PNCC codes (V, 3) in [0, 1]; build once on the
  host, pass to `decode_all_grid` (as an argument, or closed over as a constant).

  Why the 27 cells around a query's cell hold every vertex within max_dist of it, for any query
  code (U-Net outputs outside [0, 1] included): per axis, |q - p| < max_dist < 1 / G gives
  |q G - p G| < 1, so floor(q G) and floor(p G) differ by at most 1; clipping both to
  [0, G - 1] is monotone and never widens a gap, so the clipped cells still differ by at most 1.
  A code of exactly 1.0 (floor gives G) and a code beyond the cube are clipped into the edge
  cell like that, and the vertex is in the query's cell or one of its neighbours on each axis.
  Rounding: G = floor(1 / (max_dist (1 + 1e-4))), so a match (float32 distance < max_dist, i.e.
  a true per-axis gap below max_dist (1 + 1e-6)) is less than 1 - 9e-5 cells apart; the
  vertices' codes lie in [0, 1] and a query with a coordinate outside [-1, 2] matches nothing,
  so the float32 error in q G - p G is below 3 G 2^-24 <= 2.3e-5 cells, inside that slack.
  G is capped at 128 (max_dist < 0.0078): bigger cells only cost candidates, not exactness.
  """
  pncc = np.asarray(pncc_Vx3, np.float32)
  if pncc.ndim != 2 or pncc.shape[-1] != 3 or pncc.shape[0] == 0:
    raise ValueError(f"PNCC codes must be (V, 3) with V >= 1, got {pncc.shape}")
  if not (np.isfinite(pncc).all() and pncc.min() >= 0 and pncc.max() <= 1):
    raise ValueError(f"PNCC codes must lie in [0, 1] (`mm.model.pncc_code`), got the range "
                     f"[{np.nanmin(pncc)}, {np.nanmax(pncc)}]")
  if not max_dist > 0:
    raise ValueError(f"max_dist must be positive, got {max_dist}")
  g = int(np.clip(np.floor(1.0 / (max_dist * (1.0 + _CELL_MARGIN))), 1, _MAX_CELLS_PER_AXIS))
  cell_Vx3 = _cells(pncc, g, np)
  cell_V = (cell_Vx3[:, 0].astype(np.int64) * g + cell_Vx3[:, 1]) * g + cell_Vx3[:, 2]
  counts = np.bincount(cell_V, minlength=g ** 3)
  row_GxGxG = np.pad(counts.reshape(g, g, g), ((0, 0), (0, 0), (1, 1)))
  row_counts = row_GxGxG[..., :-2] + row_GxGxG[..., 1:-1] + row_GxGxG[..., 2:]
  cell_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
  sorted_vertex = np.argsort(cell_V, kind="stable").astype(np.int32)
  return PnccGrid(cell_start=jnp.asarray(cell_start), sorted_vertex=jnp.asarray(sorted_vertex),
                  pncc_Vx3=jnp.asarray(pncc), cells_per_axis=g, capacity=int(counts.max()),
                  row_capacity=int(row_counts.max()),
                  max_dist=float(max_dist))


def _grid_nearest(codes_Kx3, grid: PnccGrid, sorted_codes_3xV):
  """Nearest vertex among the 27 cells around each code: (vertex (K,), distance (K,)); the
  distance is the norm of the difference, so near-ties are decided without cancellation."""
  g, cap = grid.cells_per_axis, grid.row_capacity
  cell_Kx3 = _cells(codes_Kx3, g, jnp)
  ij_Kx9x2 = cell_Kx3[:, None, :2] + _ROWS_9x2                # the 9 (i, j) rows around
  inside_Kx9 = jnp.all((ij_Kx9x2 >= 0) & (ij_Kx9x2 < g), -1)   # out-of-range rows: skipped
  row_Kx9 = jnp.where(inside_Kx9, (ij_Kx9x2[..., 0] * g + ij_Kx9x2[..., 1]) * g, 0)
  k_Kx1 = cell_Kx3[:, 2:]
  lo_Kx9 = grid.cell_start[row_Kx9 + jnp.maximum(k_Kx1 - 1, 0)]        # cells k-1 .. k+1,
  hi_Kx9 = grid.cell_start[row_Kx9 + jnp.minimum(k_Kx1 + 1, g - 1) + 1]  # those in range
  count_Kx9 = jnp.where(inside_Kx9, hi_Kx9 - lo_Kx9, 0)
  offset_C = jnp.arange(cap, dtype=jnp.int32)
  valid_KxS = (offset_C < count_Kx9[..., None]).reshape(codes_Kx3.shape[0], -1)
  slot_KxS = jnp.where(valid_KxS, (lo_Kx9[..., None] + offset_C).reshape(valid_KxS.shape), 0)
  # One scalar gather per axis: 1.8x faster on a CPU than gathering (S, 3) rows.
  d2_KxS = sum(jnp.square(codes_Kx3[:, None, a] - sorted_codes_3xV[a][slot_KxS]) for a in range(3))
  d2_KxS = jnp.where(valid_KxS, d2_KxS, jnp.inf)
  best_K = jnp.argmin(d2_KxS, -1)
  d2_K = jnp.take_along_axis(d2_KxS, best_K[:, None], -1)[:, 0]
  vertex_K = grid.sorted_vertex[jnp.take_along_axis(slot_KxS, best_K[:, None], -1)[:, 0]]
  return vertex_K, jnp.sqrt(d2_K)     # no candidate: distance inf, never matched


@functools.partial(jax.jit, static_argnames=("chunk",))
def nearest_vertex_grid(codes_Px3, grid: PnccGrid, chunk: int = 0):
  """`nearest_vertex` through a `PnccGrid`: (index (P,), distance (P,)), exact wherever the
  distance is below grid.max_dist (beyond it, the nearest among the 27 cells, or distance inf
  if they are empty). Every code is matched: use it on mask pixels."""
  p = codes_Px3.shape[0]
  chunk = max(1, min(chunk or default_grid_chunk(grid.row_capacity), p))
  pad = (-p) % chunk
  codes = jnp.pad(jnp.asarray(codes_Px3, jnp.float32), ((0, pad), (0, 0))).reshape(-1, chunk, 3)
  sorted_codes_3xV = grid.pncc_Vx3[grid.sorted_vertex].T
  idx, dist = jax.lax.map(lambda c: _grid_nearest(c, grid, sorted_codes_3xV), codes)
  return idx.reshape(-1)[:p], dist.reshape(-1)[:p]


def default_grid_chunk(row_capacity: int) -> int:
  """Pixels per loop step: about 2^18 candidate distances (9 x row_capacity per pixel), a few
  MiB of temporaries whatever the model; bigger steps fall out of cache and got slower at
  53k vertices (1.0 us per pixel at 1.6k pixels, 1.2 at 4k), tiny ones pay loop overhead."""
  return int(np.clip((1 << 18) // (9 * max(row_capacity, 1)), 256, 8192))


@functools.partial(jax.jit, static_argnames=("chunk",))
def decode_all_grid(dafi_HxWx3, mask_HxW, grid: PnccGrid, chunk: int = 0):
  """JAX DAFI decoding of every vertex through a `PnccGrid`: (positions (V, 2) float32 pixels,
  detected (V,) bool); same results as `decode_dafi_kdtree` with all vertices as the subset.

  Mask pixels are moved to the front and matched in chunks of `chunk` (default
  `default_grid_chunk`), only as many chunks as the mask needs, so memory stays at
  chunk x 9 x row_capacity candidates and background costs nothing. jit- and vmap-able (vmap
  images and masks, broadcast the grid: `jax.vmap(decode_all_grid, in_axes=(0, 0, None))`;
  a batch runs as many chunks as its fullest mask).
  """
  dafi_HxWx3, mask_HxW = jnp.asarray(dafi_HxWx3, jnp.float32), jnp.asarray(mask_HxW, bool)
  check_inputs(dafi_HxWx3, mask_HxW)
  h, w, _ = dafi_HxWx3.shape
  p, v = h * w, grid.pncc_Vx3.shape[0]
  chunk = max(1, min(chunk or default_grid_chunk(grid.row_capacity), p))
  num_chunks = -(-p // chunk)
  mask_P = mask_HxW.reshape(-1)
  # Mask pixels first, in raster order (the rest: pixel 0, never matched). nonzero with a static
  # size is a cumsum + scatter, ~6x cheaper than a stable argsort of the mask at 256 px.
  n_masked = jnp.sum(mask_P)
  order_P = jnp.nonzero(mask_P, size=p, fill_value=0)[0]
  codes_Px3 = jnp.pad(dafi_HxWx3.reshape(-1, 3)[order_P], ((0, num_chunks * chunk - p), (0, 0)))
  sorted_codes_3xV = grid.pncc_Vx3[grid.sorted_vertex].T  # candidates' codes, in slot order

  def one_chunk(i, carry):
    vertex_P, dist_P = carry
    c_Kx3 = jax.lax.dynamic_slice_in_dim(codes_Px3, i * chunk, chunk)
    vertex_K, dist_K = _grid_nearest(c_Kx3, grid, sorted_codes_3xV)
    return (jax.lax.dynamic_update_slice_in_dim(vertex_P, vertex_K, i * chunk, 0),
            jax.lax.dynamic_update_slice_in_dim(dist_P, dist_K, i * chunk, 0))

  needed = (n_masked + chunk - 1) // chunk            # chunks past the mask are skipped
  vertex_P, dist_P = jax.lax.fori_loop(
      0, needed, one_chunk, (jnp.zeros(num_chunks * chunk, jnp.int32),
                             jnp.full(num_chunks * chunk, jnp.inf, jnp.float32)))
  matched = (jnp.arange(p) < n_masked) & (dist_P[:p] < grid.max_dist)
  return _average_per_vertex(vertex_P[:p], matched, _pixel_grid(h, w)[order_P], v)
