"""Eq. 2 against independent computations, and the pose conventions."""

import cv2
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings, strategies as st

from cprfa_jax import geometry as geo

angle = st.floats(-1.5, 1.5)


@settings(max_examples=25, deadline=None)
@given(rx=angle, ry=angle, rz=st.floats(-3.1, 3.1), s=st.floats(0.2, 3.0),
       tx=st.floats(-1, 1), ty=st.floats(-1, 1), seed=st.integers(0, 1000))
def test_projection_matches_opencv_far_camera(rx, ry, rz, s, tx, ty, seed):
  """Weak perspective is the limit of a pinhole camera at distance D with focal length ~ D."""
  hw = (120, 160)
  x = np.random.default_rng(seed).normal(0, 0.5, (20, 3))
  pose = jnp.array([rx, ry, rz, s, tx, ty])
  ours = np.asarray(geo.to_pixels(geo.project(x, pose), hw))

  # OpenCV's camera frame is x right, y down, z away from the camera; ours has y up, z toward it.
  flip = np.diag([1.0, -1.0, -1.0])
  rot = flip @ np.asarray(geo.rotation_matrix(rx, ry, rz), np.float64)
  rvec, _ = cv2.Rodrigues(rot)
  d = 1e6
  f_img = min(hw) / 2
  k = np.array([[f_img * s * d, 0, (hw[1] - 1) / 2], [0, f_img * s * d, (hw[0] - 1) / 2], [0, 0, 1]])
  tvec = np.array([tx / s, -ty / s, d])
  cv_px, _ = cv2.projectPoints(x, rvec, tvec, k, None)
  np.testing.assert_allclose(ours, cv_px[:, 0], atol=5e-3)


def test_hand_computed_cases():
  nose = np.array([[0.0, 0.0, 1.0]])
  right = np.array([[1.0, 0.0, 0.0]])
  # Yaw +90 deg: the nose (toward the camera) goes to the image's right.
  np.testing.assert_allclose(geo.project(nose, geo.pose_from_degrees(0, 90, 0)), [[1, 0]], atol=1e-6)
  # Pitch +90 deg: the nose goes down.
  np.testing.assert_allclose(geo.project(nose, geo.pose_from_degrees(90, 0, 0)), [[0, -1]], atol=1e-6)
  # Roll +90 deg is counter-clockwise: +x goes to +y; then scale 2 and shift.
  np.testing.assert_allclose(geo.project(right, geo.pose_from_degrees(0, 0, 90, s=2, tx=0.5, ty=-1)),
                             [[0.5, 1.0]], atol=1e-6)
  # Order R_z R_y R_x: pitch first (nose -> -y), and yaw then leaves the y axis alone; the
  # other order would send the nose to +x first and pitch would leave it there.
  np.testing.assert_allclose(geo.project(nose, geo.pose_from_degrees(90, 90, 0)), [[0, -1]], atol=1e-6)
  # Pixels: normalised (0, 0) is the centre; y up maps to smaller rows.
  np.testing.assert_allclose(geo.to_pixels(np.array([[0.0, 0.0], [1.0, 1.0]]), (100, 200)),
                             [[99.5, 49.5], [149.5, -0.5]])


@settings(max_examples=50, deadline=None)
@given(rx=st.floats(-3.1, 3.1), ry=st.floats(-1.5, 1.5), rz=st.floats(-3.1, 3.1))
def test_euler_round_trip(rx, ry, rz):
  r = geo.rotation_matrix(rx, ry, rz)
  np.testing.assert_allclose(geo.rotation_matrix(*geo.euler_zyx(r)), r, atol=2e-5)
  np.testing.assert_allclose(geo.euler_zyx(r), [rx, ry, rz], atol=2e-3)


def test_pixel_round_trip():
  p = np.random.default_rng(0).uniform(-2, 2, (50, 2))
  for hw in [(64, 64), (120, 90), (450, 450)]:
    np.testing.assert_allclose(geo.from_pixels(geo.to_pixels(p, hw), hw), p, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(pp=st.tuples(st.floats(-1.2, 1.2), st.floats(-1.5, 1.5), st.floats(-1.0, 1.0),
                    st.floats(100, 350), st.floats(100, 350), st.floats(-50, 50),
                    st.floats(5e-4, 3e-3)), seed=st.integers(0, 1000))
def test_pose_para_conversion_projects_identically(pp, seed):
  """The same raw vertices projected with the 300W-LP convention and with Eq. 2."""
  hw = (450, 450)
  rng = np.random.default_rng(seed)
  raw = rng.normal(0, 5e4, (30, 3))
  offset, unit = rng.normal(0, 1e4, 3), 1.0 / 1.5e5
  canonical = unit * (raw - offset)
  pose = geo.pose_from_pose_para(np.array(pp), offset, unit, hw)
  ours = geo.to_pixels(geo.project(canonical, pose), hw)
  theirs = geo.project_pose_para(raw, np.array(pp), hw)
  np.testing.assert_allclose(ours, theirs, atol=2e-2)
  back = geo.pose_para_from_pose(pose, offset, unit, hw, tz=pp[5])
  np.testing.assert_allclose(
      geo.to_pixels(geo.project(canonical, geo.pose_from_pose_para(back, offset, unit, hw)), hw),
      theirs, atol=2e-2)


def test_pose_para_round_trip_values():
  pp = np.array([0.3, -0.7, 0.2, 220.0, 240.0, 0.0, 1.2e-3])
  pose = geo.pose_from_pose_para(pp, np.zeros(3), 1e-5, (450, 450))
  np.testing.assert_allclose(geo.pose_para_from_pose(pose, np.zeros(3), 1e-5, (450, 450)), pp,
                             rtol=1e-4, atol=1e-4)


def test_front_facing_follows_yaw():
  # A hemisphere facing +z: at yaw +90 deg only the half with x < 0 still faces the camera.
  th, ph = np.meshgrid(np.linspace(-1.5, 1.5, 21), np.linspace(-1.5, 1.5, 21), indexing="ij")
  verts = np.stack([np.sin(th) * np.cos(ph), np.sin(ph), np.cos(th) * np.cos(ph)], -1).reshape(-1, 3)
  idx = np.arange(21 * 21).reshape(21, 21)
  a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
  tri = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
  n = np.asarray(geo.vertex_normals(verts, tri))
  if (n[:, 2] < 0).mean() > 0.5:   # make the winding outward, as mm.model.orient_triangles does
    tri = tri[:, [0, 2, 1]]
  assert np.all(np.asarray(geo.front_facing(verts, tri, geo.pose_from_degrees(0, 0, 0)))[verts[:, 2] > 0.05])
  vis = np.asarray(geo.front_facing(verts, tri, geo.pose_from_degrees(0, 90, 0)))
  assert np.all(vis[verts[:, 0] < -0.05]) and not np.any(vis[verts[:, 0] > 0.05])
