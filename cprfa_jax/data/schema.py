"""The example schema every data source yields (synthetic, 300W-LP, AFLW2000-3D).

One example is a dict of NumPy arrays. Images are (H, W, ...) at the source's resolution;
`K`, `E` are the model's identity / expression counts. Coordinates follow
`geometry.projection`: `pose` is the paper's [r_x, r_y, r_z, s, t_x, t_y] in normalised image
coordinates of *this* image, landmarks are 0-based pixels (x right, y down).
"""

from __future__ import annotations

import numpy as np


def feature_spec(hw, num_id, num_exp):
  """{key: (shape, dtype)} of one example for an (H, W) image and a model with K, E bases."""
  h, w = hw
  return {
      "image": ((h, w, 3), np.uint8),           # RGB
      "dafi": ((h, w, 3), np.float32),          # PNCC colour of the visible surface, 0 outside
      "mask": ((h, w), np.bool_),               # face pixels that are visible (not occluded)
      "alpha_id": ((num_id,), np.float32),      # unit-variance identity coefficients (Eq. 1)
      "alpha_exp": ((num_exp,), np.float32),    # unit-variance expression coefficients
      "pose": ((6,), np.float32),               # Eq. 2, paper order
      "landmarks": ((68, 2), np.float32),       # ground-truth 68 landmarks, pixels, occluded too
      "landmarks_visible": ((68,), np.bool_),   # not self-occluded and not behind an occluder
      "yaw": ((), np.float32),                  # degrees, for the |yaw| bins of Tables 1-2
  }


def check_example(example, hw, num_id, num_exp, source="example"):
  """Raises ValueError naming `source` and the key if an example does not match the schema."""
  spec = feature_spec(hw, num_id, num_exp)
  missing = sorted(set(spec) - set(example))
  if missing:
    raise ValueError(f"{source}: missing keys {missing}")
  for key, (shp, dtype) in spec.items():
    a = np.asarray(example[key])
    if a.shape != shp or a.dtype != np.dtype(dtype):
      raise ValueError(f"{source}: {key} is {a.dtype}{list(a.shape)}, expected "
                       f"{np.dtype(dtype)}{list(shp)}")
