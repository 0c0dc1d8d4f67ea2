"""In-plane similarity augmentation (§3.2: rotation, translation, scaling), host side.

One similarity acts on every geometric field of an example (`data.schema`) at once, so the
image, its DAFI and mask, the landmarks and the pose stay in agreement. It is defined in the
normalised image coordinates of `geometry.projection` (x right, y up, centre 0, half the
shorter side = 1):

    y' = k Rot(theta) y + d,    Rot(theta) counter-clockwise (y up), k > 0, d (2,).

Composed with Eq. 2, y = s [R_z(r_z) R_y R_x X]_xy + t, and because R_z only mixes x and y,
Rot(theta) [R_z(r_z) M]_xy = [R_z(r_z + theta) M]_xy, hence exactly

    r_z' = r_z + theta,  s' = k s,  t' = k Rot(theta) t + d;  r_x, r_y, alpha unchanged.

In pixels (p = c + f F y, F = diag(1, -1), c the image centre, f half the shorter side) the
same map is p' = k F Rot(theta) F (p - c) + c + f F d = k Rot(-theta) (p - c) + c + f F d. The
y-flip turns the counter-clockwise Rot(theta) into Rot(-theta), clockwise in pixel algebra
(y down), yet still counter-clockwise as seen on screen: cv2.getRotationMatrix2D(c, +theta, k).

Choices: `landmarks_visible` keeps its meaning "not occluded" and is not changed when a
landmark leaves the frame (in-frame is a cheap test on `landmarks` and the image size; folding
it in would lose information). `yaw` is r_y and unchanged. Pixels brought in from outside the
image are 0 in image, DAFI and mask (see `_warp`).
"""

from __future__ import annotations

import cv2
import numpy as np


def similarity_params(rng, max_rot_deg=30.0, max_shift=0.1, scale_range=(0.9, 1.1)):
  """Samples (angle rad, shift_2 normalised units, scale) with a host numpy Generator or seed.

  Paper §3.2 gives no ranges; the defaults are the usual ones for face crops (3DDFA-style).
  Angle and each shift component are uniform; the scale is log-uniform so that k and 1 / k are
  equally likely (zooming in and out by the same factor are equally frequent).
  """
  rng = np.random.default_rng(rng)
  lo, hi = scale_range
  if not 0 < lo <= hi:
    raise ValueError(f"scale_range={scale_range}: need 0 < low <= high")
  angle = np.radians(rng.uniform(-max_rot_deg, max_rot_deg))
  shift_2 = rng.uniform(-max_shift, max_shift, 2)
  scale = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
  return float(angle), shift_2, scale


def invert_similarity(angle, shift_2, scale):
  """Parameters of the inverse map: y = (1/k) Rot(-theta) y' - (1/k) Rot(-theta) d."""
  c, s = np.cos(angle), np.sin(angle)
  rot_inv_2x2 = np.array([[c, s], [-s, c]])
  return -angle, -(rot_inv_2x2 @ np.asarray(shift_2, np.float64)) / scale, 1.0 / scale


def pixel_matrix(angle, shift_2, scale, hw):
  """The similarity as a 2x3 forward matrix on 0-based pixels of an (H, W) image (cv2 order)."""
  h, w = hw
  centre_2 = np.array([(w - 1) / 2.0, (h - 1) / 2.0])  # as `projection.to_pixels`
  f = min(h, w) / 2.0
  c, s = scale * np.cos(angle), scale * np.sin(angle)
  a_2x2 = np.array([[c, s], [-s, c]])  # k Rot(-theta): see the module docstring
  b_2 = centre_2 - a_2x2 @ centre_2 + f * np.array([shift_2[0], -shift_2[1]])
  return np.concatenate([a_2x2, b_2[:, None]], 1)


def transform_pose(pose_6, angle, shift_2, scale):
  """Eq. 2 pose after the similarity (module docstring); r_z is wrapped only if it leaves
  [-pi, pi], so that an identity map returns the same bits."""
  p = np.asarray(pose_6, np.float64)
  c, s = np.cos(angle), np.sin(angle)
  rz = p[2] + angle
  if abs(rz) > np.pi:
    rz = (rz + np.pi) % (2 * np.pi) - np.pi
  t_2 = scale * (np.array([[c, -s], [s, c]]) @ p[4:6]) + np.asarray(shift_2, np.float64)
  out = np.array([p[0], p[1], rz, scale * p[3], t_2[0], t_2[1]])
  return out.astype(np.asarray(pose_6).dtype)


def _warp(img, m_2x3, interp):
  # BORDER_CONSTANT 0 everywhere: dafi 0 and mask False mean "no face here", and a black image
  # agrees with them. Replicate or reflect would copy face texture (a mirrored half face under
  # reflect) into pixels the labels call background, teaching the network to contradict itself.
  h, w = img.shape[:2]
  return cv2.warpAffine(img, m_2x3, (w, h), flags=interp, borderMode=cv2.BORDER_CONSTANT,
                        borderValue=0)


def augment_example(example, angle, shift_2, scale):
  """Applies one similarity (angle rad, shift_2 (2,) normalised, scale) to an example dict.

  Warps `image` (bilinear), `dafi` and `mask` (nearest), maps `landmarks` (68, 2) pixels and
  updates `pose` (6,); other keys (alpha, yaw, landmarks_visible, ...) are passed through.
  Returns a new dict; the input is not modified.
  """
  if "image" not in example:
    raise ValueError(f"augment_example needs an 'image' to size the warp; got keys "
                     f"{sorted(example)}")
  hw = np.asarray(example["image"]).shape[:2]
  m_2x3 = pixel_matrix(angle, shift_2, scale, hw)
  out = dict(example)
  out["image"] = _warp(np.asarray(example["image"]), m_2x3, cv2.INTER_LINEAR)
  if "dafi" in example:
    # NEAREST, not bilinear: a DAFI pixel is the PNCC code of one vertex (the DAFI is decoded
    # by matching colours to vertices, §3.3). Blending codes across an edge between different
    # surface parts (nose over cheek, face over background 0) yields a colour belonging to no
    # vertex, or to a wrong one in between; nearest keeps every pixel a code that existed.
    dafi = np.asarray(example["dafi"])
    out["dafi"] = _warp(dafi, m_2x3, cv2.INTER_NEAREST).astype(dafi.dtype).reshape(dafi.shape)
  if "mask" in example:
    mask_u8 = np.asarray(example["mask"]).astype(np.uint8)  # cv2 does not warp bool
    out["mask"] = _warp(mask_u8, m_2x3, cv2.INTER_NEAREST) > 0
  if "landmarks" in example:
    lm = np.asarray(example["landmarks"])
    lm_Nx2 = lm.astype(np.float64) @ m_2x3[:, :2].T + m_2x3[:, 2]
    out["landmarks"] = lm_Nx2.astype(lm.dtype)
  if "pose" in example:
    out["pose"] = transform_pose(example["pose"], angle, shift_2, scale)
  return out
