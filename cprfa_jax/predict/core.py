"""From face crops to fitted faces in one pure function: the observation step training and
evaluation run (`observe.observe_images`: U-Net, §2.1; DAFI decoding on the device by the
method the regressors were trained with; the landmark network, FAN-3D's role in §2.5), landmarks
given by the caller where there are some, and the CPR regressor's two rounds (Eq. 4-8). No host
round trip: this is the function `Predictor` jits and `predict.export` serialises.

Everything it needs that is not an image is one pytree, `Weights` (parameters, model, PNCC grid,
selection), so it can be an argument (jit: one compilation for any weights of the same shapes)
or a closed-over constant (export: a self-contained artifact).

Coordinates: the crop is the network's input (S x S); a photo pixel p is k p + b in the crop
(`data.real.crop_affine`), so crop pixels map back by (q - b) / k. Depth is the camera-frame z of
Eq. 2 (toward the viewer) in the same pixel units.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from cprfa_jax import decode, metrics, observe
from cprfa_jax.geometry import projection
from cprfa_jax.mm.model import MorphableModel, vertices
from cprfa_jax.nets import build
from cprfa_jax.nets.regressor import Observations


@struct.dataclass
class Weights:
  """What the crop-to-face function needs besides the images."""
  unet: Any
  landmarks: Any                  # None: the regressor has no landmark branch (CPR(C))
  regressor: Any
  model3d: MorphableModel
  grid: decode.PnccGrid
  selected_C: jnp.ndarray
  layout_3xN: jnp.ndarray


@struct.dataclass
class Settings:
  """The static part: which networks, and the thresholds (`Predictor.from_workdir` fills it
  from the training config)."""
  config: Any = struct.field(pytree_node=False)
  stage: str = struct.field(pytree_node=False)


def fit_crops(settings: Settings, w: Weights, crops_BxSxSx3, k_B, b_Bx2, landmarks_Bx68x2,
              landmarks_given_B):
  """crops uint8 (B, S, S, 3), the crops' affine maps (k (B,), b (B, 2)), landmarks in photo
  pixels (B, 68, 2) used where `landmarks_given_B` (else the landmark network's). Returns a
  dict of arrays: alpha (B, K+E), pose (B, 6) of the crop (Eq. 2, normalised crop
  coordinates), vertices_px (B, V, 3) and landmarks_px (B, 68, 2) in photo pixels,
  confidence (B,), detected (B,) (fraction of the C selected vertices the DAFI shows),
  failure (B,), dafi (B, S, S, 3), mask (B, S, S)."""
  config, stage = settings.config, settings.stage
  s = crops_BxSxSx3.shape[1]
  hw = (s, s)
  # The observation step of training and evaluation (`observe.observe_images`), decoded as
  # the regressors were trained (cpr.decode).
  o = observe.observe_images(observe.nets_of(config, w.landmarks is not None), w.unet,
                             w.landmarks, observe.Codes(w.grid, w.model3d.pncc_Vx3),
                             crops_BxSxSx3)
  dafi, mask, y_all, det_BxV = o["dafi"], o["mask"], o["y_all"], o["det_all"]
  k, b = k_B[:, None, None], b_Bx2[:, None, :]
  obs = Observations(y_all[:, w.selected_C], det_BxV[:, w.selected_C], y_all, det_BxV)
  if w.landmarks is not None:
    given = projection.from_pixels(k * landmarks_Bx68x2 + b, hw)
    obs = obs._replace(y_lm=jnp.where(landmarks_given_B[:, None, None], given, o["y_lm"]),
                       det_lm=o["det_lm"])
  keys = build.inference_keys(config.seed, crops_BxSxSx3.shape[0])
  out = build.regressor_apply(config, w.model3d, stage, w.regressor, w.selected_C,
                                 w.layout_3xN, obs, keys)
  alpha, pose = out["alpha"], out["pose"]
  verts = jax.vmap(vertices, in_axes=(None, 0))(w.model3d, alpha)
  cam = jax.vmap(projection.camera_points)(verts, pose)
  crop_px = projection.to_pixels(cam[..., :2], hw)
  photo_px = (crop_px - b) / k
  depth = cam[..., 2:] * (s / 2.0) / k           # normalised units -> crop px -> photo px
  verts_px = jnp.concatenate([photo_px, depth], -1)
  conf = metrics.reprojection_confidence(w.model3d, alpha, pose, y_all, det_BxV)
  detected = jnp.mean(det_BxV[:, w.selected_C].astype(jnp.float32), axis=1)
  failure = metrics.failure_flag(conf, detected, config.eval.failure_nme)
  return {"alpha": alpha, "pose": pose, "vertices_px": verts_px,
          "landmarks_px": verts_px[:, w.model3d.landmarks_68, :2], "confidence": conf,
          "detected": detected, "failure": failure, "dafi": dafi, "mask": mask}

