"""Weak-perspective projection (Eq. 2) and pose conventions.

Pose vectors everywhere are the paper's `pose_6 = [r_x, r_y, r_z, s, t_x, t_y]`:

    Y = S(s) R_z(r_z) R_y(r_y) R_x(r_x) X + t                                   (Eq. 2)

with the usual right-handed elementary rotations (R_x(a) = [[1,0,0],[0,c,-s],[0,s,c]], ...).
Points live in *normalised image coordinates*: x to the right, y up, the image centre at 0 and
half the shorter image side equal to 1. In the canonical model frame (see `mm.model`) that makes:

* r_x (pitch) > 0: the nose moves down in the image (the subject looks down);
* r_y (yaw) > 0: the nose moves to the image's right (the subject turns to their left);
* r_z (roll) > 0: counter-clockwise in the image.

`to_pixels` / `from_pixels` map to 0-based pixel coordinates (x right, y down, pixel centres on
integers, the OpenCV convention). The 300W-LP / AFLW2000-3D `Pose_Para` convention, which has
transposed elementary rotations and a flipped, 1-based y, is converted by `pose_from_pose_para`
and `pose_para_from_pose`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def rot_x(a):
  c, s = jnp.cos(a), jnp.sin(a)
  o, z = jnp.ones_like(a), jnp.zeros_like(a)
  return jnp.stack([jnp.stack([o, z, z]), jnp.stack([z, c, -s]), jnp.stack([z, s, c])])


def rot_y(a):
  c, s = jnp.cos(a), jnp.sin(a)
  o, z = jnp.ones_like(a), jnp.zeros_like(a)
  return jnp.stack([jnp.stack([c, z, s]), jnp.stack([z, o, z]), jnp.stack([-s, z, c])])


def rot_z(a):
  c, s = jnp.cos(a), jnp.sin(a)
  o, z = jnp.ones_like(a), jnp.zeros_like(a)
  return jnp.stack([jnp.stack([c, -s, z]), jnp.stack([s, c, z]), jnp.stack([z, z, o])])


def rotation_matrix(rx, ry, rz) -> jnp.ndarray:
  """R = R_z(r_z) R_y(r_y) R_x(r_x), the order of Eq. 2. Returns (3, 3)."""
  return rot_z(rz) @ rot_y(ry) @ rot_x(rx)


def euler_zyx(r_3x3) -> jnp.ndarray:
  """Inverse of `rotation_matrix`: (r_x, r_y, r_z) with r_y in [-pi/2, pi/2]."""
  r = jnp.asarray(r_3x3)
  rx = jnp.arctan2(r[2, 1], r[2, 2])
  ry = jnp.arctan2(-r[2, 0], jnp.hypot(r[0, 0], r[1, 0]))
  rz = jnp.arctan2(r[1, 0], r[0, 0])
  return jnp.stack([rx, ry, rz])


def camera_points(verts_Vx3, pose_6) -> jnp.ndarray:
  """Vertices rotated and scaled into the camera frame, translated in x, y: (V, 3).

  The first two columns are Eq. 2's projection; the third is depth toward the camera (used for
  visibility and z-buffering).
  """
  pose_6 = jnp.asarray(pose_6)
  r = rotation_matrix(pose_6[0], pose_6[1], pose_6[2])
  cam = pose_6[3] * (jnp.asarray(verts_Vx3) @ r.T)
  return cam + jnp.concatenate([pose_6[4:6], jnp.zeros(1, cam.dtype)])


def project(verts_Vx3, pose_6) -> jnp.ndarray:
  """Eq. 2: Y = S(s) R_z R_y R_x X + t. verts (V, 3), pose (6,) -> (V, 2) normalised coords."""
  return camera_points(verts_Vx3, pose_6)[:, :2]


def _image_frame(hw):
  h, w = hw
  centre = jnp.array([(w - 1) / 2.0, (h - 1) / 2.0])
  return centre, min(h, w) / 2.0


def to_pixels(points_Nx2, hw) -> jnp.ndarray:
  """Normalised (y up) -> 0-based pixel coordinates (x right, y down) of an image (H, W)."""
  centre, f = _image_frame(hw)
  p = jnp.asarray(points_Nx2)
  return jnp.stack([centre[0] + f * p[..., 0], centre[1] - f * p[..., 1]], -1)


def from_pixels(pixels_Nx2, hw) -> jnp.ndarray:
  """0-based pixel coordinates of an image (H, W) -> normalised (y up)."""
  centre, f = _image_frame(hw)
  p = jnp.asarray(pixels_Nx2)
  return jnp.stack([(p[..., 0] - centre[0]) / f, (centre[1] - p[..., 1]) / f], -1)


# ----------------------------------------------------------------------------------------------
# Euler angles in degrees for users: (pitch, yaw, roll) = (r_x, r_y, r_z) of Eq. 2 (the
# predictor reports np.degrees(pose[:3])).

def pose_from_degrees(pitch, yaw, roll, s=1.0, tx=0.0, ty=0.0) -> jnp.ndarray:
  return jnp.array([np.radians(pitch), np.radians(yaw), np.radians(roll), s, tx, ty], jnp.float32)


# ----------------------------------------------------------------------------------------------
# 300W-LP / AFLW2000-3D `Pose_Para` = [pitch, yaw, roll, tx, ty, tz, scale] (../shared formats):
#   R = Rx'(pitch) Ry'(yaw) Rz'(roll) with Rx'(a) = R_x(a)^T (transposed elementary rotations),
#   V = scale * R @ X_raw + t;  image_x = V0, image_y = H + 1 - V1 (1-based pixels).

def pose_para_rotation(pitch, yaw, roll) -> jnp.ndarray:
  return rot_x(pitch).T @ rot_y(yaw).T @ rot_z(roll).T


def pose_from_pose_para(pose_para_7, offset_3, unit_scale, hw) -> jnp.ndarray:
  """`Pose_Para` of an (H, W) image -> `pose_6` for the same model in the canonical frame.

  The model's canonical frame is X_c = unit_scale * (X_raw - offset_3) (see `mm.model`), so
  V = (scale / unit_scale) R X_c + scale R offset + t; the normalised image coordinates of the
  1-based pixel V are ((V0 - (W+1)/2) / f, (V1 - (H+1)/2) / f) with f = min(H, W) / 2.
  """
  pp = jnp.asarray(pose_para_7, jnp.float32).reshape(-1)
  h, w = hw
  f = min(h, w) / 2.0
  r = pose_para_rotation(pp[0], pp[1], pp[2])
  scale = pp[6]
  t_xy = (scale * (r @ jnp.asarray(offset_3, jnp.float32))[:2] + pp[3:5]
          - jnp.array([(w + 1) / 2.0, (h + 1) / 2.0])) / f
  return jnp.concatenate([euler_zyx(r), jnp.stack([scale / (unit_scale * f)]), t_xy])


def pose_para_from_pose(pose_6, offset_3, unit_scale, hw, tz=0.0) -> jnp.ndarray:
  """Inverse of `pose_from_pose_para`. tz (depth offset) is not observable; it is set to `tz`."""
  pose_6 = jnp.asarray(pose_6, jnp.float32)
  h, w = hw
  f = min(h, w) / 2.0
  r = rotation_matrix(pose_6[0], pose_6[1], pose_6[2])
  # R = Rx(-p) Ry(-y) Rz(-r)  <=>  R^T = Rz(r) Ry(y) Rx(p): a ZYX decomposition of R^T.
  pitch, yaw, roll = euler_zyx(r.T)
  scale = pose_6[3] * unit_scale * f
  t_xy = (pose_6[4:6] * f + jnp.array([(w + 1) / 2.0, (h + 1) / 2.0])
          - scale * (r @ jnp.asarray(offset_3, jnp.float32))[:2])
  return jnp.concatenate([jnp.stack([pitch, yaw, roll]), t_xy, jnp.stack([jnp.asarray(tz, jnp.float32), scale])])


def project_pose_para(verts_raw_Vx3, pose_para_7, hw) -> jnp.ndarray:
  """Reference projection of the 300W-LP files, in 0-based pixels (x right, y down)."""
  pp = jnp.asarray(pose_para_7, jnp.float32).reshape(-1)
  v = pp[6] * (jnp.asarray(verts_raw_Vx3) @ pose_para_rotation(pp[0], pp[1], pp[2]).T) + pp[3:6]
  return jnp.stack([v[:, 0] - 1.0, hw[0] - v[:, 1]], -1)


# ----------------------------------------------------------------------------------------------
# Visibility

def vertex_normals(verts_Vx3, triangles_Tx3) -> jnp.ndarray:
  """Area-weighted unit vertex normals (V, 3); outward for `mm.model` oriented triangles."""
  v = jnp.asarray(verts_Vx3)
  a, b, c = (v[triangles_Tx3[:, i]] for i in range(3))
  face_n = jnp.cross(b - a, c - a)
  n = jnp.zeros_like(v)
  for i in range(3):
    n = n.at[triangles_Tx3[:, i]].add(face_n)
  return n / jnp.maximum(jnp.linalg.norm(n, axis=-1, keepdims=True), 1e-12)


def front_facing(verts_Vx3, triangles_Tx3, pose_6) -> jnp.ndarray:
  """Per-vertex visibility by normals: True where the rotated normal points at the camera.

  This ignores self-occlusion (a cheek hidden behind the nose at a profile view still counts as
  front-facing); the z-buffer renderer gives exact visibility.
  """
  pose_6 = jnp.asarray(pose_6)
  r = rotation_matrix(pose_6[0], pose_6[1], pose_6[2])
  return (vertex_normals(verts_Vx3, triangles_Tx3) @ r.T)[:, 2] > 0
