"""Z-buffer rasterisation of triangle meshes in pixel space.

Input vertices are `pix_BxVx3`: x, y in 0-based pixel coordinates (x right, y down, pixel
centres on integers, `geometry.to_pixels`) and z the depth toward the camera (larger is nearer:
the third column of `geometry.camera_points`, any scale). Output per pixel (`Raster`): the
nearest triangle whose interior holds the pixel centre (-1 for background), its barycentric
weights and its depth.

How (testing every triangle at every pixel is far too slow):

* Coverage is decided exactly in fixed point (`SUBPIXEL` steps per pixel, as GPUs do): edge
  functions are int32, and a pixel centre on an edge shared by two triangles belongs to exactly
  one of them by a consistent tie rule, so a tessellated surface has neither holes nor overlaps.
* Each triangle's box of pixel centres is cut into `tile` x `tile` tiles and the tiles of all
  triangles are laid end to end (a prefix sum). How many there are depends on the pose, so the
  host counts them (`tiles_needed`, rounded up to a few buckets to limit recompiles): shapes
  stay static, no triangle is ever clipped, and the many sub-pixel triangles of a face mesh
  cost one tile or none instead of a fixed K x K window each.
* Depth and triangle index are packed into one int32 key (quantised depth in the high bits), so
  a single scatter-max builds the z-buffer and picks the winning triangle at once.

Speed notes for XLA on the CPU, measured: a batch is rasterised as one flat problem (example b's
vertices, triangles and pixels offset by b V, b T, b H W) because gathers with batch dimensions
(what `jax.vmap` makes) were about 10x slower than flat ones; per-triangle data is kept as
separate (G,) columns because stacking them and reducing over small trailing axes was slow too.
`rasterize` (one example) is still jit- and vmap-able.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

SUBPIXEL = 16  # fixed-point steps per pixel (4 bits, as in hardware rasterisers)
MAX_SIDE = 512  # keeps every edge function below 2^31 for vertices clamped to [-side, 2 side]


class Raster(NamedTuple):
  tri_id: jnp.ndarray  # (..., H, W) int32 index into triangles_Tx3, -1 = background
  bary: jnp.ndarray    # (..., H, W, 3) float32 weights of the triangle's vertices (0 outside)
  depth: jnp.ndarray   # (..., H, W) float32 interpolated z toward the camera (0 outside)


def check_hw(hw):
  h, w = hw
  if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE):
    raise ValueError(f"image size {tuple(hw)}: the rasteriser supports sides 1 to {MAX_SIDE}")


def take(x, idx):
  """x[idx] along axis 0 for indices known to be in range: XLA's CPU gather was 5x slower
  with jnp's default negative-index handling."""
  return x.at[idx].get(mode="promise_in_bounds")


def _key_bits(num_tri):
  """Bits of the z-buffer key for the triangle index and the quantised depth. Depth gets at
  most 24 bits so that float32 holds every level exactly (more would round past the top)."""
  id_bits = max(int(num_tri - 1).bit_length(), 1)
  if 31 - id_bits < 14:
    raise ValueError(f"{num_tri} triangles leave {31 - id_bits} bits of z-buffer depth; "
                     "render fewer triangles at a time")
  return id_bits, min(31 - id_bits, 24)


def _fixed(xy, hw):
  """Snap to the fixed-point grid. Clamping far off-screen vertices only distorts triangles
  wider than the image, which a face mesh does not have."""
  side = max(hw)
  return jnp.round(jnp.clip(xy, -side, 2 * side) * SUBPIXEL).astype(jnp.int32)


def _flat_triangles(triangles_Tx3, b, v):
  tri = jnp.asarray(triangles_Tx3, jnp.int32)
  return (tri[None] + v * jnp.arange(b, dtype=jnp.int32)[:, None, None]).reshape(-1, 3)


def _setup(pix_BxVx3, triangles_Tx3, hw, tile, cull_back):
  """Per-triangle integer edge equations, depth plane and tile count as flat (G,) columns,
  G = B T. Returns (columns dict, count_G)."""
  h, w = hw
  b, v, _ = pix_BxVx3.shape
  _, depth_bits = _key_bits(triangles_Tx3.shape[0])
  tri_G = _flat_triangles(triangles_Tx3, b, v)
  pix_P = pix_BxVx3.reshape(-1, 3)
  fx, fy = _fixed(pix_P[:, 0], hw), _fixed(pix_P[:, 1], hw)
  # Depth quantised per example to [0, 2^depth_bits - 1] for the z-buffer key.
  z_BxV = pix_BxVx3[..., 2]
  zmin = z_BxV.min(1, keepdims=True)
  zq = ((z_BxV - zmin) * (((1 << depth_bits) - 1) / jnp.maximum(z_BxV.max(1, keepdims=True) - zmin,
                                                                  1e-12))).reshape(-1)
  ax, bx, cx = (take(fx, tri_G[:, i]) for i in range(3))
  ay, by, cy = (take(fy, tri_G[:, i]) for i in range(3))
  za, zb, zc = (take(zq, tri_G[:, i]) for i in range(3))
  area2 = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
  # Outward normals toward the camera (y up) wind clockwise in pixels (y down): area2 < 0.
  valid = (area2 < 0) if cull_back else (area2 != 0)
  # Flip clockwise triangles so that every interior is on the positive side of its edges.
  flip = area2 < 0
  swap = lambda p, q: (jnp.where(flip, q, p), jnp.where(flip, p, q))
  (bx, cx), (by, cy), (zb, zc) = swap(bx, cx), swap(by, cy), swap(zb, zc)
  area2 = jnp.abs(area2)
  # Edge i is opposite vertex i: E_i(p) = A_i (p - a)_x + B_i (p - a)_y + E_i(a), with
  # E_0(a) = area2 and E_1(a) = E_2(a) = 0 (so A_2 = -A_0 - A_1, B_2 = -B_0 - B_1).
  edges = [(bx, by, cx, cy), (cx, cy, ax, ay), (ax, ay, bx, by)]
  coef_a = [y0 - y1 for x0, y0, x1, y1 in edges]
  coef_b = [x1 - x0 for x0, y0, x1, y1 in edges]
  # Tie rule: an edge owns the pixel centres on it iff it points down (dy > 0), or left if
  # horizontal. A neighbour runs along a shared edge the other way, so exactly one owns it.
  # A pixel is covered iff E_i + owned_i > 0 for all i.
  owned = [((ea < 0) | ((ea == 0) & (eb < 0))).astype(jnp.int32) for ea, eb in zip(coef_a, coef_b)]
  # Depth plane in fixed-point units: z(p) = z_a + sum_i z_i grad(E_i) . (p - a) / area2.
  inv = 1.0 / jnp.maximum(area2, 1).astype(jnp.float32)
  dzdx = (za * coef_a[0] + zb * coef_a[1] + zc * coef_a[2]) * inv
  dzdy = (za * coef_b[0] + zb * coef_b[1] + zc * coef_b[2]) * inv

  # First and last pixel centres inside the box, clipped to the image.
  x0 = jnp.maximum(-(-jnp.minimum(jnp.minimum(ax, bx), cx) // SUBPIXEL), 0)
  y0 = jnp.maximum(-(-jnp.minimum(jnp.minimum(ay, by), cy) // SUBPIXEL), 0)
  x1 = jnp.minimum(jnp.maximum(jnp.maximum(ax, bx), cx) // SUBPIXEL, w - 1)
  y1 = jnp.minimum(jnp.maximum(jnp.maximum(ay, by), cy) // SUBPIXEL, h - 1)
  tiles_x = jnp.maximum(x1 - x0 + tile, 0) // tile
  tiles_y = jnp.maximum(y1 - y0 + tile, 0) // tile
  count = jnp.where(valid, tiles_x * tiles_y, 0)
  cols = dict(ax=ax, ay=ay, a0=coef_a[0], a1=coef_a[1], b0=coef_b[0], b1=coef_b[1],
              c0=area2 + owned[0], o1=owned[1], o2=owned[2], x0=x0, y0=y0, tiles_x=tiles_x,
              za=za, dzdx=dzdx, dzdy=dzdy)
  return cols, count


@functools.partial(jax.jit, static_argnames=("hw", "tile", "cull_back"))
def count_tiles(pix_BxVx3, triangles_Tx3, hw, tile: int = 2, cull_back: bool = True):
  """Tiles `rasterize_batch` needs for these vertices: a (,) int32 total over the batch."""
  return _setup(jnp.asarray(pix_BxVx3, jnp.float32), triangles_Tx3, hw, tile, cull_back)[1].sum()


def bucket(num_tiles: int, minimum: int = 256) -> int:
  """Round up to 2^(k/4), then to a multiple of 256: at most four shapes per doubling."""
  n = max(int(num_tiles), minimum)
  return int(-(-math.ceil(2 ** (math.ceil(4 * math.log2(n)) / 4)) // 256) * 256)


def tiles_needed(pix_BxVx3, triangles_Tx3, hw, tile: int = 2, cull_back: bool = True) -> int:
  """Host side: the bucketed static `num_tiles` for `rasterize_batch` on these vertices."""
  return bucket(int(count_tiles(pix_BxVx3, triangles_Tx3, tuple(hw), tile, cull_back)))


def _zbuffer(pix_BxVx3, triangles_Tx3, hw, num_tiles, tile, cull_back):
  """The winning triangle of each pixel, (B, H W) int32 with -1 for background."""
  h, w = hw
  check_hw(hw)
  b = pix_BxVx3.shape[0]
  num_tri = triangles_Tx3.shape[0]
  id_bits, depth_bits = _key_bits(num_tri)
  cols, count_G = _setup(pix_BxVx3, triangles_Tx3, hw, tile, cull_back)

  # Tile j belongs to triangle g_N[j]; `local` numbers it within its triangle's box.
  end_G = jnp.cumsum(count_G)
  g_N = jnp.repeat(jnp.arange(b * num_tri, dtype=jnp.int32), count_G,
                   total_repeat_length=num_tiles)
  t = {k: take(c, g_N) for k, c in cols.items()}
  j_N = jnp.arange(num_tiles, dtype=jnp.int32)
  local = j_N - take(end_G - count_G, g_N)
  tiles_x = jnp.maximum(t["tiles_x"], 1)
  ex_N, tri_N = jnp.divmod(g_N, num_tri)

  # The tile x tile pixel centres of each tile: (N, tile^2).
  off_y, off_x = jnp.divmod(jnp.arange(tile * tile, dtype=jnp.int32), tile)
  px = (t["x0"] + local % tiles_x * tile)[:, None] + off_x
  py = (t["y0"] + local // tiles_x * tile)[:, None] + off_y
  col = lambda k: t[k][:, None]
  dx, dy = px * SUBPIXEL - col("ax"), py * SUBPIXEL - col("ay")
  e0 = col("a0") * dx + col("b0") * dy + col("c0")
  e1 = col("a1") * dx + col("b1") * dy
  e2 = -(col("a0") + col("a1")) * dx - (col("b0") + col("b1")) * dy
  inside = ((e0 > 0) & (e1 + col("o1") > 0) & (e2 + col("o2") > 0) & (px < w) & (py < h)
            & (j_N < end_G[-1])[:, None])

  q = col("za") + col("dzdx") * dx.astype(jnp.float32) + col("dzdy") * dy.astype(jnp.float32)
  q = jnp.clip(jnp.round(q), 0, (1 << depth_bits) - 1).astype(jnp.int32)
  key = (q << id_bits) | tri_N[:, None]
  pix = jnp.where(inside, (ex_N * (h * w))[:, None] + py * w + px, b * h * w)
  zbuf = jnp.full(b * h * w, -1, jnp.int32).at[pix.reshape(-1)].max(key.reshape(-1), mode="drop")
  return jnp.where(zbuf >= 0, zbuf & ((1 << id_bits) - 1), -1).reshape(b, h * w)


def _resolve(pix_BxVx3, triangles_Tx3, tri_id_BxP, hw, attr_BxVxC):
  """Barycentric weights of each pixel centre in its triangle (3 x (B P,), in the triangle's
  own vertex order, 0 for background) and the vertex attributes interpolated with them,
  (B P, C). Columns, not stacks (module notes)."""
  h, w = hw
  b, v, _ = pix_BxVx3.shape
  tid = jnp.maximum(tri_id_BxP, 0)
  base = (v * jnp.arange(b, dtype=jnp.int32))[:, None]
  tri = jnp.asarray(triangles_Tx3, jnp.int32)
  rows = [(take(tri[:, i], tid) + base).reshape(-1) for i in range(3)]
  # One table per vertex: the snapped x, y that decided coverage (so the weights agree with
  # it) and the attributes. The barrier keeps XLA from fusing its assembly into the gathers
  # (which recomputed it for every pixel, 3x slower).
  xy = _fixed(pix_BxVx3[..., :2], hw).astype(jnp.float32) / SUBPIXEL
  table = jax.lax.optimization_barrier(
      jnp.concatenate([xy, attr_BxVxC.astype(jnp.float32)], -1).reshape(b * v, -1))
  vals = [take(table, r) for r in rows]                     # 3 x (B P, 2 + C)
  ys, xs = jnp.divmod(jnp.arange(h * w, dtype=jnp.int32), w)
  px, py = jnp.tile(xs.astype(jnp.float32), b), jnp.tile(ys.astype(jnp.float32), b)
  dx = [t[:, 0] - px for t in vals]
  dy = [t[:, 1] - py for t in vals]
  # The weight of vertex i is proportional to the signed area of (p, v_{i+1}, v_{i+2}).
  lam = [dx[(i + 1) % 3] * dy[(i + 2) % 3] - dy[(i + 1) % 3] * dx[(i + 2) % 3] for i in range(3)]
  # Zero weights for background pixels make every interpolated attribute 0 there. Rounding
  # can leave a weight a hair below 0 on an edge: clip it (the sum stays 1 within 1e-6).
  fg = tri_id_BxP.reshape(-1) >= 0
  inv = jnp.where(fg, 1.0 / (lam[0] + lam[1] + lam[2]), 0.0)
  lam = [jnp.maximum(l * inv, 0.0) for l in lam]
  attr = sum(l[:, None] * t[:, 2:] for l, t in zip(lam, vals))
  return lam, attr


@functools.partial(jax.jit, static_argnames=("hw", "num_tiles", "tile", "cull_back"))
def rasterize_batch(pix_BxVx3, triangles_Tx3, hw, num_tiles: int, tile: int = 2,
                    cull_back: bool = True) -> Raster:
  """Z-buffer rasterisation of B meshes sharing one triangle list -> `Raster` with lead dim B.

  pix_BxVx3: pixel x, y and depth z (module docstring). `num_tiles` (static) must be at least
  `count_tiles(pix_BxVx3, ...)` or the last triangles are dropped; `tiles_needed` gives it.
  `cull_back` skips triangles whose outward normal faces away from the camera.
  """
  h, w = hw
  b = pix_BxVx3.shape[0]
  pix_BxVx3 = jnp.asarray(pix_BxVx3, jnp.float32)
  tri_id = _zbuffer(pix_BxVx3, triangles_Tx3, hw, num_tiles, tile, cull_back)
  lam, depth = _resolve(pix_BxVx3, triangles_Tx3, tri_id, hw, pix_BxVx3[..., 2:])
  return Raster(tri_id.reshape(b, h, w), jnp.stack(lam, -1).reshape(b, h, w, 3),
                depth.reshape(b, h, w))


def rasterize(pix_Vx3, triangles_Tx3, hw, num_tiles: int, tile: int = 2,
              cull_back: bool = True) -> Raster:
  """One mesh: `rasterize_batch` with B = 1 (jit- and vmap-able; under vmap `num_tiles` is per
  example)."""
  r = rasterize_batch(jnp.asarray(pix_Vx3)[None], triangles_Tx3, hw, num_tiles, tile, cull_back)
  return Raster(*(x[0] for x in r))


@functools.partial(jax.jit, static_argnames=("num_vertices",))
def visible_vertices(tri_id_HxW, triangles_Tx3, num_vertices: int):
  """(V,) bool: the vertex belongs to at least one triangle that wins some pixel."""
  tid = tri_id_HxW.reshape(-1)
  vid = take(jnp.asarray(triangles_Tx3, jnp.int32), jnp.maximum(tid, 0))
  vid = jnp.where((tid >= 0)[:, None], vid, num_vertices)
  return jnp.zeros(num_vertices, bool).at[vid.reshape(-1)].set(True, mode="drop")
