"""Face crops, as every data set and the predictor frame them: a square of `box_scale` x the
68-landmark box's longer side around its centre, zero outside the image, resized; and the
affine map and pose change that go with it. NumPy and OpenCV only (no data set I/O), so the
predictor can crop photos without loading the readers."""

from __future__ import annotations

import cv2
import numpy as np

from cprfa_jax.geometry.projection import from_pixels, to_pixels


class ExampleError(ValueError):
  """One archive example is missing, unreadable or holds impossible values."""


def crop_box(landmarks_68x2, box_scale: float):
  """Integer square (x0, y0, side) around the landmarks (module docstring)."""
  lo, hi = landmarks_68x2.min(0), landmarks_68x2.max(0)
  side = int(round(box_scale * float(np.max(hi - lo))))
  if side < 2:
    raise ExampleError(f"landmark box {lo}..{hi} is degenerate")
  x0, y0 = np.round((lo + hi) / 2 - side / 2).astype(int)
  return int(x0), int(y0), side


def crop_resize(image_HxWx3, x0: int, y0: int, side: int, size: int) -> np.ndarray:
  """The square [x0, x0+side) x [y0, y0+side), zero outside the image, resized to size^2."""
  h, w = image_HxWx3.shape[:2]
  crop = np.zeros((side, side, 3), np.uint8)
  sx, sy = max(x0, 0), max(y0, 0)
  ex, ey = min(x0 + side, w), min(y0 + side, h)
  if ex > sx and ey > sy:
    crop[sy - y0:ey - y0, sx - x0:ex - x0] = image_HxWx3[sy:ey, sx:ex]
  interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
  return cv2.resize(crop, (size, size), interpolation=interp)


def crop_affine(x0: int, y0: int, side: int, size: int):
  """(k, b_2): a 0-based pixel p of the full image is k p + b in the resized crop (pixel i
  covers [i - 0.5, i + 0.5], as in cv2.resize)."""
  k = size / side
  return k, k * (0.5 - np.array([x0, y0], np.float64)) - 0.5


def crop_pose(pose_6, hw_src, k: float, b_2, hw_dst) -> np.ndarray:
  """The pose that projects onto the crop where `pose_6` projected onto the source image:
  pixels map by p' = k p + b, i.e. normalised n' = g n + d with g = k f / f', d the image of
  the source centre; Eq. 2's s and t take g and d, the rotation is unchanged."""
  pose = np.asarray(pose_6, np.float64)
  g = k * min(hw_src) / min(hw_dst)
  centre_src = np.asarray(to_pixels(np.zeros(2), hw_src), np.float64)
  d = np.asarray(from_pixels(k * centre_src + b_2, hw_dst), np.float64)
  return np.concatenate([pose[:3], [g * pose[3]], g * pose[4:6] + d])
