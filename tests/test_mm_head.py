"""mm.head: the head around a model's face. Mesh topology against the face's (one closed,
consistently wound surface), the DAFI and mask left exact by the head (a bald frontal head's
mask is the face-only render's; elsewhere the head only hides face pixels and never changes a
visible one), the head following identity and expression, determinism by key; on the
procedural model and, where ../shared is present, the SFM."""

from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import SFM_DIR, requires_sfm
from cprfa_jax import render
from cprfa_jax.data.sampler import frame_pose
from cprfa_jax.mm import head as head_lib
from cprfa_jax.mm.model import shape
from cprfa_jax.mm.synthetic import EXPRESSIONS, synthetic_model

SIZE = 96


@pytest.fixture(scope="module")
def model():
  return synthetic_model(num_vertices=2500)


@pytest.fixture(scope="module")
def head(model):
  return head_lib.model_head(model)


def _grid_mesh(n_r, n_c):
  idx = np.arange(n_r * n_c).reshape(n_r, n_c)
  a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
  return np.concatenate([np.stack([a, b, d], -1), np.stack([a, d, c], -1)]).reshape(-1, 3), idx


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 9), st.integers(2, 9))
def test_boundary_loop_is_the_grid_border_in_triangle_order(n_r, n_c):
  tri, idx = _grid_mesh(n_r, n_c)
  loop = head_lib.boundary_loop(tri)
  border = set(idx[0]) | set(idx[-1]) | set(idx[:, 0]) | set(idx[:, -1])
  assert sorted(loop) == sorted(border) and len(loop) == len(border)
  directed = {tuple(e) for t in tri for e in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0]))}
  assert all((a, b) in directed for a, b in zip(loop, np.roll(loop, -1)))


def test_a_closed_mesh_has_no_loop():
  tet = np.array([[0, 1, 2], [0, 3, 1], [1, 3, 2], [2, 3, 0]])
  with pytest.raises(ValueError, match="no boundary loop"):
    head_lib.boundary_loop(tet)


def _edges(tri):
  return Counter(tuple(e) for t in np.asarray(tri)
                 for e in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])))


def _closes_the_face(model, head):
  """Unpaired edges of face + cranium. The join has no gap, no duplicated vertex and no
  flipped band when every directed edge is there once and its reverse once, except on holes
  of the face mesh other than its outer boundary."""
  skull = np.asarray(head.triangles_Tx3)[np.all(
      np.asarray(head.part_H)[np.maximum(np.asarray(head.triangles_Tx3) - model.num_vertices, 0)]
      == head_lib.SKULL, -1)]
  edges = _edges(np.concatenate([np.asarray(model.triangles_Tx3), skull]))
  assert max(edges.values()) == 1
  return [(a, b) for a, b in edges if edges[(b, a)] != 1]


def test_the_cranium_closes_the_face_mesh(model, head):
  assert _closes_the_face(model, head) == []


@requires_sfm
def test_the_cranium_closes_the_sfm_too():
  from cprfa_jax.mm.sfm import load_sfm
  sfm = load_sfm(SFM_DIR)
  head = head_lib.model_head(sfm)
  open_edges = np.asarray(_closes_the_face(sfm, head))
  assert len(open_edges) < len(head.loop_L)        # the SFM's inner holes only
  assert not np.isin(open_edges, np.asarray(head.loop_L)).any()
  assert open_edges.max() < sfm.num_vertices


def _face(model, seed):
  if seed == 0:
    return model.mean_Vx3
  rng = np.random.default_rng(seed)
  return shape(model, rng.standard_normal(model.num_id).astype(np.float32),
               np.clip(0.7 * rng.standard_normal(model.num_exp), -3, 3).astype(np.float32))


def _render_pair(model, head, face, hshape, angles):
  pose = frame_pose(face[model.landmarks_68], jnp.asarray(angles, jnp.float32), 2.0)
  hv = head_lib.head_vertices(head, face, hshape)
  grey = jnp.full(hv.shape, 0.5)
  with_head = render.render_batch(model, face[None], pose[None], (SIZE, SIZE),
                                  surround=render.Surround(head.triangles_Tx3, hv[None],
                                                           grey[None]))
  alone = render.render_batch(model, face[None], pose[None], (SIZE, SIZE))
  return jax.tree.map(lambda x: np.asarray(x[0]), (with_head, alone))


@pytest.mark.parametrize("seed", range(6))
def test_a_bald_frontal_head_keeps_the_face_only_mask(model, head, seed):
  hshape = (head_lib.default_head_shape() if seed == 0
            else head_lib.random_head_shape(jax.random.key(seed)))
  face = _face(model, seed)
  for pitch in (0.0, 15.0, -15.0):
    with_head, alone = _render_pair(model, head, face, hshape, (pitch, 0.0, 0.0))
    np.testing.assert_array_equal(with_head.mask, alone.mask)
    np.testing.assert_array_equal(with_head.dafi, alone.dafi)
    # ... and the head is there: it fills pixels beside the face.
    assert (with_head.tri_id >= 0).sum() > 1.3 * alone.mask.sum()


@pytest.mark.parametrize("angles", [(0, 90, 0), (0, -70, 0), (20, 45, 10), (-25, 120, -20),
                                    (0, 180, 0)])
def test_the_head_only_hides_face_pixels(model, head, angles):
  face = _face(model, 3)
  with_head, alone = _render_pair(model, head, face,
                                  head_lib.random_head_shape(jax.random.key(3)), angles)
  assert not (with_head.mask & ~alone.mask).any()
  np.testing.assert_array_equal(with_head.dafi[with_head.mask], alone.dafi[with_head.mask])
  assert not with_head.dafi[~with_head.mask].any()
  num_face = model.triangles_Tx3.shape[0]
  np.testing.assert_array_equal(with_head.mask, (with_head.tri_id >= 0)
                                & (with_head.tri_id < num_face))


def test_in_profile_the_ear_hides_face_pixels(model, head):
  # The ear stands in front of the face region's side (which reaches behind the ears in this
  # model): those pixels are ear, not mask. Without this the tests above could pass with no
  # head drawn in front of anything.
  with_head, alone = _render_pair(model, head, model.mean_Vx3, head_lib.default_head_shape(),
                                  (0.0, 90.0, 0.0))
  hidden = alone.mask & ~with_head.mask
  assert hidden.sum() > 20
  parts = np.asarray(head.part_H)[np.asarray(head.triangles_Tx3)[
      with_head.tri_id[hidden] - model.triangles_Tx3.shape[0]] - model.num_vertices]
  assert (parts == head_lib.EAR).all()


def test_the_head_follows_the_jaw(model, head):
  # Open the jaw: the first ring follows the boundary it grows from, the back of the head
  # stays where it is (up to the skull's scale with the face).
  alpha = np.zeros(model.num_exp, np.float32)
  alpha[EXPRESSIONS.index("jaw_open")] = 3.0
  closed = head_lib.head_vertices(head, model.mean_Vx3, head_lib.default_head_shape())
  opened_face = shape(model, np.zeros(model.num_id, np.float32), alpha)
  opened = head_lib.head_vertices(head, opened_face, head_lib.default_head_shape())
  loop = np.asarray(head.loop_L)
  d_edge = np.asarray(opened_face - model.mean_Vx3)[loop]
  moving = np.linalg.norm(d_edge, axis=-1) > 0.02
  assert moving.sum() > 5
  d_ring1 = np.asarray(opened - closed)[:len(loop)]
  err = np.linalg.norm(d_ring1 - d_edge, axis=-1)[moving]
  assert (err < 0.5 * np.linalg.norm(d_edge, axis=-1)[moving]).all()
  pole = len(loop) * head_lib.NUM_RINGS
  assert np.linalg.norm(np.asarray(opened - closed)[pole]) < 0.02


def test_head_variation_is_a_pure_function_of_the_key(model, head):
  a, b = (head_lib.random_head_shape(jax.random.key(7)) for _ in range(2))
  c = head_lib.random_head_shape(jax.random.key(8))
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert not np.allclose(a.skull_3, c.skull_3)
  la, lb = (render.random_head_look(jax.random.key(7)) for _ in range(2))
  jax.tree.map(np.testing.assert_array_equal, la, lb)


def test_head_albedo_joins_the_face_colours_and_fades_to_skin(model, head):
  face_albedo = render.default_albedo(model)
  skin = jnp.array([0.7, 0.5, 0.4])
  hv = head_lib.head_vertices(head, model.mean_Vx3, head_lib.default_head_shape())
  look = render.HeadLook(jnp.array([0.1, 0.2, 0.9]), jnp.float32(-1.3))
  alb = np.asarray(render.head_albedo(head, face_albedo, skin, look, hv))
  loop, r = np.asarray(head.loop_L), head_lib.NUM_RINGS
  rings = alb[:len(loop) * r].reshape(r, len(loop), 3)
  edge = np.asarray(face_albedo)[loop]
  t = np.asarray(head.ring_t_R)
  # The first ring is within its fade of the boundary's colours, the far rings plain skin.
  assert np.abs(rings[0] - edge).max() <= t[0] / 0.3 * np.abs(edge - np.asarray(skin)).max() + 1e-6
  np.testing.assert_allclose(rings[t >= 0.3], np.broadcast_to(skin, rings[t >= 0.3].shape),
                             atol=1e-6)
  part = np.asarray(head.part_H)
  low = np.asarray(hv)[:, 1] - float(head.centre_3[1]) < -1.3
  np.testing.assert_allclose(alb[(part == head_lib.TORSO) & low], 0 * alb[(part == head_lib.TORSO)
                             & low] + [0.1, 0.2, 0.9], atol=1e-6)
  ear = alb[part == head_lib.EAR]
  assert (ear[:, 0] > ear[:, 1]).all()
