"""The z-buffer renderer against brute force, the OpenCV painter's reference and its invariants,
on small procedural meshes (no model files needed)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cprfa_jax import geometry as geo
from cprfa_jax import render
from cprfa_jax.mm import build_model
from cprfa_jax.render import raster, reference, shading


def _bumpy_head(n_u=31, n_v=22):
  """A bumpy spherical shell over +-110 degrees of azimuth with a narrow protruding 'nose', so
  that turned views have real self-occlusion; 68 landmarks spread over the front."""
  u = np.radians(np.linspace(-110, 110, n_u))
  v = np.radians(np.linspace(-65, 70, n_v))
  uu, vv = np.meshgrid(u, v)
  r = 1.0 + 0.05 * np.sin(3 * uu) * np.cos(4 * vv)
  r += 0.6 * np.exp(-0.5 * ((uu / 0.1) ** 2 + ((vv + 0.1) / 0.3) ** 2))
  pts = np.stack([r * np.sin(uu) * np.cos(vv), 1.1 * r * np.sin(vv),
                  r * np.cos(uu) * np.cos(vv)], -1).reshape(-1, 3)
  idx = np.arange(n_u * n_v).reshape(n_v, n_u)
  a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
  tri = np.concatenate([np.stack([a, b, d], -1), np.stack([a, d, c], -1)]).reshape(-1, 3)
  front = idx[3:-3, 6:-6].reshape(-1)
  lm = front[np.linspace(0, front.size - 1, 68).astype(int)]
  zeros = np.zeros((1,) + pts.shape)
  return build_model(pts, zeros, zeros, tri, lm, name="bumpy_head")


@pytest.fixture(scope="module")
def head():
  return _bumpy_head()


def _raster(pix_Vx3, tri_Tx3, hw, cull_back=True, tile=2):
  pix = jnp.asarray(pix_Vx3, jnp.float32)[None]
  n = raster.tiles_needed(pix, tri_Tx3, hw, tile, cull_back)
  out = raster.rasterize_batch(pix, jnp.asarray(tri_Tx3, jnp.int32), hw, n, tile, cull_back)
  return raster.Raster(*(np.asarray(x[0]) for x in out))


def _edge_values(pix_Vx3, tri_Tx3, hw):
  """Float64 edge functions (T, 3, H, W) of every triangle at every pixel centre."""
  h, w = hw
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
  # The same snapping as the rasteriser, so that only true ties can differ.
  p = np.round(np.asarray(pix_Vx3, np.float64)[:, :2] * raster.SUBPIXEL) / raster.SUBPIXEL
  out = []
  for t in tri_Tx3:
    a, b, c = p[t]
    e = [(v1[0] - v0[0]) * (ys - v0[1]) - (v1[1] - v0[1]) * (xs - v0[0])
         for v0, v1 in ((b, c), (c, a), (a, b))]
    out.append(np.stack(e))
  return np.stack(out)


def test_coverage_matches_brute_force_on_big_and_offscreen_triangles():
  """Triangles much larger than a tile, partly off-screen, non-square image: every pixel
  centre strictly inside is covered, none strictly outside (ties on edges excluded)."""
  rng = np.random.default_rng(0)
  hw, b = (48, 80), 8
  pix = np.concatenate([rng.uniform(-30, 110, (b, 3, 2)), rng.uniform(0, 1, (b, 3, 1))], -1)
  tri = np.array([[0, 1, 2]])
  n = raster.tiles_needed(pix, tri, hw, tile=3, cull_back=False)
  got = np.asarray(raster.rasterize_batch(jnp.asarray(pix, jnp.float32), jnp.asarray(tri), hw, n,
                                          tile=3, cull_back=False).tri_id) == 0
  for i in range(b):
    e = _edge_values(pix[i], tri, hw)[0]
    strictly_in = (e > 0).all(0) | (e < 0).all(0)
    tie = (e == 0).any(0)
    assert (got[i][~tie] == strictly_in[~tie]).all()
  assert got.sum() > 3000  # the test means something


def test_near_triangle_hides_far_one_in_any_order():
  hw = (32, 32)
  near = [[4, 4, 0.9], [28, 6, 0.9], [10, 28, 0.9]]
  far = [[2, 2, 0.1], [30, 3, 0.1], [16, 30, 0.1]]
  for verts in (near + far, far + near):
    r = _raster(np.array(verts), np.array([[0, 1, 2], [3, 4, 5]]), hw, cull_back=False)
    near_id = 0 if verts[0] is near[0] else 1
    e = _edge_values(np.array(verts), np.array([[0, 1, 2], [3, 4, 5]]), hw)
    inside_near = (e[near_id] > 0).all(0) | (e[near_id] < 0).all(0)
    assert inside_near.sum() > 100
    assert (r.tri_id[inside_near] == near_id).all()
    np.testing.assert_allclose(r.depth[inside_near], 0.9, atol=1e-3)


def test_interpenetrating_triangles_resolve_per_pixel():
  """Two triangles crossing in depth: painter's order cannot draw this, a z-buffer must pick
  the nearer one at every pixel."""
  hw = (40, 40)
  verts = np.array([[2, 2, 0.0], [38, 2, 1.0], [20, 38, 0.5],      # depth rises to the right
                    [2, 3, 1.0], [38, 3, 0.0], [21, 37, 0.5]])     # and to the left
  tri = np.array([[0, 1, 2], [3, 4, 5]])
  r = _raster(verts, tri, hw, cull_back=False)
  e = _edge_values(verts, tri, hw)
  both = ((e > 0).all(1) | (e < 0).all(1)).all(0)
  xs = np.mgrid[0:40, 0:40][1]
  clear = both & (np.abs(xs - 20) > 1)        # away from the crossing line
  want = np.where(xs > 20, 0, 1)
  assert clear.sum() > 200
  assert (r.tri_id[clear] == want[clear]).all()


def test_tessellated_quad_has_no_holes_or_overlaps():
  """A jittered grid whose vertices sit on the fixed-point grid, many exactly on pixel
  centres: every pixel centre strictly inside the quad is covered, and the two parity classes
  of triangles (each of which only borders the other) never claim the same pixel."""
  n, hw = 9, (64, 64)
  rng = np.random.default_rng(1)
  g = np.linspace(6, 56, n)
  xy = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
  inner = ((xy > 6) & (xy < 56)).all(1)
  xy[inner] += np.round(rng.uniform(-2, 2, (inner.sum(), 2)) * 2) / 2   # half-pixel steps
  pix = np.concatenate([xy, np.zeros((len(xy), 1))], -1)
  idx = np.arange(n * n).reshape(n, n)
  a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
  lower, upper = np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)
  # One batch, one compile: the upper triangles index a second copy of the vertices, and an
  # example hides a class by moving its copy off-screen (such triangles cost no tiles).
  tri = np.concatenate([lower, upper + len(pix)])
  away = pix + [500.0, 0.0, 0.0]
  batch = np.stack([np.concatenate(p) for p in ((pix, pix), (pix, away), (away, pix))])
  n_tiles = raster.tiles_needed(batch, tri, hw, cull_back=False)
  full, m_lo, m_up = np.asarray(raster.rasterize_batch(
      jnp.asarray(batch, jnp.float32), jnp.asarray(tri), hw, n_tiles, cull_back=False).tri_id) >= 0
  assert full[7:56, 7:56].all()
  assert not (m_lo & m_up).any()
  assert ((m_lo | m_up) == full).all()


def _near_edges(mask_HxW, dafi_HxWx3=None):
  """Pixels within 1 px of a silhouette or, given the DAFI, of an occlusion boundary (where
  the PNCC code jumps: it is continuous over the surface)."""
  out = np.zeros_like(mask_HxW)
  for dy in (-1, 0, 1):
    for dx in (-1, 0, 1):
      out |= np.roll(mask_HxW, (dy, dx), (0, 1)) != mask_HxW
      if dafi_HxWx3 is not None:
        out |= np.abs(np.roll(dafi_HxWx3, (dy, dx), (0, 1)) - dafi_HxWx3).max(-1) > 0.05
  return out


def test_agrees_with_painters_reference(head):
  """>= 99% of pixels agree on mask, DAFI and RGB at four poses, profile included. The
  differences come from OpenCV's fill rule, which also paints pixels that a triangle only
  grazes (silhouettes and occluding edges half a pixel fatter, thin edge-on slivers painted
  where no pixel centre is inside), so they all lie on silhouettes and occlusion boundaries."""
  hw = (192, 192)
  degs = [(0, 0, 0), (15, 40, -10), (-10, 90, 5), (0, -75, 20)]
  poses = jnp.stack([geo.pose_from_degrees(*d, s=0.9) for d in degs])
  out = render.render_batch(head, jnp.broadcast_to(head.mean_Vx3, (4,) + head.mean_Vx3.shape),
                            poses, hw)
  albedo = render.default_albedo(head)
  for i, deg in enumerate(degs):
    cam = reference.reference_camera_points(head.mean_Vx3, poses[i])
    dafi_ref, ref, _, rgb_ref = reference.reference_render(
        reference.reference_pixels(cam, hw), head.triangles_Tx3, head.pncc_Vx3, hw,
        albedo_Vx3=albedo, normals_Vx3=reference.reference_normals(cam, head.triangles_Tx3),
        light=shading.default_light())
    ours, dafi, rgb = (np.asarray(x[i]) for x in (out.mask, out.dafi, out.rgb))
    dafi_ok = np.abs(dafi - dafi_ref).max(-1) < 0.03
    rgb_ok = np.abs(rgb - rgb_ref).max(-1) < 0.05
    assert ours.sum() > 5000, deg
    assert (ours == ref).mean() >= 0.99, deg
    assert dafi_ok.mean() >= 0.99, deg
    assert rgb_ok.mean() >= 0.99, deg
    explained = _near_edges(ours, dafi) | _near_edges(ref)
    assert (explained | ((ours == ref) & dafi_ok)).all(), deg


def test_batched_jit_and_vmap_equal_per_example(head):
  hw = (64, 64)
  poses = jnp.stack([geo.pose_from_degrees(p, y, r, s=s) for p, y, r, s in
                     [(0, 0, 0, 1.0), (20, 60, 10, 0.8), (-10, -90, 0, 1.1)]])
  verts = head.mean_Vx3 * jnp.array([1.0, 0.95, 1.05])[:, None, None]
  albedo = render.default_albedo(head) * jnp.array([[1.0, 1.0, 1.0], [0.7, 0.8, 0.9],
                                                    [1.1, 0.9, 0.8]])[:, None, :]
  light = shading.Light(
      direction_3=jnp.array([[0.0, 0.0, 1.0], [0.6, 0.0, 0.8], [-0.6, 0.48, 0.64]]),
      colour_3=jnp.array([[0.8] * 3, [0.5, 0.6, 0.7], [1.0, 0.9, 0.8]]),
      ambient_3=jnp.array([[0.2] * 3, [0.4] * 3, [0.1, 0.2, 0.3]]))
  batch = render.render_batch(head, verts, poses, hw, light, albedo)
  # One static tile budget that covers each example alone.
  budget = max(render.tiles_for(head, verts[i:i + 1], poses[i:i + 1], hw) for i in range(3))
  one = jax.jit(render.render_fixed, static_argnames=("hw", "num_tiles"))
  vm = jax.jit(jax.vmap(functools.partial(render.render_fixed, hw=hw, num_tiles=budget),
                        in_axes=(None, 0, 0, 0, 0)))(head, verts, poses, albedo, light)
  for i in range(3):
    ref = one(head, verts[i], poses[i], albedo[i], shading.Light(*(f[i] for f in light)),
              hw=hw, num_tiles=budget)
    for got in (batch, vm):
      np.testing.assert_array_equal(got.tri_id[i], ref.tri_id)
      np.testing.assert_array_equal(got.mask[i], ref.mask)
      for field in ("dafi", "rgb", "bary"):
        np.testing.assert_allclose(getattr(got, field)[i], getattr(ref, field), atol=1e-5)
  assert batch.mask.any(axis=(1, 2)).all()


def test_outputs_are_consistent(head):
  """DAFI pixels are convex combinations of their triangle's PNCC codes; background is 0."""
  hw = (96, 96)
  out = render.render(head, head.mean_Vx3, geo.pose_from_degrees(10, 30, 0), hw)
  mask, tri_id, bary = np.asarray(out.mask), np.asarray(out.tri_id), np.asarray(out.bary)
  assert out.dafi.shape == (96, 96, 3) and out.rgb.shape == (96, 96, 3) and mask.dtype == bool
  assert ((tri_id >= 0) == mask).all()
  assert (bary[mask] >= 0).all()
  np.testing.assert_allclose(bary[mask].sum(-1), 1.0, atol=1e-5)
  codes = np.asarray(head.pncc_Vx3)[np.asarray(head.triangles_Tx3)[tri_id[mask]]]   # (F, 3, 3)
  np.testing.assert_allclose(np.asarray(out.dafi)[mask], (bary[mask][..., None] * codes).sum(1),
                             atol=1e-5)
  dafi = np.asarray(out.dafi)[mask]
  assert ((dafi >= codes.min(1) - 1e-5) & (dafi <= codes.max(1) + 1e-5)).all()
  for img in (out.dafi, out.rgb, out.bary):
    assert (np.asarray(img)[~mask] == 0).all()
  rgb = np.asarray(out.rgb)[mask]
  assert (rgb >= 0).all() and (rgb <= 1).all() and rgb.mean() > 0.1


def test_visible_vertices_at_profile(head):
  """At 90 degrees of yaw the far half of the face is hidden; at 60 degrees the nose hides
  front-facing vertices of the far cheek, which normals alone count as visible."""
  hw = (128, 128)
  x = np.asarray(head.mean_Vx3)
  tri = head.triangles_Tx3
  poses = jnp.stack([geo.pose_from_degrees(0, yaw, 0, s=0.9) for yaw in (90, 60)])
  out = render.render_batch(head, jnp.broadcast_to(head.mean_Vx3, (2,) + head.mean_Vx3.shape),
                            poses, hw)
  vis = {}
  for i, yaw in enumerate((90, 60)):
    vis[yaw] = np.asarray(render.visible_vertices(out.tri_id[i], tri, head.num_vertices))
    assert vis[yaw].dtype == bool and vis[yaw].shape == (head.num_vertices,)
  # Positive yaw moves the nose to the image's right: the subject's right (-x) faces us.
  assert not vis[90][x[:, 0] > 0.15].any()
  assert vis[90][(x[:, 0] < -0.25) & (x[:, 2] > 0)].mean() > 0.9
  facing = np.asarray(geo.front_facing(head.mean_Vx3, tri, geo.pose_from_degrees(0, 60, 0)))
  behind_nose = facing & ~vis[60] & (np.abs(x[:, 1]) < 0.2) & (x[:, 0] > 0)
  assert behind_nose.sum() >= 5


def test_random_albedo_and_light(head):
  regions = shading.model_regions(head)
  assert float(regions.lip_V.max()) == 1.0 and float(regions.sclera_V.max()) == 1.0

  @jax.jit
  def draw(keys):
    albedo = jax.vmap(lambda k: shading.vertex_albedo(
        regions, shading.random_albedo_params(k, head.num_vertices)))(keys)
    return albedo, jax.vmap(shading.random_light)(keys)

  albedo, light = draw(jax.random.split(jax.random.PRNGKey(0), 16))
  assert albedo.shape == (16, head.num_vertices, 3)
  assert float(albedo.min()) >= 0 and float(albedo.max()) <= 1
  assert float(albedo.mean(1).std(0).mean()) > 0.03   # skin tones differ between draws
  np.testing.assert_allclose(jnp.linalg.norm(light.direction_3, axis=-1), 1.0, atol=1e-5)
  assert float(light.direction_3[:, 2].min()) >= np.cos(np.radians(75)) - 1e-5


def test_tile_budget_and_size_checks(head):
  assert raster.bucket(1) == 256 and raster.bucket(5000) >= 5000
  assert len({raster.bucket(n) for n in range(10000, 20000, 7)}) <= 5
  with pytest.raises(ValueError, match="sides"):
    render.render(head, head.mean_Vx3, geo.pose_from_degrees(0, 0, 0), (600, 600))
  with pytest.raises(ValueError, match="verts"):
    render.render_batch(head, head.mean_Vx3[None, :10], jnp.zeros((1, 6)), (64, 64))
