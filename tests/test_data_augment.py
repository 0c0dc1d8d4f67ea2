"""Augmentation keeps image, DAFI, mask, landmarks and pose in agreement (no renderer needed)."""

import functools

import cv2
import numpy as np
from hypothesis import given, settings, strategies as st

from cprfa_jax import geometry as geo
from cprfa_jax.data import augment as aug
from cprfa_jax.data.schema import check_example
from cprfa_jax.mm.model import shape
from cprfa_jax.mm.synthetic import synthetic_model

HW = (150, 170)  # not square: the centre and f = min(H, W) / 2 conventions are exercised


@functools.lru_cache(maxsize=None)
def _scene():
  """The model, its vertices, and an example made by splatting vertices as 3x3 PNCC dots."""
  model = synthetic_model(num_vertices=2000)
  rng = np.random.default_rng(0)
  alpha_id = rng.standard_normal(model.num_id).astype(np.float32)
  alpha_exp = 0.5 * rng.standard_normal(model.num_exp).astype(np.float32)
  verts = np.asarray(shape(model, alpha_id, alpha_exp))
  pose = np.asarray(geo.pose_from_degrees(10.0, 25.0, 8.0, s=1.0, tx=0.05, ty=-0.05))
  cam = np.asarray(geo.camera_points(verts, pose))
  pix = np.asarray(geo.to_pixels(cam[:, :2], HW))
  pncc = np.asarray(model.pncc_Vx3)
  dafi = np.zeros(HW + (3,), np.float32)
  for v in np.argsort(cam[:, 2]):  # far to near, so nearer dots overwrite (a z-buffer)
    x, y = np.rint(pix[v]).astype(int)
    dafi[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2] = pncc[v]
  lm = model.landmarks_68
  example = {
      "image": (dafi * 255).astype(np.uint8), "dafi": dafi, "mask": dafi.any(-1),
      "alpha_id": alpha_id, "alpha_exp": alpha_exp, "pose": pose,
      "landmarks": pix[lm].astype(np.float32),
      "landmarks_visible": np.arange(68) % 3 > 0,  # arbitrary: it must pass through unchanged
      "yaw": np.float32(25.0),
  }
  check_example(example, HW, model.num_id, model.num_exp, source="test scene")
  return model, verts, example


def _reprojected(verts_Vx3, pose_6):
  return np.asarray(geo.to_pixels(geo.project(verts_Vx3, pose_6), HW), np.float64)


similarity = dict(angle=st.floats(-0.8, 0.8), dx=st.floats(-0.2, 0.2), dy=st.floats(-0.2, 0.2),
                  scale=st.floats(0.8, 1.25))


@settings(max_examples=30, deadline=None)
@given(**similarity)
def test_augmented_pose_reprojects_onto_augmented_landmarks(angle, dx, dy, scale):
  model, verts, ex = _scene()
  out = aug.augment_example(ex, angle, np.array([dx, dy]), scale)
  check_example(out, HW, model.num_id, model.num_exp, source="augmented")
  lm_proj = _reprojected(verts[np.asarray(model.landmarks_68)], out["pose"])
  np.testing.assert_allclose(out["landmarks"], lm_proj, atol=1e-3)
  for key in ("alpha_id", "alpha_exp", "landmarks_visible", "yaw"):
    np.testing.assert_array_equal(out[key], ex[key])
  np.testing.assert_array_equal(out["pose"][:2], ex["pose"][:2])


@settings(max_examples=20, deadline=None)
@given(**similarity)
def test_dafi_holds_each_vertex_code_at_its_augmented_position(angle, dx, dy, scale):
  model, verts, ex = _scene()
  out = aug.augment_example(ex, angle, np.array([dx, dy]), scale)
  pncc = np.asarray(model.pncc_Vx3)
  src = np.rint(_reprojected(verts, ex["pose"])).astype(int)
  dst = np.rint(_reprojected(verts, out["pose"])).astype(int)
  inside = lambda p, m=0: ((p[:, 0] >= m) & (p[:, 0] < HW[1] - m)
                           & (p[:, 1] >= m) & (p[:, 1] < HW[0] - m))
  ok = inside(src, 1) & inside(dst)
  # Vertices whose whole 3x3 dot survived the source z-buffer. For k >= 0.8 the source point
  # that nearest warping samples for the pixel nearest p' lies within 0.5 + 0.71 / k < 1.5 px
  # of the dot's centre, i.e. inside the dot: every one of them must hold its exact code.
  seen = ok.copy()
  for oy in (-1, 0, 1):
    for ox in (-1, 0, 1):
      seen[ok] &= (ex["dafi"][src[ok, 1] + oy, src[ok, 0] + ox] == pncc[ok]).all(-1)
  assert seen.sum() > 100
  got = out["dafi"][dst[seen, 1], dst[seen, 0]]
  assert (got == pncc[seen]).all(-1).mean() > 0.99  # exact codes, not approximately equal
  assert out["mask"][dst[seen, 1], dst[seen, 0]].mean() > 0.99


def test_identity_returns_the_example_unchanged():
  _, _, ex = _scene()
  out = aug.augment_example(ex, 0.0, np.zeros(2), 1.0)
  assert out.keys() == ex.keys()
  for key in ex:
    assert np.asarray(out[key]).dtype == np.asarray(ex[key]).dtype, key
    np.testing.assert_array_equal(out[key], ex[key], err_msg=key)


@settings(max_examples=30, deadline=None)
@given(**similarity)
def test_inverse_composition_round_trips_landmarks_and_pose(angle, dx, dy, scale):
  _, _, ex = _scene()
  params = (angle, np.array([dx, dy]), scale)
  back = aug.augment_example(aug.augment_example(ex, *params), *aug.invert_similarity(*params))
  np.testing.assert_allclose(back["landmarks"], ex["landmarks"], atol=1e-4)
  # Exact up to the float32 storage of the intermediate pose.
  np.testing.assert_allclose(back["pose"], ex["pose"], rtol=1e-6, atol=1e-6)


def test_same_seed_same_similarity():
  p, q = aug.similarity_params(3), aug.similarity_params(3)
  assert p[0] == q[0] and p[2] == q[2] and np.array_equal(p[1], q[1])


@settings(max_examples=20, deadline=None)
@given(**similarity)
def test_dafi_has_no_new_colours_and_mask_agrees(angle, dx, dy, scale):
  _, _, ex = _scene()
  out = aug.augment_example(ex, angle, np.array([dx, dy]), scale)
  colours_in = {tuple(c) for c in ex["dafi"].reshape(-1, 3)} | {(0.0, 0.0, 0.0)}
  colours_out = {tuple(c) for c in out["dafi"].reshape(-1, 3)}
  assert colours_out <= colours_in
  np.testing.assert_array_equal(out["mask"], out["dafi"].any(-1))


def test_pixel_matrix_is_opencv_rotation_about_the_centre():
  """A positive angle (counter-clockwise, y up) is OpenCV's positive (counter-clockwise on
  screen) angle; a positive shift moves points right and up (smaller pixel y)."""
  h, w = HW
  centre = ((w - 1) / 2.0, (h - 1) / 2.0)
  m = aug.pixel_matrix(0.3, np.zeros(2), 1.2, HW)
  np.testing.assert_allclose(m, cv2.getRotationMatrix2D(centre, np.degrees(0.3), 1.2), atol=1e-12)
  m = aug.pixel_matrix(0.0, np.array([0.1, 0.2]), 1.0, HW)
  np.testing.assert_allclose(m[:, 2], [0.1 * min(HW) / 2, -0.2 * min(HW) / 2])


def test_pose_roll_wraps_into_range():
  pose = np.array([0.1, 0.2, 3.0, 1.0, 0.0, 0.0], np.float32)
  out = aug.transform_pose(pose, 0.5, np.zeros(2), 1.0)
  assert -np.pi <= out[2] <= np.pi
  np.testing.assert_allclose(out[2], 3.5 - 2 * np.pi, atol=1e-6)
