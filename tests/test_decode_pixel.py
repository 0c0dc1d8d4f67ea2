"""DAFI decoding (§2.1): painted PNCC images decode to the vertices' true positions."""

import functools

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.spatial import cKDTree

from cprfa_jax import geometry as geo
from cprfa_jax import render
from cprfa_jax.data import sampler
from cprfa_jax.decode import pixel
from cprfa_jax.mm import synthetic_model
from cprfa_jax.mm.model import pncc_code


def grid_surface(n=30):
  u, v = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
  return np.stack([u, v, 0.5 * np.exp(-(u ** 2 + v ** 2))], -1).reshape(-1, 3)


def painted_dafi(seed, hw=(96, 96)):
  """A DAFI with 2x2 blocks of exact PNCC codes at the projected pixel of some vertices, and
  distractor pixels whose colours are far from every vertex."""
  rng = np.random.default_rng(seed)
  verts = grid_surface()
  pncc = pncc_code(verts)
  pose = np.array([0.2, -0.3, 0.1, 0.8, 0.05, -0.05], np.float32)
  px = np.asarray(geo.to_pixels(geo.project(verts, pose), hw))
  image = np.zeros(hw + (3,), np.float32)
  mask = np.zeros(hw, bool)
  truth = {}
  taken = np.zeros(hw, bool)
  for v in rng.permutation(len(verts))[:150]:
    c, r = np.floor(px[v]).astype(int)
    if not (0 <= r < hw[0] - 1 and 0 <= c < hw[1] - 1) or taken[r:r + 2, c:c + 2].any():
      continue
    taken[max(r - 1, 0):r + 3, max(c - 1, 0):c + 3] = True
    image[r:r + 2, c:c + 2] = pncc[v]
    mask[r:r + 2, c:c + 2] = True
    truth[v] = (c + 0.5, r + 0.5)    # the mean of the block's pixel centres
  tree = cKDTree(pncc)
  free = np.argwhere(~taken)
  for r, c in free[rng.choice(len(free), 200, replace=False)]:
    code = rng.random(3)
    if tree.query(code)[0] > 0.02:
      image[r, c], mask[r, c] = code, True
  return verts, pncc, px, image, mask, truth


@pytest.mark.parametrize("seed", [0, 1])
def test_painted_dafi_decodes_to_true_positions(seed):
  verts, pncc, px, image, mask, truth = painted_dafi(seed)
  painted = np.array(sorted(truth))
  unpainted = np.setdiff1d(np.arange(len(verts)), painted)[:50]
  subset = np.concatenate([painted, unpainted])
  tree = pixel.build_pncc_tree(pncc)
  pos_g, det_g = pixel.decode_all_grid(image, mask, pixel.build_pncc_grid(pncc))
  for pos, det in (pixel.decode_dafi(image, mask, pncc, subset),
                   pixel.decode_dafi_kdtree(image, mask, tree, subset),
                   (np.asarray(pos_g)[subset], np.asarray(det_g)[subset])):
    pos, det = np.asarray(pos), np.asarray(det)
    assert det[: len(painted)].all() and not det[len(painted):].any()
    np.testing.assert_allclose(pos[: len(painted)], [truth[v] for v in painted], atol=1e-4)
    # ... which is within a pixel of the vertex's true projection.
    assert np.abs(pos[: len(painted)] - px[painted]).max() <= 1.0
    assert np.all(pos[len(painted):] == 0)


def test_jax_and_kdtree_agree_on_noisy_dafi():
  rng = np.random.default_rng(3)
  verts = grid_surface(40)
  pncc = pncc_code(verts)
  hw = (48, 40)
  codes = pncc[rng.integers(0, len(verts), hw[0] * hw[1])] + rng.normal(0, 0.006, (hw[0] * hw[1], 3))
  image = codes.reshape(hw + (3,)).astype(np.float32)
  mask = rng.random(hw) < 0.8
  subset = rng.choice(len(verts), 300, replace=False)
  pos_j, det_j = pixel.decode_dafi(image, mask, pncc, subset)
  pos_k, det_k = pixel.decode_dafi_kdtree(image, mask, pixel.build_pncc_tree(pncc), subset)
  assert det_k.sum() > 50
  np.testing.assert_array_equal(np.asarray(det_j), det_k)
  np.testing.assert_allclose(np.asarray(pos_j), pos_k, atol=1e-4)


def test_threshold_is_strict_and_configurable():
  pncc = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], np.float32)
  image = np.zeros((1, 3, 3), np.float32)
  image[0, 0] = [0.005, 0, 0]        # matched at 0.01
  image[0, 1] = [0.0101, 0, 0]       # not matched at 0.01
  image[0, 2] = [1, 1, 0.98]         # matched only with a looser threshold
  mask = np.ones((1, 3), bool)
  tree = pixel.build_pncc_tree(pncc)
  for fn in (lambda m: pixel.decode_dafi(image, mask, pncc, np.array([0, 1]), m),
             lambda m: pixel.decode_dafi_kdtree(image, mask, tree, np.array([0, 1]), m),
             lambda m: pixel.decode_all_grid(image, mask, pixel.build_pncc_grid(pncc, m))):
    pos, det = fn(0.01)
    np.testing.assert_array_equal(det, [True, False])
    np.testing.assert_allclose(pos[0], [0, 0])
    pos, det = fn(0.05)
    np.testing.assert_array_equal(det, [True, True])
    np.testing.assert_allclose(pos, [[0.5, 0], [2, 0]])


def test_decode_vmaps_over_a_batch_and_validates_input():
  verts, pncc, _, image, mask, truth = painted_dafi(0)
  subset = np.array(sorted(truth))
  fn = jax.jit(jax.vmap(pixel.decode_dafi, in_axes=(0, 0, None, None)))
  pos, det = fn(np.stack([image, image[:, ::-1]]), np.stack([mask, mask[:, ::-1]]), pncc, subset)
  assert pos.shape == (2, len(subset), 2) and det.shape == (2, len(subset))
  np.testing.assert_allclose(pos[1, :, 0], 95 - pos[0, :, 0], atol=1e-4)   # mirrored image
  with pytest.raises(ValueError, match="mask"):
    pixel.decode_dafi(image, mask[:10], pncc, subset)
  with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
    pixel.decode_dafi_kdtree(image[..., :2], mask, pixel.build_pncc_tree(pncc), subset)


# --- The uniform-grid decoder (`decode_all_grid`) --------------------------------------------


def naive_decode(image_HxWx3, mask_HxW, pncc_Vx3, max_dist):
  """Reference: a loop over mask pixels, brute-force nearest code in float64; all vertices."""
  pncc = np.asarray(pncc_Vx3, np.float64)
  count, total = np.zeros(len(pncc)), np.zeros((len(pncc), 2))
  for r, c in zip(*np.nonzero(mask_HxW)):
    d = np.linalg.norm(pncc - np.asarray(image_HxWx3[r, c], np.float64), axis=-1)
    v = int(np.argmin(d))
    if d[v] < max_dist:
      count[v] += 1
      total[v] += (c, r)
  detected = count > 0
  pos = np.where(detected[:, None], total / np.maximum(count, 1)[:, None], 0.0)
  return pos.astype(np.float32), detected


def ambiguous_pixels(image_HxWx3, mask_HxW, pncc_Vx3, max_dist, tol=1e-6):
  """Mask pixels whose float64 answer a float32 decoder cannot be held to: the two nearest codes
  within `tol` of each other (a tie), or the nearest within `tol` of the threshold."""
  k = min(2, len(pncc_Vx3))
  d, _ = cKDTree(np.asarray(pncc_Vx3, np.float64)).query(
      np.asarray(image_HxWx3, np.float64)[mask_HxW], k=[1, 2][:k])
  tie = (d[:, 1] - d[:, 0] < tol) if k == 2 else np.zeros(len(d), bool)
  out = np.zeros(mask_HxW.shape, bool)
  out[mask_HxW] = tie | (np.abs(d[:, 0] - max_dist) < tol)
  return out


def assert_grid_matches(image, mask, pncc, max_dist, reference, grid=None):
  """decode_all_grid equals `reference(image, mask)` once ambiguous pixels leave the mask;
  returns the fraction of mask pixels left out."""
  amb = ambiguous_pixels(image, mask, pncc, max_dist)
  mask = mask & ~amb
  pos, det = pixel.decode_all_grid(image, mask, grid or pixel.build_pncc_grid(pncc, max_dist))
  pos_r, det_r = reference(image, mask)
  np.testing.assert_array_equal(np.asarray(det), det_r)
  np.testing.assert_allclose(np.asarray(pos), pos_r, atol=1e-4)
  assert np.all(np.asarray(pos)[~det_r] == 0)
  return amb.sum() / max(1, (mask | amb).sum())


@pytest.mark.parametrize("max_dist", [0.01, 0.05])
def test_grid_equals_naive_reference(max_dist):
  rng = np.random.default_rng(4)
  pncc = rng.random((400, 3)).astype(np.float32)
  hw = (20, 16)
  near = pncc[rng.integers(0, 400, hw[0] * hw[1])] + rng.normal(0, max_dist / 2, (hw[0] * hw[1], 3))
  far = rng.uniform(-0.3, 1.3, (hw[0] * hw[1], 3))
  image = np.where(rng.random((hw[0] * hw[1], 1)) < 0.8, near, far).reshape(hw + (3,))
  image = image.astype(np.float32)
  mask = rng.random(hw) < 0.9
  ref = functools.partial(naive_decode, pncc_Vx3=pncc, max_dist=max_dist)
  assert assert_grid_matches(image, mask, pncc, max_dist, ref) == 0
  assert naive_decode(image, mask, pncc, max_dist)[1].sum() > 50
  # Per pixel: the nearest vertex and its distance, wherever there is a match.
  codes = image[mask]
  idx, dist = pixel.nearest_vertex_grid(codes, pixel.build_pncc_grid(pncc, max_dist), chunk=100)
  d_PxV = np.linalg.norm(codes[:, None].astype(np.float64) - pncc[None], axis=-1)
  hit = d_PxV.min(1) < max_dist
  np.testing.assert_array_equal(np.asarray(idx)[hit], d_PxV.argmin(1)[hit])
  np.testing.assert_allclose(np.asarray(dist)[hit], d_PxV.min(1)[hit], atol=1e-6)
  # An empty mask detects nothing.
  pos, det = pixel.decode_all_grid(image, np.zeros(hw, bool), pixel.build_pncc_grid(pncc, max_dist))
  assert not np.asarray(det).any() and not np.asarray(pos).any()


@functools.lru_cache(maxsize=1)
def rendered_face():
  """The true DAFI and mask of a 6000-vertex synthetic face rendered at 96 px, and its codes."""
  m = synthetic_model(num_vertices=6000, num_id=10, num_exp=5)
  verts = np.asarray(m.mean_Vx3)
  pose = np.asarray(sampler.frame_pose(verts[np.asarray(m.landmarks_68)], [10.0, 30.0, 5.0], 2.0))
  out = render.render(m, verts, pose, (96, 96))
  return np.asarray(out.dafi), np.asarray(out.mask), np.asarray(m.pncc_Vx3, np.float32)


@pytest.mark.parametrize("noise", [0.0, 0.004])
def test_grid_equals_kdtree_on_rendered_dafi(noise):
  image, mask, pncc = rendered_face()
  image = image + mask[..., None] * np.random.default_rng(5).normal(0, noise, image.shape)
  image = image.astype(np.float32)
  tree = pixel.build_pncc_tree(pncc)
  subset = np.arange(len(pncc))
  ref = lambda im, m: pixel.decode_dafi_kdtree(im, m, tree, subset)  # noqa: E731
  assert ref(image, mask)[1].sum() > 300
  assert assert_grid_matches(image, mask, pncc, pixel.MATCH_DIST, ref) < 0.005


def _codes(lo, hi, shape):
  """float32 codes in [lo, hi], each drawn on its own (no fill value, which would make most
  vertices duplicates and their pixels ties), special values included."""
  return hnp.arrays(np.float32, shape, fill=st.nothing(), elements=st.one_of(
      st.sampled_from([x for x in (0.0, 1.0, lo, hi) if lo <= x <= hi]),
      st.floats(lo, hi, width=32)))


@settings(max_examples=30, deadline=None)
@given(pncc=_codes(0.0, 1.0, (24, 3)), near=st.lists(st.integers(0, 23), min_size=20, max_size=20),
       offset=_codes(-0.75, 0.75, (20, 3)), free=_codes(-0.5, 1.5, (10, 3)),
       mask=hnp.arrays(bool, (5, 6)), max_dist=st.sampled_from([0.01, 0.05]))
def test_grid_equals_brute_force_property(pncc, near, offset, free, mask, max_dist):
  """20 pixels near a vertex (offsets up to 0.75 max_dist per axis: 1.3 max_dist across, so the
  threshold is crossed too), 10 anywhere in [-0.5, 1.5]^3; exactly 0 and 1; empty masks."""
  near_codes = pncc[near] + offset * np.float32(max_dist)
  image = np.concatenate([near_codes, free]).reshape(5, 6, 3)
  grid = pixel.build_pncc_grid(pncc, max_dist)
  # Capacities above the true ones are valid (slots past a cell's count are masked); fixing
  # them keeps one compilation per max_dist across examples.
  grid = grid.replace(capacity=24, row_capacity=24)
  ref = functools.partial(naive_decode, pncc_Vx3=pncc, max_dist=max_dist)
  assert_grid_matches(image, mask, pncc, max_dist, ref, grid)


def test_grid_vmaps_over_a_batch_and_jits():
  image, mask, pncc = rendered_face()
  grid = pixel.build_pncc_grid(pncc)
  rng = np.random.default_rng(6)
  images = np.stack([image, image[:, ::-1], image + rng.normal(0, 0.004, image.shape)])
  masks = np.stack([mask, mask[:, ::-1], np.zeros_like(mask)])
  batched = jax.jit(jax.vmap(pixel.decode_all_grid, in_axes=(0, 0, None)))
  pos_b, det_b = batched(images.astype(np.float32), masks, grid)
  assert pos_b.shape == (3, len(pncc), 2) and det_b.shape == (3, len(pncc))
  for i in range(3):
    pos, det = pixel.decode_all_grid(images[i], masks[i], grid, chunk=500)   # other chunking
    np.testing.assert_array_equal(det_b[i], det)
    np.testing.assert_allclose(pos_b[i], pos, atol=1e-5)
  assert det_b[0].sum() > 300 and not det_b[2].any()
  with pytest.raises(ValueError, match="mask"):
    pixel.decode_all_grid(image, mask[:10], grid)


def test_grid_cells_list_every_vertex_once():
  _, _, pncc = rendered_face()
  pncc = np.concatenate([pncc, [[1, 1, 1], [0, 0, 0], [1, 0, 1]]]).astype(np.float32)
  grid = pixel.build_pncc_grid(pncc)
  g = grid.cells_per_axis
  assert g == 99 and 1 / g > pixel.MATCH_DIST
  start, order = np.asarray(grid.cell_start), np.asarray(grid.sorted_vertex)
  assert start.shape == (g ** 3 + 1,) and start[0] == 0 and start[-1] == len(pncc)
  np.testing.assert_array_equal(np.sort(order), np.arange(len(pncc)))    # a permutation
  counts = np.diff(start)
  assert (counts >= 0).all() and grid.capacity == counts.max()
  row = np.pad(counts.reshape(g, g, g), ((0, 0), (0, 0), (1, 1)))
  assert grid.row_capacity == (row[..., :-2] + row[..., 1:-1] + row[..., 2:]).max()
  # Each vertex sits in the cell of its code; exactly 1.0 goes to the last cell.
  cell = np.clip(np.floor(pncc * np.float32(g)), 0, g - 1).astype(int)
  lin = (cell[:, 0] * g + cell[:, 1]) * g + cell[:, 2]
  cell_of_slot = np.repeat(np.arange(g ** 3), counts)
  np.testing.assert_array_equal(cell_of_slot, lin[order])
  assert lin[-3] == g ** 3 - 1 and lin[-2] == 0
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    pixel.build_pncc_grid(pncc - 0.5)
