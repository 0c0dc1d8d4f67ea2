"""From images to what the CPR fit sees (the pipeline's first half): DAFI + mask from the
HS-U-Net (or a corrupted ground-truth DAFI), the KD-tree vertex lookup of §2.1 for every model
vertex, and 68 landmarks from the landmark network (or any detector). Host code around jitted
networks; used by the regressor stages for training and by evaluate.py.

Coordinates: decoding gives pixels; the fit works in normalised image coordinates
(`geometry.projection.from_pixels`).
"""

from __future__ import annotations

import jax
import numpy as np

from cprfa_jax import dafi as dafi_lib, dafi_subpixel
from cprfa_jax.geometry import projection
from cprfa_jax.stages import compiled
from cprfa_jax.stages.common import params_of
from cprfa_jax.studies import corruptions


DECODERS = ("pixel", "subpixel")


def decode_all(dafi_BxHxWx3, mask_BxHxW, tree, match_dist: float, decode: str = "pixel"):
  """Every vertex's decoded pixel position (B, V, 2) and detection flag (B, V): `decode`
  "pixel" is the paper's (§2.1, the mean of the pixels matched to a vertex), "subpixel"
  `dafi_subpixel` (the vertex's code located in the interpolated PNCC field; `tree.data` are
  the model's codes)."""
  all_v = np.arange(tree.n)
  if decode == "subpixel":
    out = [dafi_subpixel.decode_dafi_subpixel(d, m, tree.data, None, match_dist)
           for d, m in zip(dafi_BxHxWx3, mask_BxHxW)]
  elif decode == "pixel":
    out = [dafi_lib.decode_dafi_kdtree(d, m, tree, all_v, match_dist)
           for d, m in zip(dafi_BxHxWx3, mask_BxHxW)]
  else:
    raise ValueError(f"--config.cpr.decode={decode!r}: use one of {', '.join(DECODERS)}")
  return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


def corrupt_dafi(dafi_BxHxWx3, mask_BxHxW, rng: np.random.Generator, noise: float = 0.004,
                 max_holes: int = 3):
  """Ground-truth DAFIs made to look predicted: PNCC noise (misplaced matches) and up to
  `max_holes` rectangular holes in the mask (missed regions, occluders the U-Net got wrong)."""
  dafi = np.asarray(dafi_BxHxWx3, np.float32).copy()
  mask = np.asarray(mask_BxHxW, bool).copy()
  b, h, w = mask.shape
  dafi += rng.normal(0, noise, dafi.shape).astype(np.float32)
  for i in range(b):
    for _ in range(rng.integers(0, max_holes + 1)):
      hh, ww = rng.integers(h // 8, h // 2, endpoint=True), rng.integers(w // 8, w // 2, endpoint=True)
      y, x = rng.integers(0, h - hh + 1), rng.integers(0, w - ww + 1)
      mask[i, y:y + hh, x:x + ww] = False
  return np.clip(dafi, 0, 1), mask


def corrupted_gt(dafi_BxHxWx3, mask_BxHxW, rngs, study_spacing=None):
  """The DAFIs `cpr.dafi_source=corrupted_gt` trains on, one generator per example:
  `corrupt_dafi` (cpr.corruption=mild), or with `study_spacing` (the model's PNCC vertex
  spacing, cpr.corruption=study) the robustness study's `corruptions.random_corruption`."""
  if study_spacing is None:
    pairs = [corrupt_dafi(dafi_BxHxWx3[i:i + 1], mask_BxHxW[i:i + 1], r) for i, r in enumerate(rngs)]
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
  pairs = [corruptions.random_corruption(dafi_BxHxWx3[i], mask_BxHxW[i], r, study_spacing)
           for i, r in enumerate(rngs)]
  return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def observations(dafi_BxHxWx3, mask_BxHxW, landmarks_px_Bx68x2, tree, match_dist, hw,
                 landmarks_present_B=None, decode="pixel"):
  """The arrays of `models.cpr_regressor.Observations` over all vertices (the caller indexes the
  C selected ones): dict of y_all (B, V, 2), det_all (B, V), y_lm (B, 68, 2), det_lm (B, 68),
  NumPy, normalised coordinates. landmarks_px None: no landmark source; landmarks_present_B:
  False drops an example's landmarks (all det_lm False); decode: `decode_all`'s."""
  px, det = decode_all(dafi_BxHxWx3, mask_BxHxW, tree, match_dist, decode)
  out = {"y_all": np.asarray(projection.from_pixels(px, hw), np.float32), "det_all": det}
  if landmarks_px_Bx68x2 is not None:
    b = len(landmarks_px_Bx68x2)
    present = np.ones(b, bool) if landmarks_present_B is None else np.asarray(landmarks_present_B)
    out["y_lm"] = np.asarray(projection.from_pixels(landmarks_px_Bx68x2, hw), np.float32)
    out["det_lm"] = np.repeat(present[:, None], 68, axis=1)
  return out


class Observer:
  """Images -> the arrays of `Observations` (dict, NumPy), with the trained U-Net and landmark
  network. `dropout` and `corrupted_gt` are for training; evaluation uses neither."""

  def __init__(self, config, root, model3d, with_landmarks: bool, dafi_source="unet",
               dropout=0.0):
    self.config, self.hw = config, (config.data.image_size,) * 2
    self.tree = dafi_lib.build_pncc_tree(model3d.pncc_Vx3)
    self.dafi_source, self.dropout = dafi_source, dropout
    self.study_spacing = (corruptions.pncc_spacing(model3d.pncc_Vx3)
                          if dafi_source == "corrupted_gt" and config.cpr.corruption == "study"
                          else None)
    self.unet = (compiled.unet(config), params_of(config, root, "dafi"))
    self.lm = ((compiled.landmarks(config), params_of(config, root, "landmarks"))
               if with_landmarks else None)

  def dafi(self, images):
    """U-Net DAFI (B, H, W, 3) and mask (B, H, W)."""
    predict, p = self.unet
    d, m = predict(p, images)
    return np.asarray(d), np.asarray(m) > 0.5

  def landmarks(self, images):
    """Landmark pixels (B, 68, 2), or None without a landmark network."""
    return None if self.lm is None else np.asarray(self.lm[0](self.lm[1], images)[0])

  def __call__(self, batch, k=0):
    # One generator per example, keyed by its row of global batch k: the corruption and the
    # landmark dropout of an example do not depend on how many processes share the batch.
    b = len(batch["image"])
    row0 = jax.process_index() * b
    rngs = [np.random.default_rng([self.config.seed, 7, k, row0 + i]) for i in range(b)]
    if self.dafi_source == "corrupted_gt" and self.config.cpr.corruption == "none":
      d, m = np.asarray(batch["dafi"], np.float32), np.asarray(batch["mask"], bool)
    elif self.dafi_source == "corrupted_gt":
      d, m = corrupted_gt(batch["dafi"], batch["mask"], rngs, self.study_spacing)
    else:
      d, m = self.dafi(batch["image"])
    lm = self.landmarks(batch["image"])
    present = np.array([r.random() >= self.dropout for r in rngs])
    return observations(d, m, lm, self.tree, self.config.cpr.match_dist, self.hw, present,
                        self.config.cpr.decode)
