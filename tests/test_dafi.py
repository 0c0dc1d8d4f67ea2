"""DAFI decoding (§2.1): painted PNCC images decode to the vertices' true positions."""

import jax
import numpy as np
import pytest
from scipy.spatial import cKDTree

from cprfa_jax import dafi
from cprfa_jax import geometry as geo
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
  tree = dafi.build_pncc_tree(pncc)
  for pos, det in (dafi.decode_dafi(image, mask, pncc, subset),
                   dafi.decode_dafi_kdtree(image, mask, tree, subset)):
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
  pos_j, det_j = dafi.decode_dafi(image, mask, pncc, subset)
  pos_k, det_k = dafi.decode_dafi_kdtree(image, mask, dafi.build_pncc_tree(pncc), subset)
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
  tree = dafi.build_pncc_tree(pncc)
  for fn in (lambda m: dafi.decode_dafi(image, mask, pncc, np.array([0, 1]), m),
             lambda m: dafi.decode_dafi_kdtree(image, mask, tree, np.array([0, 1]), m)):
    pos, det = fn(0.01)
    np.testing.assert_array_equal(det, [True, False])
    np.testing.assert_allclose(pos[0], [0, 0])
    pos, det = fn(0.05)
    np.testing.assert_array_equal(det, [True, True])
    np.testing.assert_allclose(pos, [[0.5, 0], [2, 0]])


def test_decode_vmaps_over_a_batch_and_validates_input():
  verts, pncc, _, image, mask, truth = painted_dafi(0)
  subset = np.array(sorted(truth))
  fn = jax.jit(jax.vmap(dafi.decode_dafi, in_axes=(0, 0, None, None)))
  pos, det = fn(np.stack([image, image[:, ::-1]]), np.stack([mask, mask[:, ::-1]]), pncc, subset)
  assert pos.shape == (2, len(subset), 2) and det.shape == (2, len(subset))
  np.testing.assert_allclose(pos[1, :, 0], 95 - pos[0, :, 0], atol=1e-4)   # mirrored image
  with pytest.raises(ValueError, match="mask"):
    dafi.decode_dafi(image, mask[:10], pncc, subset)
  with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
    dafi.decode_dafi_kdtree(image[..., :2], mask, dafi.build_pncc_tree(pncc), subset)
