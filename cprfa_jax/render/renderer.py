"""Rendering a morphable-model mesh under a pose (Eq. 2) into training images.

Per example: the DAFI (PNCC colours of the visible surface, §2.1), the face mask, a shaded RGB
image (procedural albedo, Lambertian + ambient light), and the winning triangle and barycentric
weights of each pixel, from which `visible_vertices` gives exact per-vertex visibility.
Backgrounds are 0; compositing onto photographs is a later step of the data engine.

Lighting is evaluated per vertex and interpolated (Gouraud): face-mesh triangles are one to a
few pixels across at 64-256 px, where per-pixel normals look the same, and interpolating three
colours instead of normals and albedo cut the per-pixel work that dominates on the CPU.

Two layers:

* `render_fixed` / `render_batch_fixed`: pure and jit-able, with the static tile budget
  `num_tiles` of `raster` (`render_fixed` is also vmap-able, but `render_batch_fixed` is the fast
  way to do a batch on the CPU, see `raster`).
* `render` / `render_batch`: host-side conveniences that count the tiles the poses need,
  fill in a default albedo and light, and call a cached jitted function.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from cprfa_jax.geometry.projection import rotation_matrix, to_pixels
from cprfa_jax.render import raster, shading
from cprfa_jax.render.shading import Light


class Rendering(NamedTuple):
  dafi: jnp.ndarray    # (..., H, W, 3) float32 PNCC colour of the visible surface, 0 outside
  mask: jnp.ndarray    # (..., H, W) bool face mask
  rgb: jnp.ndarray     # (..., H, W, 3) float32 shaded image in [0, 1], 0 outside
  tri_id: jnp.ndarray  # (..., H, W) int32 visible triangle, -1 = background
  bary: jnp.ndarray    # (..., H, W, 3) float32 barycentric weights of its three vertices


def _vertex_normals_flat(cam_BxVx3, triangles_Tx3):
  """Area-weighted vertex normals (B V, 3) of a batch, with flat gathers and scatter-adds
  (see `raster` on why not vmap)."""
  b, v, _ = cam_BxVx3.shape
  tri = jnp.asarray(triangles_Tx3, jnp.int32)
  rows = [(tri[None, :, i] + v * jnp.arange(b, dtype=jnp.int32)[:, None]).reshape(-1)
          for i in range(3)]
  p = cam_BxVx3.reshape(-1, 3)
  a, bb, c = (raster.take(p, r) for r in rows)
  e1, e2 = bb - a, c - a
  # The cross product by columns: jnp.cross's transposes were slower on the CPU.
  cross = [e1[:, (k + 1) % 3] * e2[:, (k + 2) % 3] - e1[:, (k + 2) % 3] * e2[:, (k + 1) % 3]
           for k in range(3)]
  face_n = jnp.stack(cross, -1)
  n = jnp.zeros_like(p)
  for r in rows:
    n = n.at[r].add(face_n)
  return n


def _camera_points_batch(verts_BxVx3, pose_Bx6):
  """`geometry.camera_points` for a batch, with the 3 x 3 product written out: XLA's CPU
  batched matmul with inner size 3 was several times slower."""
  r_Bx3x3 = jax.vmap(rotation_matrix)(pose_Bx6[:, 0], pose_Bx6[:, 1], pose_Bx6[:, 2])
  sr = pose_Bx6[:, 3, None, None] * r_Bx3x3
  x = [verts_BxVx3[..., k] for k in range(3)]
  t = [pose_Bx6[:, 4], pose_Bx6[:, 5], jnp.zeros_like(pose_Bx6[:, 0])]
  return jnp.stack([sum(sr[:, c, k, None] * x[k] for k in range(3)) + t[c][:, None]
                    for c in range(3)], -1)


def _pixels_batch(verts_BxVx3, pose_Bx6, hw, cam_BxVx3=None):
  cam = _camera_points_batch(verts_BxVx3, pose_Bx6) if cam_BxVx3 is None else cam_BxVx3
  return jnp.concatenate([to_pixels(cam[..., :2], hw), cam[..., 2:]], -1)


class Surround(NamedTuple):
  """Geometry around the face that shares its z-buffer but is never face (a head, hair,
  accessories): H more vertices per example and triangles over [face V | surround H]."""
  triangles_Tx3: jnp.ndarray   # (T', 3) indices into the concatenated V + H vertices
  verts_BxHx3: jnp.ndarray     # model frame, posed with the face
  albedo_BxHx3: jnp.ndarray


def _mesh(model, verts_BxVx3, albedo_BxVx3, surround):
  """Triangles, vertices, albedo and PNCC of the face plus its surround (PNCC 0 there)."""
  if surround is None:
    return model.triangles_Tx3, verts_BxVx3, albedo_BxVx3, model.pncc_Vx3
  h = surround.verts_BxHx3.shape[1]
  return (jnp.concatenate([model.triangles_Tx3, surround.triangles_Tx3]),
          jnp.concatenate([verts_BxVx3, surround.verts_BxHx3], 1),
          jnp.concatenate([albedo_BxVx3, surround.albedo_BxHx3], 1),
          jnp.concatenate([model.pncc_Vx3, jnp.zeros((h, 3), model.pncc_Vx3.dtype)]))


@functools.partial(jax.jit, static_argnames=("hw", "num_tiles", "tile", "cull_back"))
def render_batch_fixed(model, verts_BxVx3, pose_Bx6, albedo_BxVx3, light: Light, hw,
                       num_tiles: int, tile: int = 2, cull_back: bool = True,
                       surround: Surround | None = None) -> Rendering:
  """Pure batched renderer. verts (B, V, 3) in the model frame, pose (B, 6) as Eq. 2,
  albedo (B, V, 3), light fields (B, 3). `num_tiles` as in `raster.rasterize_batch`.
  With a `surround`, its pixels are shaded in `rgb` and are never DAFI or mask: the face's
  triangles come first, so a pixel is face iff its winning triangle's index is below T."""
  h, w = hw
  b = verts_BxVx3.shape[0]
  num_face = model.triangles_Tx3.shape[0]
  tri, verts, albedo, pncc = _mesh(model, verts_BxVx3, albedo_BxVx3, surround)
  v = verts.shape[1]
  cam = _camera_points_batch(verts, pose_Bx6)
  pix = _pixels_batch(verts, pose_Bx6, hw, cam)
  tri_id = raster._zbuffer(pix, tri, hw, num_tiles, tile, cull_back)
  per_example = Light(*(jnp.reshape(f, (b, 1, 3)) for f in light))
  normals = _vertex_normals_flat(cam, tri).reshape(b, v, 3)
  shaded = shading.lambert(albedo, normals, per_example)
  attr = jnp.concatenate([jnp.broadcast_to(pncc, (b, v, 3)), shaded], -1)
  lam, vals = raster._resolve(pix, tri, tri_id, hw, attr)
  vals = vals.reshape(b, h * w, 6)
  # Background weights are 0, so both images are 0 there already; a surround triangle that
  # shares a boundary vertex with the face would interpolate its PNCC, hence the mask.
  mask = (tri_id >= 0) & (tri_id < num_face)
  return Rendering(dafi=jnp.where(mask[..., None], vals[..., :3], 0.0).reshape(b, h, w, 3),
                   mask=mask.reshape(b, h, w),
                   rgb=vals[..., 3:6].reshape(b, h, w, 3),
                   tri_id=tri_id.reshape(b, h, w),
                   bary=jnp.stack(lam, -1).reshape(b, h, w, 3))


def render_fixed(model, verts_Vx3, pose_6, albedo_Vx3, light: Light, hw, num_tiles: int,
                 tile: int = 2, cull_back: bool = True) -> Rendering:
  """One example of `render_batch_fixed` (jit- and vmap-able)."""
  out = render_batch_fixed(model, verts_Vx3[None], jnp.asarray(pose_6)[None], albedo_Vx3[None],
                           Light(*(jnp.asarray(f)[None] for f in light)), hw, num_tiles, tile,
                           cull_back)
  return Rendering(*(x[0] for x in out))


@functools.partial(jax.jit, static_argnames=("hw", "tile", "cull_back"))
def _count_tiles(verts_BxVx3, pose_Bx6, triangles_Tx3, hw, tile, cull_back):
  return raster.count_tiles(_pixels_batch(verts_BxVx3, pose_Bx6, hw), triangles_Tx3, hw, tile,
                            cull_back)


def tiles_for(model, verts_BxVx3, pose_Bx6, hw, tile: int = 2, cull_back: bool = True,
              surround: Surround | None = None) -> int:
  """Host side: the bucketed `num_tiles` that covers every triangle of these examples."""
  verts = jnp.asarray(verts_BxVx3, jnp.float32)
  tri, verts, _, _ = _mesh(model, verts, verts, surround)
  n = _count_tiles(verts, jnp.asarray(pose_Bx6, jnp.float32), tri, tuple(hw), tile, cull_back)
  return raster.bucket(int(n))


def default_albedo(model) -> jnp.ndarray:
  """(V, 3) albedo of the default parameters on the model's landmark regions (host side)."""
  return shading.vertex_albedo(shading.model_regions(model),
                               shading.default_albedo_params(model.num_vertices))


def render_batch(model, verts_BxVx3, pose_Bx6, hw, light: Light | None = None,
                 albedo=None, tile: int = 2, cull_back: bool = True,
                 surround: Surround | None = None) -> Rendering:
  """Renders B examples. albedo: (V, 3) or (B, V, 3), default `default_albedo(model)`;
  light: a `Light` with (3,) or (B, 3) fields, default `shading.default_light()`; surround:
  geometry around the face (`Surround`, e.g. `mm.head`'s), shaded but never face."""
  hw = tuple(int(s) for s in hw)
  raster.check_hw(hw)
  verts = jnp.asarray(verts_BxVx3, jnp.float32)
  pose = jnp.asarray(pose_Bx6, jnp.float32)
  if verts.ndim != 3 or verts.shape[1:] != (model.num_vertices, 3):
    raise ValueError(f"verts must be (B, {model.num_vertices}, 3) for model "
                     f"'{model.name}', got {verts.shape}")
  b, v = verts.shape[:2]
  if pose.shape != (b, 6):
    raise ValueError(f"pose must be (B, 6) = [r_x, r_y, r_z, s, t_x, t_y] per example, "
                     f"got {pose.shape}")
  albedo = default_albedo(model) if albedo is None else jnp.asarray(albedo, jnp.float32)
  albedo = jnp.broadcast_to(albedo, (b, v, 3))
  light = shading.default_light() if light is None else light
  light = Light(*(jnp.broadcast_to(jnp.asarray(f, jnp.float32), (b, 3)) for f in light))
  if surround is not None:
    surround = Surround(jnp.asarray(surround.triangles_Tx3, jnp.int32),
                        jnp.asarray(surround.verts_BxHx3, jnp.float32),
                        jnp.asarray(surround.albedo_BxHx3, jnp.float32))
    if surround.verts_BxHx3.shape[0] != b or surround.albedo_BxHx3.shape != surround.verts_BxHx3.shape:
      raise ValueError(f"surround: verts and albedo must both be (B={b}, H, 3), got "
                       f"{surround.verts_BxHx3.shape} and {surround.albedo_BxHx3.shape}")
  num_tiles = tiles_for(model, verts, pose, hw, tile, cull_back, surround)
  return render_batch_fixed(model, verts, pose, albedo, light, hw, num_tiles, tile, cull_back,
                            surround)


def render(model, verts_Vx3, pose_6, hw, light: Light | None = None, albedo=None,
           tile: int = 2, cull_back: bool = True) -> Rendering:
  """Renders one example (see `render_batch`): `Rendering` fields without a batch axis."""
  out = render_batch(model, jnp.asarray(verts_Vx3)[None], jnp.asarray(pose_6)[None], hw,
                     light, albedo, tile, cull_back)
  return Rendering(*(x[0] for x in out))


visible_vertices = raster.visible_vertices
